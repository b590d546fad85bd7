"""A runtime that crashes natively on a new package costs that package, never the agent:
the staged slot is smoke-tested in a child process, the old slot keeps serving, the fleet
sees FAILED with the reason; a restarted agent does not crash again; and when isolation is
off, the resume counter breaks the crash loop. The crashing runtime really aborts
(``os.abort()``, SIGABRT) - see tests/support/crash_backend.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from edgefleet.device_agents import ModelStore, load_active
from edgefleet.sdk import TrustPolicy
from edgefleet.sdk import protocol as p

from tests.device_agents.support import deploy_cmd, wait_until
from tests.support.crash_backend import CRASHING_BACKEND
from tests.support.packages import make_package, tiny_inputs, tiny_reference
from tests.support.processes import stop_process

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
CRASH_REASON = "runtime crashed: signal SIGABRT while loading model.abort.onnx (crashing)"


@pytest.fixture(scope="module")
def crash_pkg(tmp_path_factory, signing_keys):
    d = tmp_path_factory.mktemp("crashpkg")
    return make_package(
        d / "crash.efpkg", version="5.0.0", signing_key=signing_keys[0], seed=3,
        artifact_name="model.abort.onnx",
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _importable(monkeypatch):
    # The smoke-test child (and agent processes) import the test backend by its path.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def _serves(store_dir: Path, key: Path, seed: int) -> bool:
    model = load_active(ModelStore(store_dir), trust=TrustPolicy.device(key))
    try:
        x = tiny_inputs(2, seed=7)
        return bool(np.allclose(model.predict(x)["logits"], tiny_reference(x, seed), atol=1e-4))
    finally:
        model.close()


def _send(collector, device_id, cmd) -> None:
    collector.publish(p.cmd_topic(device_id), p.encode(cmd))


def _crashing(**extra) -> dict:
    return {"backend": "crashing", "backends": {"crashing": CRASHING_BACKEND}, **extra}


def test_runtime_abort_fails_the_package_not_the_agent(
    make_agent, collector, artifacts, packages, crash_pkg, fleet_key, signing_keys
):
    # In-process agent: were the crash in this process, pytest itself would die here.
    agent = make_agent(**_crashing())
    store = agent.store.root
    assert _serves(store, signing_keys[1], 0)
    url, data = artifacts.add(crash_pkg)
    cmd = deploy_cmd(agent.device_id, url, data, crash_pkg, fleet_key)
    _send(collector, agent.device_id, cmd)
    assert collector.wait_terminal(agent.device_id, cmd.deployment_id, 60) == "FAILED"
    ev = [e for e in collector.of(p.DeploymentEvent, agent.device_id)
          if e.deployment_id == cmd.deployment_id][-1]  # fmt: skip
    assert ev.reason == CRASH_REASON
    assert _serves(store, signing_keys[1], 0)  # the old slot never stopped serving
    assert agent.connected.is_set()
    # The same agent still deploys a good package afterwards, through the same child path.
    url2, data2 = artifacts.add(packages["v2"])
    cmd2 = deploy_cmd(agent.device_id, url2, data2, packages["v2"], fleet_key)
    _send(collector, agent.device_id, cmd2)
    assert collector.wait_terminal(agent.device_id, cmd2.deployment_id, 60) == "ACTIVE"
    assert _serves(store, signing_keys[1], 1)


def test_broken_golden_reported_from_the_child(make_agent, collector, artifacts, packages,
                                               fleet_key):  # fmt: skip
    agent = make_agent()
    url, data = artifacts.add(packages["broken"])
    cmd = deploy_cmd(agent.device_id, url, data, packages["broken"], fleet_key)
    _send(collector, agent.device_id, cmd)
    assert collector.wait_terminal(agent.device_id, cmd.deployment_id, 60) == "FAILED"
    ev = collector.of(p.DeploymentEvent, agent.device_id)[-1]
    assert ev.reason.startswith("smoke test failed: logits: max abs error")


class _Proc:
    """A real agent process (``python -m edgefleet.device_agents run``)."""

    def __init__(self, root: Path, mosquitto, signing_keys, packages, **extra) -> None:
        self.device_id = f"iso-{uuid.uuid4().hex[:8]}"
        self.store = root / "agent" / "store"
        ModelStore(self.store).install(packages["v1"], TrustPolicy.device(signing_keys[1]))
        lines = [
            f'device_id = "{self.device_id}"', f'broker_url = "{mosquitto.url}"',
            f'data_dir = "{root / "agent"}"', f'fleet_keys = ["{signing_keys[1]}"]',
            'device_token = "device-token-1"', 'local_endpoint = ""',
            "telemetry_interval_s = 3600", "reconnect_min_s = 0.1",
            'backend = "crashing"', f'backends = {{ crashing = "{CRASHING_BACKEND}" }}',
        ]  # fmt: skip
        lines += [f"{k} = {v}" for k, v in extra.items()]
        self.config = root / "agent.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = root / "agent.log"
        self.proc: subprocess.Popen | None = None

    def start(self, fault: str | None = None) -> _Proc:
        env = {**os.environ, "EDGEFLEET_LOG_LEVEL": "INFO"}
        env.pop("EDGEFLEET_AGENT_FAULT_POINT", None)
        if fault:
            env["EDGEFLEET_AGENT_FAULT_POINT"] = fault
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edgefleet.device_agents", "run", "-c", str(self.config)],
                env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
            )  # fmt: skip
        return self

    def tail(self) -> str:
        return self.log.read_text()[-5000:]

    def stop(self) -> None:
        stop_process(self.proc, 10)


def _online(collector, device_id) -> None:
    wait_until(lambda: any(s.online for s in collector.of(p.State, device_id)[-1:]), 30,
               what=f"{device_id} online")  # fmt: skip


@pytest.mark.slow
def test_killed_mid_deployment_restarts_without_crashing(
    tmp_path, mosquitto, collector, artifacts, packages, crash_pkg, fleet_key, signing_keys
):
    # Killed (kill -9 equivalent) right after STAGED; the restarted agent resumes into the
    # smoke test of the crashing package, survives it, reports FAILED and keeps serving v1.
    agent = _Proc(tmp_path, mosquitto, signing_keys, packages).start(fault="after:STAGED")
    try:
        _online(collector, agent.device_id)
        url, data = artifacts.add(crash_pkg)
        cmd = deploy_cmd(agent.device_id, url, data, crash_pkg, fleet_key)
        _send(collector, agent.device_id, cmd)
        assert agent.proc.wait(60) == 137, agent.tail()
        assert _serves(agent.store, signing_keys[1], 0)
        agent.start()
        assert collector.wait_terminal(agent.device_id, cmd.deployment_id, 60) == "FAILED"
        ev = collector.of(p.DeploymentEvent, agent.device_id)[-1]
        assert ev.reason == CRASH_REASON, agent.tail()
        assert agent.proc.poll() is None, agent.tail()  # still running
        assert _serves(agent.store, signing_keys[1], 0)
        # The child's faulthandler stack of the abort is in the agent's log.
        assert "Fatal Python error: Aborted" in agent.tail()
    finally:
        agent.stop()
    assert agent.proc.returncode == 0, agent.tail()


@pytest.mark.slow
def test_resume_counter_breaks_a_crash_loop(
    tmp_path, mosquitto, collector, artifacts, packages, crash_pkg, fleet_key, signing_keys
):
    # Isolation off: the abort really kills the agent at every start (faulthandler prints
    # the stack); after max_resumes restarts it gives the deployment up instead.
    agent = _Proc(tmp_path, mosquitto, signing_keys, packages, smoke_isolated="false",
                  max_resumes=2)  # fmt: skip
    try:
        agent.start()
        _online(collector, agent.device_id)
        url, data = artifacts.add(crash_pkg)
        cmd = deploy_cmd(agent.device_id, url, data, crash_pkg, fleet_key)
        _send(collector, agent.device_id, cmd)
        for _ in range(3):  # the first run, then two resumes: each dies of SIGABRT
            assert agent.proc.wait(60) == -signal.SIGABRT, agent.tail()
            agent.start()
        assert "Fatal Python error: Aborted" in agent.tail()
        assert collector.wait_terminal(agent.device_id, cmd.deployment_id, 60) == "FAILED"
        ev = collector.of(p.DeploymentEvent, agent.device_id)[-1]
        assert ev.reason.startswith("agent restarted 3 times during this deployment"), ev.reason
        assert agent.proc.poll() is None, agent.tail()
        assert _serves(agent.store, signing_keys[1], 0)
    finally:
        agent.stop()


def test_child_that_cannot_start_is_a_clear_failure(monkeypatch, tmp_path):
    from edgefleet.device_agents._isolation import SmokeIsolation, smoke_in_child

    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    out = smoke_in_child(tmp_path, backend=None, profile=None, isolation=SmokeIsolation())
    assert not out.passed and out.kind == "crash"
    assert "cannot start the smoke-test process" in out.detail
    assert "smoke_isolated = false" in out.detail
