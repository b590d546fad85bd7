"""Many agents in one process share one MQTT loop thread."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from edgefleet.device_agents import Simulation
from edgefleet.sdk import protocol as p

from tests.device_agents.support import deploy_cmd
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


def test_simulation_runs_many_agents_on_few_threads(
    tmp_path, mosquitto, collector, signing_keys, artifacts, packages, fleet_key
):
    threads_before = threading.active_count()
    base = {
        "broker_url": mosquitto.url,
        "profile": "raspberry-pi-4",
        "fleet_keys": [signing_keys[1]],
        "device_token": "device-token-1",
        "telemetry_interval_s": 0.5,
    }
    sim = Simulation.numbered(40, tmp_path, base, prefix="simtest").start()
    try:
        wait_until(lambda: sim.online() == 40, 30, what="40 agents online")
        # One loop thread + a small worker pool, not one network thread per agent.
        assert threading.active_count() - threads_before <= 6
        ids = {a.device_id for a in sim.agents}
        assert len(ids) == 40
        wait_until(lambda: len({i.device_id for i in collector.of(p.Inventory)} & ids) == 40)
        assert all(i.profile == "raspberry-pi-4" for i in collector.of(p.Inventory)
                   if i.device_id in ids)  # fmt: skip
        # Each has its own store: deploy to one of them.
        target = sim.agents[7]
        url, data = artifacts.add(packages["v2"])
        cmd = deploy_cmd(target.device_id, url, data, packages["v2"], fleet_key)
        collector.publish(p.cmd_topic(target.device_id), p.encode(cmd))
        assert collector.wait_terminal(target.device_id, cmd.deployment_id) == "ACTIVE"
        assert target.store.slot_info(target.store.active_slot()).package_version == "2.0.0"
        assert sim.agents[8].store.active_slot() is None
        wait_until(lambda: len({b.device_id for b in collector.of(p.TelemetryBatch)} & ids) == 40)
    finally:
        sim.stop()
    wait_until(lambda: all(not collector.of(p.State, d)[-1].online for d in ids), 10)


def test_simulate_cli(tmp_path, mosquitto, collector):
    out = subprocess.run(
        [sys.executable, "-m", "edgefleet.device_agents", "simulate", "--count", "3",
         "--broker", mosquitto.url, "--data-dir", str(tmp_path), "--prefix", "clisim",
         "--profile", "jetson-orin-nano", "--duration", "0.5"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "3/3 agents online" in out.stderr
    invs = [i for i in collector.of(p.Inventory) if i.device_id.startswith("clisim-")]
    assert {i.device_id for i in invs} == {"clisim-0000", "clisim-0001", "clisim-0002"}
    assert all(i.profile == "jetson-orin-nano" for i in invs)


def test_simulation_interleaves_ids_across_processes(tmp_path, signing_keys):
    """first/step number the agents so several simulator processes interleave their ids
    (a rollout goes through devices in id order); smoke tests run on one intra-op thread."""
    base = {"broker_url": "mqtt://127.0.0.1:1", "fleet_keys": [signing_keys[1]]}
    sim = Simulation.numbered(3, tmp_path, base, prefix="il", first=1, step=2)
    try:
        assert [a.device_id for a in sim.agents] == ["il-0001", "il-0003", "il-0005"]
        assert {a.settings.data_dir.name for a in sim.agents} == {"il-0001", "il-0003", "il-0005"}
        assert all(a.deployer.hooks.smoke_onnxruntime.intra_op_threads == 1 for a in sim.agents)
    finally:
        sim.stop()
    with pytest.raises(ValueError, match="step >= 1"):
        Simulation.numbered(1, tmp_path, base, step=0)
