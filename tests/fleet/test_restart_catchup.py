"""A deployment that ends while the fleet is down reaches its rollout after the restart,
from the device's retained state (the event itself went to nobody)."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from edgefleet.fleet import FleetService, FleetSettings, RolloutSpec, TargetSpec
from edgefleet.sdk import protocol as p

from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


def _device_client(port: int, device_id: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"catchup-{device_id}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def _publish_state(c: mqtt.Client, device_id: str, dep: str | None, state: str | None) -> None:
    st = p.State(
        device_id=device_id, online=True, deployment_id=dep, deployment_state=state
    )  # fmt: skip
    c.publish(p.state_topic(device_id), p.encode(st), qos=1, retain=True).wait_for_publish(10)


def test_outcome_reported_while_fleet_was_down_completes_rollout(
    tmp_path, mosquitto, signing_keys, fleet_packages
):
    settings = FleetSettings(
        data_dir=tmp_path,
        broker_url=mosquitto.url,
        trusted_package_keys=[signing_keys[1]],
        tick_interval_s=0.1,
        share_group="catchup",
    )
    ids = ["catchup-0", "catchup-1"]
    fleet = FleetService(settings).start()
    clients = {d: _device_client(mosquitto.port, d) for d in ids}
    try:
        fleet.registry.upload(fleet_packages["v1"])
        for d in ids:
            fleet.devices.provision(d, ["catchup"])
            _publish_state(clients[d], d, None, None)
        ro = fleet.rollouts.create(
            "catchup", "tiny", "1.0.0", TargetSpec(tags=["catchup"]),
            RolloutSpec(health_window_s=0),
        )  # fmt: skip
        fleet.rollouts.act(ro.id, "start", "test")
        dep = f"rollout-{ro.id}"
        assert wait_until(lambda: {d.state for d in fleet.rollouts.devices(ro.id)} == {"SENT"})
        fleet.stop()

        # Meanwhile the devices finish: one ACTIVE, one FAILED; only their retained state
        # tells (a stale in-flight state must not move anything backwards either).
        _publish_state(clients["catchup-0"], "catchup-0", dep, "ACTIVE")
        _publish_state(clients["catchup-1"], "catchup-1", dep, "FAILED")

        fleet = FleetService(settings).start()

        def states() -> dict[str, str]:
            return {d.device_id: d.state for d in fleet.rollouts.devices(ro.id)}

        assert wait_until(lambda: states() == {"catchup-0": "ACTIVE", "catchup-1": "FAILED"})
        _publish_state(clients["catchup-0"], "catchup-0", dep, "DOWNLOADING")
        fleet.sync()
        assert states()["catchup-0"] == "ACTIVE"
    finally:
        fleet.stop()
        for c in clients.values():
            c.loop_stop()
            c.disconnect()
