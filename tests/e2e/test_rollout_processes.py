"""Separate processes: Mosquitto, ``edgefleet fleet serve`` and three ``edgefleet agent run``.

Roll out v1, then v2 in waves, then roll the fleet back to v1; every device ends on the
expected version, seen from the fleet's API, from each agent's store and from what each
agent's local endpoint actually computes.
"""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
from edgefleet.fleet import FleetClient

from edgefleet.demo._local_fleet import wait_for
from tests.e2e.conftest import agent_env, fleet_connected, start_agent, start_fleet
from tests.support.mosquitto import free_port
from tests.support.packages import make_package, tiny_inputs, tiny_reference

pytestmark = [pytest.mark.slow, pytest.mark.broker]

DEVICES = {"pi4-e2e": "raspberry-pi-4", "orin-e2e": "jetson-orin-nano", "rk-e2e": "rockchip-rk3588"}
SEEDS = {"1.0.0": 11, "2.0.0": 22}


def _store_version(data_dir) -> str | None:
    from edgefleet.device_agents import ModelStore

    store = ModelStore(data_dir / "store")
    slot = store.active_slot()
    info = store.slot_info(slot) if slot else None
    return info.package_version if info else None


def _endpoint_logits(port: int, x: np.ndarray) -> np.ndarray:
    body = json.dumps({"inputs": {"input": x.tolist()}}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/predict", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return np.asarray(json.loads(r.read())["outputs"]["logits"], dtype=np.float32)


def _all_on(client: FleetClient, dirs: dict, version: str) -> bool:
    fleet = {d["id"]: d for d in client.devices()}
    return all(
        fleet.get(dev, {}).get("active_model") == f"tiny@{version}"
        and _store_version(dirs[dev]) == version
        for dev in DEVICES
    )


def _check_version(client, dirs, ports, version: str) -> None:
    fleet = {d["id"]: d for d in client.devices()}
    x = tiny_inputs(3, seed=5)
    want = tiny_reference(x, SEEDS[version])
    for dev in DEVICES:
        assert fleet[dev]["active_model"] == f"tiny@{version}", fleet[dev]
        assert _store_version(dirs[dev]) == version, dev
        # The agent's endpoint serves the new weights, not just a renamed slot (it picks
        # up an activation at its next pointer check, so allow a moment).
        wait_for(
            lambda d=dev: np.allclose(_endpoint_logits(ports[d], x), want, atol=1e-4),
            15,
            f"{dev} to compute with {version}",
        )


def test_v1_then_v2_in_waves_then_rollback(tmp_path, procs, broker, signing_keys):
    priv, pub = signing_keys
    pkgs = {
        v: make_package(tmp_path / f"tiny-{v}.efpkg", version=v, seed=s, signing_key=priv)
        for v, s in SEEDS.items()
    }
    fleet = start_fleet(procs, tmp_path, broker.url, pub)
    client = FleetClient(fleet.url, fleet.token)
    try:
        wait_for(lambda: fleet_connected(client), 60, "the fleet process to answer")
        for p in pkgs.values():
            assert client.upload(p)["name"] == "tiny"

        dirs, ports = {}, {}
        for dev, profile in DEVICES.items():
            dirs[dev], ports[dev] = tmp_path / dev, free_port()
            env = agent_env(pub, profile=profile, endpoint_port=ports[dev])
            start_agent(procs, dev, dirs[dev], broker.url, fleet.fleet_pub, env)

        seen: dict = {}

        def registered() -> bool:
            fleet_devs = seen["devices"] = {d["id"]: d for d in client.devices()}
            return all(
                dev in fleet_devs
                and fleet_devs[dev]["online"]
                and fleet_devs[dev]["profile"] == profile
                for dev, profile in DEVICES.items()
            )

        try:
            wait_for(registered, 90, "three agents registered and online")
        except TimeoutError as e:
            raise AssertionError(f"{e}; the fleet knows {seen.get('devices')}") from None

        ids = sorted(DEVICES)
        spec = {"health_window_s": 0.5}
        r1 = client.create_rollout(
            {
                "name": "v1",
                "model": "tiny",
                "version": "1.0.0",
                "target": {"device_ids": ids},
                "spec": {"strategy": "all_at_once", **spec},
                "start": True,
            }
        )
        assert r1["device_count"] == 3
        client.wait_rollout(r1["id"], timeout=90)
        wait_for(lambda: _all_on(client, dirs, "1.0.0"), 30, "every device on 1.0.0")
        _check_version(client, dirs, ports, "1.0.0")

        r2 = client.create_rollout(
            {
                "name": "v2 waves",
                "model": "tiny",
                "version": "2.0.0",
                "target": {"device_ids": ids},
                "spec": {"strategy": "waves", "waves": [{"count": 1}, {"count": 1}], **spec},
                "start": True,
            }
        )
        done = client.wait_rollout(r2["id"], timeout=120)
        assert [w["size"] for w in done["waves"]] == [1, 1, 1]
        assert all(w["active"] == 1 for w in done["waves"]), done["waves"]
        # Waves ran in order: the engine recorded an advance after each of the first two.
        advances = [e for e in done["events"] if "next wave" in e["reason"]]
        assert len(advances) == 2, done["events"]
        wait_for(lambda: _all_on(client, dirs, "2.0.0"), 30, "every device on 2.0.0")
        _check_version(client, dirs, ports, "2.0.0")

        rolled = client.act(r2["id"], "rollback", reason="e2e: back to v1")
        assert rolled["status"] == "ROLLED_BACK"
        wait_for(lambda: _all_on(client, dirs, "1.0.0"), 60, "every device back on 1.0.0")
        _check_version(client, dirs, ports, "1.0.0")
    finally:
        client.close()
