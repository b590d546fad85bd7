"""Serving adapts to the device's resources: fake board trees driven hot/cold and
pressure/no-pressure, a real memory cap on a child process, a real endpoint and agent."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from edgefleet.device_agents import ActiveModel, Adapter, AdaptOptions, LocalEndpoint, ModelStore
from edgefleet.sdk import ResourcePolicy, TrustPolicy

from tests.device_agents.support import installed_store
from tests.support.adaptive_package import two_size_package
from tests.support.endpoint import post_inputs
from tests.support.fake_board import FakeBoard
from tests.support.packages import tiny_inputs, tiny_reference


@pytest.fixture(scope="module")
def adaptive_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("adaptive")
    return installed_store(d, two_size_package(d / "adaptive.efpkg"))


def test_pressure_switches_artifact_threads_sheds_and_comes_back(adaptive_store, tmp_path):
    board = FakeBoard(tmp_path / "board")
    active = ActiveModel(adaptive_store, trust=TrustPolicy.workstation(), profile="x86_64-cpu")
    seen = []
    adapter = Adapter(
        active,
        AdaptOptions(policy=ResourcePolicy(calm_s=0.0), root=board.root, retire_grace_s=0.5),
        notify=seen.append,
    )
    ep = LocalEndpoint(active, "127.0.0.1:0", admit=adapter.admit).start()
    x = tiny_inputs(2, seed=7)
    try:
        assert post_inputs(ep.address, {"input": x})[0] == 200
        assert active.loaded.info.artifact.name == "model.onnx"  # the preferred one
        assert adapter.step() is None  # cool board: nothing to do

        board.set(memory=0.9, pressure=15.0)  # cgroup near its limit, tasks stalling
        switch = adapter.step()
        assert (switch.previous, switch.level) == ("normal", "constrained")
        assert switch.artifact == "model.small.onnx" and switch.threads == 1
        assert any("memory 0.9 >= 0.85" in r for r in switch.reasons)
        model = active.loaded
        assert model.info.artifact.name == "model.small.onnx"
        assert model._session._sess.get_session_options().intra_op_num_threads == 1
        code, body, _ = post_inputs(ep.address, {"input": x})
        assert code == 200
        np.testing.assert_allclose(body["outputs"]["logits"], tiny_reference(x), atol=1e-4)

        board.set(temps=(92.0, 50.0))  # critical heat: shed instead of queueing
        assert adapter.step().level == "critical"
        code, body, headers = post_inputs(ep.address, {"input": x})
        assert code == 429 and "temperature 92 >= critical 90" in body["error"]
        assert headers["Retry-After"] == "2"
        assert adapter.telemetry()["shed"] == 1 and adapter.telemetry()["adaptation_level"] == 2

        board.set(memory=0.5, pressure=0.0, temps=(40.0, 40.0))
        back = adapter.step()  # every figure under its low mark: straight back to normal
        assert (back.previous, back.level) == ("critical", "normal")
        assert back.artifact == "model.onnx"
        assert active.loaded.info.artifact.name == "model.onnx"
        assert post_inputs(ep.address, {"input": x})[0] == 200
        assert [s.level for s in seen] == ["constrained", "critical", "normal"]
        assert adapter.telemetry()["memory_used"] == 0.5
    finally:
        ep.stop()
        active.close()


_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from edgefleet.sdk import ResourcePolicy, ResourceTracker, read_resources

    cap = int(sys.argv[1]) << 20
    vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize"))
    limit = vm * 1024 + cap  # what this process already maps, plus the cap
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Memory alone decides here (the host's own load and PSI belong to other processes).
    policy = ResourcePolicy(calm_s=0.0, load_low=1e6, load_high=1e7, pressure_low=1e6,
                            pressure_high=1e7, pressure_critical=1e7)
    tracker = ResourceTracker(policy)
    out = []
    def step(what):
        s = read_resources("/")
        tracker.update(s)
        out.append({"what": what, "used": s.memory_used, "source": s.memory_source,
                    "level": tracker.level})
    step("start")
    def vmsize():
        return next(int(l.split()[1]) for l in open("/proc/self/status")
                    if l.startswith("VmSize")) * 1024
    block = np.ones((int(limit * 0.9) - vmsize()) // 8, dtype=np.float64)
    step("allocated")
    try:
        more = np.ones(limit - vmsize() + (16 << 20), dtype=np.uint8)
        out.append({"what": "over the cap", "allocated": True})
    except MemoryError:
        out.append({"what": "over the cap", "allocated": False})
    del block
    step("freed")
    print(json.dumps(out))
    """
)


def test_a_real_memory_cap_on_a_child_process_drives_the_level():
    """The child runs under an address-space cap (RLIMIT_AS); filling 90% of it must read as
    constrained, and the cap is real: more than the rest cannot be allocated."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, "256"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = {s["what"]: s for s in json.loads(proc.stdout.strip().splitlines()[-1])}
    assert steps["start"]["source"] == "address-space cap"
    assert steps["start"]["level"] == 0 and steps["start"]["used"] < 0.7
    assert steps["allocated"]["used"] >= 0.85 and steps["allocated"]["level"] >= 1
    assert steps["over the cap"]["allocated"] is False
    assert steps["freed"]["used"] < 0.7 and steps["freed"]["level"] == 0


@pytest.mark.broker
def test_agent_tells_the_fleet_by_event_and_telemetry(make_agent, collector, tmp_path):
    """A real agent (adapt = true) on the session Mosquitto, watching a fake board: heat
    makes it publish a ResourceEvent and telemetry carries the adaptation fields."""
    from edgefleet.sdk import protocol as p

    from tests.device_agents.support import wait_until

    board = FakeBoard(tmp_path / "board")
    agent = make_agent(adapt=True, adapt_interval_s=0.05, resources_root=board.root,
                       telemetry_interval_s=0.2)  # fmt: skip
    dev = agent.device_id
    assert agent.adapter is not None and agent.endpoint.admit == agent.adapter.admit
    board.set(temps=(85.0, 40.0))
    wait_until(lambda: collector.of(p.ResourceEvent, dev), 10, what="resource event")
    event = collector.of(p.ResourceEvent, dev)[0]
    assert (event.previous_level, event.level) == ("normal", "constrained")
    assert any("temperature 85" in r for r in event.reasons) and not event.shedding
    wait_until(
        lambda: any(s.adaptation_level == 1 for b in collector.of(p.TelemetryBatch, dev)
                    for s in b.samples), 10, what="telemetry with the level",
    )  # fmt: skip
    sample = next(s for b in collector.of(p.TelemetryBatch, dev) for s in b.samples
                  if s.adaptation_level == 1)  # fmt: skip
    assert sample.memory_used == 0.5 and sample.shed == 0


def test_a_package_activated_while_constrained_loads_and_is_constrained_too(tmp_path):
    """The constrained artifact name belongs to the old package; the new one must still load
    (its own choice) and then get the constrained threads."""
    from tests.support.packages import make_package

    store = ModelStore(tmp_path / "store")
    store.install(two_size_package(tmp_path / "a.efpkg"), TrustPolicy.workstation())
    board = FakeBoard(tmp_path / "board")
    active = ActiveModel(store, trust=TrustPolicy.workstation(), profile="x86_64-cpu")
    adapter = Adapter(active, AdaptOptions(policy=ResourcePolicy(calm_s=0.0), root=board.root,
                                           retire_grace_s=0.2))  # fmt: skip
    try:
        active.refresh(force=True)
        board.set(memory=0.9)
        assert adapter.step().artifact == "model.small.onnx"
        store.install(make_package(tmp_path / "tiny.efpkg"), TrustPolicy.workstation())
        new = active.refresh(force=True)
        assert new.info.name == "tiny" and new.info.artifact.name == "model.fp32.onnx"
        assert adapter.step() is None  # same level: no event, but the new model is constrained
        served = active.loaded
        assert served.info.name == "tiny"
        assert served._session._sess.get_session_options().intra_op_num_threads == 1
        x = tiny_inputs(1)
        np.testing.assert_allclose(served.predict(x)["logits"], tiny_reference(x), atol=1e-4)
    finally:
        active.close()
