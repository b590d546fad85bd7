"""The one-command demo, as a user runs it: ``edgefleet demo --headless --json`` against a
real Mosquitto (it trains the digits model, so this is the only e2e test that trains), then
the interactive demo stopped with Ctrl-C, then ``--generative`` (its orchestrator: the tiny
LM trained, rolled out to the same real agents, one answer streamed over SSE)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from edgefleet.sdk import LoadOptions, load

from tests.e2e.conftest import EDGEFLEET
from tests.support.mosquitto import Mosquitto, free_port

pytestmark = [pytest.mark.slow, pytest.mark.broker]


@pytest.fixture(scope="module")
def headless(tmp_path_factory, broker):
    """One headless demo run: (output dir, completed process, JSON summary)."""
    cwd = tmp_path_factory.mktemp("demo-cwd")
    out = cwd / "demo-out"
    proc = subprocess.run(
        [
            *EDGEFLEET,
            "demo",
            "--headless",
            "--json",
            "--broker",
            broker.url,
            "--out",
            str(out),
            "--port",
            "0",
            "--epochs",
            "2",
            "--formats",
            "onnx,tflite",  # so the boards can differ: LiteRT on the Pi
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    last = proc.stdout.strip().splitlines()[-1]
    return out, proc, json.loads(last)


def test_headless_demo_summary(headless):
    out, proc, s = headless
    assert s["rollout_state"] == "COMPLETED"
    assert s["waves"] == [1, 3, 2]  # canary, then 50 %, then the rest
    assert s["devices"] == 6
    assert s["devices_active"] == 6  # as the fleet sees them ...
    assert s["devices_active_local"] == 6  # ... and as the devices' stores say
    assert s["broker"] == "external" and s["database"] == "sqlite"
    assert s["predictions"] > 100 and s["prediction_errors"] == 0
    assert s["accuracy"] > 0.9  # held-out digits through the int8 model on the devices
    assert 0.2 < s["cache_hit_rate"] < 1.0  # repeated frames hit, new ones miss
    assert s["telemetry_messages"] > 6
    # The devices' inference reached the fleet through telemetry (minus the last interval).
    assert 0.5 * s["predictions"] < s["fleet_seen_calls"] <= 1.1 * s["predictions"]
    assert abs(s["fleet_seen_cache_hit_rate"] - s["cache_hit_rate"]) < 0.15
    assert s["model_accuracy"] > 0.9 and any("int8.onnx" in a for a in s["artifacts"])
    assert set(s["backends"]) == {"raspberry-pi-4", "jetson-orin-nano", "rockchip-rk3588"}
    # Each simulated board serves on its profile's runtime: LiteRT first on the Pi.
    assert s["backends"]["raspberry-pi-4"].startswith("litert"), s["backends"]
    assert s["backends"]["jetson-orin-nano"].startswith("onnxruntime"), s["backends"]
    # Everything it wrote is under --out.
    assert sorted(p.name for p in out.parent.iterdir()) == ["demo-out"]
    assert (out / "package" / "digits-1.0.0.efpkg").is_file()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_interactive_demo_stops_cleanly_on_ctrl_c(headless):
    """The default set-up (`make demo`): embedded amqtt broker, SQLite; Ctrl-C ends it all."""
    out, _, _ = headless
    port = free_port()
    # Same --out: the trained package is reused, so this run does not train again.
    proc = subprocess.Popen(
        [*EDGEFLEET, "demo", "--out", str(out), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "Dashboard:" in line:
                break
        text = "".join(lines)
        assert "Dashboard:" in text, text[-3000:]
        assert "reusing the trained package" in text
        assert "embedded amqtt" in text and "rollout 1 COMPLETED" in text
        assert _port_open(port)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        stdout, stderr = proc.communicate(timeout=45)
        assert time.monotonic() - t0 < 45
        assert proc.returncode == 0, stderr[-3000:]
        assert not _port_open(port)  # the fleet is gone with the process
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class RecordingUi:
    """The demo's UI as a test sees it: every line and every streamed piece, in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.pieces: list[str] = []

    def step(self, text: str) -> None:
        self.lines.append(f"step: {text}")

    @contextmanager
    def paused(self) -> Iterator[None]:
        yield

    def done(self, text: str) -> None:
        self.lines.append(text)

    def rollout(self, ro) -> None:
        pass

    def stream(self, text: str) -> None:
        self.pieces.append(text)


@pytest.fixture(scope="module")
def generative(headless):
    """``edgefleet demo --generative`` as its orchestrator, on a real Mosquitto of its own
    (a fleet's persistent session from the headless run must not take a share of these
    boards' reports), reusing the headless run's --out: the digits package is cached
    there, the tiny LM is trained now with the tiny_llama recipe. The fleet is queried
    through its API before the demo stops."""
    from edgefleet.demo import Demo, DemoOptions

    out, _, _ = headless
    ui = RecordingUi()
    seen: dict = {}

    def inspect(demo) -> None:  # while the fleet and the boards still run
        c = demo.client
        ref = demo.summary["generative"]["model"]
        seen["telemetry"] = c.telemetry(ref, since=0, bucket_s=86400)
        seen["devices"] = {d["id"]: d["active_model"] for d in c.devices()}
        seen["rollout"] = c.rollout(demo.summary["generative"]["rollout_id"])
        seen["package"] = next(out.glob("package-lm/*.efpkg"))

    with Mosquitto() as own:
        opts = DemoOptions(out=out, broker=own.url, port=0, formats=("onnx",), generative=True)
        demo = Demo(opts, ui)
        try:
            summary = demo.run(on_ready=inspect)
        finally:
            demo.close()
    return summary, ui, seen


def test_generative_demo_rolls_the_lm_to_every_board_and_streams_an_answer(generative):
    s, ui, seen = generative
    g = s["generative"]
    assert s["rollout_state"] == "COMPLETED"  # the digits demo ran first, as by default
    assert any("reusing the trained package" in line for line in ui.lines)  # digits cached
    # The package reached every board: as the fleet sees them and as their stores say.
    boards = {"orin-01", "orin-02", "rk3588-01", "rk3588-02", "rpi4-01", "rpi4-02"}
    assert {i for i, m in seen["devices"].items() if m == g["model"]} >= boards
    assert g["devices_active"] == 6 and g["devices_active_local"] == 6
    assert set(g["backends"]) == {"raspberry-pi-4", "jetson-orin-nano", "rockchip-rk3588"}
    assert all(b.startswith("ort-genai") for b in g["backends"].values()), g["backends"]
    # The rollout completed in gated waves, each wave's generation measured by the fleet.
    assert g["rollout_state"] == "COMPLETED" and seen["rollout"]["status"] == "COMPLETED"
    assert g["waves"] == [1, 3, 2]
    assert seen["rollout"]["spec"]["max_decode_tps_regression"] is not None
    assert [len(w["devices"]) for w in g["wave_gates"]] == [1, 3, 2]
    assert all(w["requests"] > 0 and w["decode_tps"] > 0 for w in g["wave_gates"]), g
    assert all(w["ttft_p95_ms"] > 0 for w in g["wave_gates"])
    assert g["gates"]["new_decode_tps"] > 0  # what the gate itself judged, last wave
    # The fleet recorded decode tokens/s from the boards' telemetry.
    tps = [p["decode_tps"] for p in seen["telemetry"] if p["decode_tps"] is not None]
    assert tps and all(t > 0 for t in tps) and g["fleet_decode_tps"] > 0
    assert sum(p["calls"] for p in seen["telemetry"]) >= g["fleet_requests"] > 0
    # The streamed answer: several SSE events with text, handed to the terminal one by one,
    # the usage record last; greedy, so it is what the SDK generates from the package.
    a = g["answer"]
    assert a["usage"]["completion_tokens"] > 0 and a["usage"]["decode_tokens_per_s"] > 0
    assert a["token_events"] >= 3 and a["events"] > a["token_events"]
    header, *streamed, newline = ui.pieces  # the board and prompt, the answer, "\n"
    assert header.endswith(a["prompt"]) and newline == "\n"
    assert "".join(streamed) == a["text"] and len(streamed) == a["token_events"]
    with load(seen["package"], options=LoadOptions(cache=None)) as m:
        want = m.generate(a["prompt"], max_new_tokens=a["usage"]["completion_tokens"]).text()
    assert a["text"] == want and a["text"].strip()
    assert any(line.startswith("usage: prompt_tokens") for line in ui.lines)
