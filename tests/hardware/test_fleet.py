"""The fleet executor: benchmark commands to simulated agents over a real Mosquitto."""

from __future__ import annotations

import time
import uuid

import pytest
from edgefleet.hardware.hil import MatrixSpec, run_matrix
from edgefleet.sdk import TrustPolicy

from tests.support.packages import make_package

pytest.importorskip("paho.mqtt")
pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def agents(mosquitto, signing_keys, tmp_path_factory):
    """Two Pi 4 agents and a Pi 5 agent, each serving the tiny package."""
    from edgefleet.device_agents import Agent, AgentSettings, ModelStore

    d = tmp_path_factory.mktemp("fleet-agents")
    pkg = make_package(d / "tiny.efpkg", signing_key=signing_keys[0])
    started = []
    for profile in ("raspberry-pi-4", "raspberry-pi-4", "raspberry-pi-5"):
        device_id = f"hil-{profile[-1]}-{uuid.uuid4().hex[:6]}"
        data_dir = d / device_id
        ModelStore(data_dir / "store").install(pkg, TrustPolicy.device(signing_keys[1]))
        settings = AgentSettings(
            device_id=device_id, broker_url=mosquitto.url, data_dir=data_dir,
            fleet_keys=[signing_keys[1]], profile=profile, telemetry_interval_s=3600,
            reconnect_min_s=0.1, reconnect_max_s=0.5, local_endpoint=None,
        )  # fmt: skip
        started.append(Agent(settings).start())
    deadline = time.monotonic() + 15
    while not all(a.connected.is_set() for a in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield started
    for a in started:
        a.stop(graceful=False)


def test_fleet_executor_collects_results_from_simulated_agents(
    agents, mosquitto, signing_keys, tmp_path
):
    spec = MatrixSpec(
        packages=(),
        targets=("raspberry-pi-4", "jetson-orin-nano"),
        runtimes=("onnxruntime", "litert"),
        executors={"raspberry-pi-4": ("fleet",), "jetson-orin-nano": ("fleet",)},
        # The simulated agents live inside the pytest process, whose RSS includes whatever
        # earlier tests loaded (torch, executorch): the memory budget is not what is tested.
        budgets={"raspberry-pi-4": {"p95_latency_ms": 2000.0, "peak_rss_mb": 64000}},
        broker_url=mosquitto.url,
        fleet_devices=tuple(a.device_id for a in agents),  # other tests' agents share the broker
        command_key=signing_keys[0],
        latency_runs=10,
        timeout_s=60,
    )
    result = run_matrix(spec, tmp_path)
    cells = {(c.target, c.executor, c.runtime): c for c in result.cells}
    pi4 = [a.device_id for a in agents[:2]]
    for device in pi4:
        ort = cells[("raspberry-pi-4", f"fleet:{device}", "onnxruntime")]
        assert ort.status == "passed", ort.checks
        assert ort.package == "tiny@1.0.0"
        assert ort.check("latency").figures["latency_p95_ms"] > 0
        assert ort.check("memory").figures["peak_rss_mb"] > 10
        assert ort.check("parity").status == "not run"  # reported, never passed
        litert = cells[("raspberry-pi-4", f"fleet:{device}", "litert")]
        assert litert.status == "not run" and litert.not_run_reason
    # The Pi 5 agent is not a Pi 4: it got no command. No Jetson is online.
    assert not any(agents[2].device_id in c.executor for c in result.cells)
    jetson = [c for c in result.cells if c.target == "jetson-orin-nano"]
    assert [c.status for c in jetson] == ["not run", "not run"]
    assert "no online device reports profile jetson-orin-nano" in jetson[0].not_run_reason
    assert "tflite" in litert.not_run_reason  # the package has no LiteRT artifact
    assert (tmp_path / "junit.xml").exists()
