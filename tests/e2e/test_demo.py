"""The one-command demo, as a user runs it: ``edgefleet demo --headless --json`` against a
real Mosquitto (it trains the digits model, so this is the only e2e test that trains), then
the interactive demo stopped with Ctrl-C."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

import pytest

from tests.e2e.conftest import EDGEFLEET
from tests.support.mosquitto import free_port

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
