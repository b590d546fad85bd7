"""Footprint of the device agent: a real agent process against a local Mosquitto with an int8
package active.

    python benchmarks/agent_footprint.py --json

Measures cold start (process start -> retained ``online`` state seen on the broker), idle
RSS (after the agent settles, model not yet used), RSS after the first inference through the
local endpoint (model loaded), and whether torch was imported (its shared library mapped).
The last line printed is one JSON object. Goals: idle_rss_mb <= 60, cold_start_s <= 1.0,
imports_torch false.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.mosquitto import Mosquitto  # noqa: E402
from tests.support.packages import tiny_inputs, tiny_onnx  # noqa: E402


def build_int8_package(out: Path, key: Path) -> Path:
    """Tiny MLP quantized with ONNX Runtime dynamic int8, golden outputs from the int8 model."""
    import onnxruntime as ort
    from edgefleet.sdk import PackageBuilder, TensorSpec, load_private_key
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = Path(tempfile.mkdtemp(prefix="ef-int8-"))
    fp32 = tiny_onnx(tmp / "fp32.onnx")
    int8 = tmp / "model.int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    x = tiny_inputs(4)
    sess = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    expected = sess.run(None, {"input": x})[0]
    with PackageBuilder(
        "tiny-int8",
        "1.0.0",
        inputs=[TensorSpec(name="input", dtype="float32", shape=["batch", 16])],
        outputs=[TensorSpec(name="logits", dtype="float32", shape=["batch", 10])],
    ) as b:
        b.set_golden_inputs({"input": x})
        b.add_artifact(int8, format="onnx", precision="int8", golden_outputs={"logits": expected})
        return b.build(out, signing_key=load_private_key(key))


class StateWatcher:
    def __init__(self, port: int, device_id: str) -> None:
        import paho.mqtt.client as mqtt
        from edgefleet.sdk import protocol as p

        self.online_at: float | None = None
        self.event = threading.Event()
        self.topic = p.state_topic(device_id)

        def on_message(client, userdata, msg):
            state = p.decode(msg.topic, msg.payload)
            if state.online and self.online_at is None:
                self.online_at = time.perf_counter()
                self.event.set()

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(self.topic, qos=1)
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def psutil_cpu(pid: int) -> tuple[float, float]:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return (t.user, t.system)


def _maps_torch(pid: int) -> bool:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "libtorch" in maps or "/torch/" in maps


LEAN = ["-m", "edgefleet.device_agents", "run"]  # what the systemd unit runs
CLI = ["-m", "edgefleet", "agent", "run"]  # the `edgefleet agent run` console command


def run_once(
    broker: Mosquitto, work: Path, keys: tuple[Path, Path], pkg: Path, i: int, command: list
) -> dict:
    from edgefleet.device_agents import ModelStore
    from edgefleet.sdk import TrustPolicy

    device_id = f"bench-{os.getpid()}-{i}"
    data = work / device_id
    ModelStore(data / "store").install(pkg, TrustPolicy.device(keys[1]))
    port_file = data / "endpoint"
    config = work / f"{device_id}.toml"
    config.write_text(
        f'device_id = "{device_id}"\nbroker_url = "{broker.url}"\ndata_dir = "{data}"\n'
        f'fleet_keys = ["{keys[1]}"]\nlocal_endpoint = "127.0.0.1:0"\n'
        "telemetry_interval_s = 1.0\n"
    )
    watcher = StateWatcher(broker.port, device_id)
    env = {**os.environ, "EDGEFLEET_LOG_LEVEL": "INFO"}
    log = open(work / f"{device_id}.log", "wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *command, "--config", str(config)],
        stdout=log,
        stderr=log,
        env=env,
    )
    try:
        if not watcher.event.wait(30):
            raise RuntimeError((work / f"{device_id}.log").read_text()[-2000:])
        cold = watcher.online_at - t0
        # CPU seconds the process used to come online: robust to other load on the machine,
        # unlike the wall-clock cold start.
        cold_cpu = sum(psutil_cpu(proc.pid))
        time.sleep(3.0)  # settle: a few telemetry ticks
        idle = _rss_mb(proc.pid)
        text = (work / f"{device_id}.log").read_text()
        address = next(
            line.rsplit(" ", 1)[1]
            for line in text.splitlines()
            if "local inference endpoint" in line
        )
        body = json.dumps({"inputs": {"input": tiny_inputs(1).tolist()}}).encode()
        req = urllib.request.Request(f"{address}/v1/predict", body, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200
        time.sleep(0.5)
        loaded = _rss_mb(proc.pid)
        torch = _maps_torch(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        log.close()
        watcher.close()
    del port_file
    return {
        "cold_start_s": cold,
        "cold_start_cpu_s": cold_cpu,
        "idle_rss_mb": idle,
        "loaded_rss_mb": loaded,
        "torch": torch,
    }


def root_cli_imports(modules: tuple[str, ...] = ("torch", "fastapi", "sqlalchemy")) -> list[str]:
    """Which heavy modules the root ``edgefleet`` CLI imports when mounting ``agent``."""
    code = (
        "import sys, edgefleet._cli as c; c._register('agent'); "
        f"print(','.join(m for m in {modules!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return [m for m in out.stdout.strip().split(",") if m]


def main() -> None:
    from _harness import emit, parser

    args = parser(__doc__, runs=3).parse_args()
    from edgefleet.sdk import generate_keypair

    work = Path(tempfile.mkdtemp(prefix="ef-agent-bench-"))
    keys = generate_keypair(work / "keys")
    pkg = build_int8_package(work / "tiny-int8.efpkg", keys[0])
    with Mosquitto() as broker:
        # Side by side, interleaved: the lean entry and the full CLI.
        runs, cli_runs = [], []
        for i in range(args.runs):
            runs.append(run_once(broker, work, keys, pkg, 2 * i, LEAN))
            cli_runs.append(run_once(broker, work, keys, pkg, 2 * i + 1, CLI))
    result = {
        "runs": args.runs,
        "cold_start_s": round(statistics.median(r["cold_start_s"] for r in runs), 3),
        "cold_start_s_min": round(min(r["cold_start_s"] for r in runs), 3),
        "cold_start_cpu_s": round(statistics.median(r["cold_start_cpu_s"] for r in runs), 3),
        "idle_rss_mb": round(statistics.median(r["idle_rss_mb"] for r in runs), 1),
        "loaded_rss_mb": round(statistics.median(r["loaded_rss_mb"] for r in runs), 1),
        "imports_torch": any(r["torch"] for r in runs + cli_runs),
        "cli_cold_start_s": round(statistics.median(r["cold_start_s"] for r in cli_runs), 3),
        "cli_idle_rss_mb": round(statistics.median(r["idle_rss_mb"] for r in cli_runs), 1),
        "package": "tiny-int8 (onnx, dynamic int8)",
        "command": "python -m edgefleet.device_agents run --config agent.toml",
        "cli_command": "edgefleet agent run --config agent.toml",
        "cli_heavy_imports": root_cli_imports(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "goals": {"idle_rss_mb": 60, "cold_start_s": 1.0, "imports_torch": False},
    }
    rounded = (
        {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
        for r in runs + cli_runs
    )
    emit(result, args.json, *map(str, rounded))


if __name__ == "__main__":
    main()
