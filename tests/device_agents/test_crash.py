"""kill -9 at every deployment step: the device serves the old or the new model, never
none, and the restarted agent resumes or rolls back. Real agent processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
from edgefleet.device_agents import ModelStore, load_active
from edgefleet.sdk import TrustPolicy
from edgefleet.sdk import protocol as p

from tests.device_agents.support import deploy_cmd
from tests.support.packages import tiny_inputs, tiny_reference
from tests.support.processes import stop_process
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _start(config, log, fault=None):
    env = {**os.environ, "EDGEFLEET_LOG_LEVEL": "INFO"}  # the tail explains a failure
    env.pop("EDGEFLEET_AGENT_FAULT_POINT", None)
    if fault:
        env["EDGEFLEET_AGENT_FAULT_POINT"] = fault
    with open(log, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "edgefleet.device_agents", "run", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def _serving(store_dir, trusted) -> int:
    """Which seed's model the store serves right now (fails if none)."""
    model = load_active(ModelStore(store_dir), trust=TrustPolicy.device(trusted))
    try:
        x = tiny_inputs(2, seed=5)
        out = model.predict(x)["logits"]
    finally:
        model.close()
    for seed in (0, 1):
        if np.allclose(out, tiny_reference(x, seed), atol=1e-4):
            return seed
    raise AssertionError("active model is neither the old nor the new one")


CASES = {
    "after:QUEUED": "ACTIVE",
    "after:DOWNLOADING": "ACTIVE",
    "during:DOWNLOADING": "ACTIVE",
    "after:VERIFYING": "ACTIVE",
    "after:STAGED": "ACTIVE",
    "after:ACTIVATING": "ACTIVE",
    "after:SWITCH": "ROLLED_BACK",  # killed inside the health window: roll back
    "after:ACTIVE": "ACTIVE",
}


class _Device:
    def __init__(self, tmp_path, fault, mosquitto, packages, signing_keys):
        self.fault, self.final = fault, CASES[fault]
        self.device_id = f"crash-{uuid.uuid4().hex[:8]}"
        root = tmp_path / fault.replace(":", "-")
        self.store_dir = root / "agent" / "store"
        ModelStore(self.store_dir).install(packages["v1"], TrustPolicy.device(signing_keys[1]))
        self.config = root / "agent.toml"
        self.config.write_text(
            f'device_id = "{self.device_id}"\nbroker_url = "{mosquitto.url}"\n'
            f'data_dir = "{root / "agent"}"\nfleet_keys = ["{signing_keys[1]}"]\n'
            'device_token = "device-token-1"\nlocal_endpoint = ""\n'
            "telemetry_interval_s = 3600\nreconnect_min_s = 0.1\n"
        )
        self.log = root / "agent.log"
        self.proc = _start(self.config, self.log, fault)

    def tail(self) -> str:
        return f"[{self.fault}] " + self.log.read_text()[-6000:]

    def stop(self) -> None:
        stop_process(self.proc, 10)


def test_kill_at_each_step(
    tmp_path, mosquitto, collector, artifacts, packages, signing_keys, fleet_key
):
    # All fault points run side by side (one agent process each) to keep the suite fast.
    devices = [_Device(tmp_path, f, mosquitto, packages, signing_keys) for f in CASES]
    try:
        url, data = artifacts.add(packages["v2"])
        cmds = {}
        for d in devices:
            wait_until(
                lambda d=d: any(s.online for s in collector.of(p.State, d.device_id)[-1:]),
                60,  # eight agents start at once; CI machines are loaded
                what=f"{d.fault} online",
            )
            cmd = deploy_cmd(d.device_id, url, data, packages["v2"], fleet_key, health_window_s=0.2)
            cmds[d.fault] = cmd
            collector.publish(p.cmd_topic(d.device_id), p.encode(cmd))
        for d in devices:
            try:
                code = d.proc.wait(120)
            except subprocess.TimeoutExpired:
                d.proc.send_signal(signal.SIGUSR1)  # the agent dumps its threads' stacks
                time.sleep(1)
                states = collector.states(d.device_id, cmds[d.fault].deployment_id)
                acks = [a.accepted for a in collector.of(p.CommandAck, d.device_id)]
                seen = [t for t, _ in collector.raw if t == p.cmd_topic(d.device_id)]
                broker = [
                    line for line in (mosquitto.workdir / "mosquitto.log").read_text().splitlines()
                    if d.device_id in line
                ][-40:]  # fmt: skip
                why = (
                    f"agent not killed at {d.fault} within 120 s; states {states}, acks {acks}; "
                    f"command seen by the collector {len(seen)}x; broker log {broker}; "
                )
                pytest.fail(why + d.tail())
            assert code == 137, d.tail()
            # Killed: the device still has a model to serve, the old or the new one.
            assert _serving(d.store_dir, signing_keys[1]) in (0, 1), d.tail()
        for d in devices:
            d.proc = _start(d.config, d.log)
        for d in devices:
            got = collector.wait_terminal(d.device_id, cmds[d.fault].deployment_id, timeout=40)
            assert got == d.final, d.tail()
            want = 1 if d.final == "ACTIVE" else 0
            assert _serving(d.store_dir, signing_keys[1]) == want, d.tail()
    finally:
        for d in devices:
            d.stop()
    # A graceful stop publishes the retained offline state.
    for d in devices:
        wait_until(lambda d=d: not collector.of(p.State, d.device_id)[-1].online, 5)
