"""Regression tests of issue 5's fleet fixes: device tags, MQTT sessions and retained
reports, lock contention in the API, QoS 1 duplicates."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from edgefleet.sdk import protocol as p

from tests.support.waiting import wait_until

from .conftest import offline_service

# ----------------------------------------------------------------------------- tags


def test_reported_tags_reach_a_device_created_by_its_state(tmp_path):
    from edgefleet.fleet._db import Device

    svc = offline_service(tmp_path)
    try:
        # State first (creates the device without tags), then the inventory with tags.
        svc.reports.apply([p.State(device_id="t-1", online=True)])
        svc.reports.apply([p.Inventory(device_id="t-1", profile="x86_64-cpu", tags=["lab", "cam"])])
        assert svc.devices.get("t-1").tags == ["cam", "lab"]

        # Operator tags stay; set_tags cannot strip what the device reports itself.
        svc.devices.set_tags("t-1", ["ops"])
        assert svc.devices.get("t-1").tags == ["cam", "lab", "ops"]

        # The device stops reporting "cam": it goes, the operator's tag stays.
        svc.reports.apply([p.Inventory(device_id="t-1", profile="x86_64-cpu", tags=["lab", "new"])])
        assert svc.devices.get("t-1").tags == ["lab", "new", "ops"]
        with svc.ctx.ReadSession() as db:
            assert db.get(Device, "t-1").inventory["tags"] == ["lab", "new"]
    finally:
        svc.stop()


# ----------------------------------------------------------------------------- MQTT


def _retained_reports(port: int, device_id: str, tags: list[str]) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{device_id}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    inv = p.Inventory(device_id=device_id, profile="x86_64-cpu", tags=tags)
    st = p.State(device_id=device_id, online=True, agent_version="a-1")
    c.publish(p.state_topic(device_id), p.encode(st), 1, True).wait_for_publish(5)
    c.publish(p.inventory_topic(device_id), p.encode(inv), 1, True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


@pytest.mark.broker
def test_fleet_started_after_its_devices_sees_their_retained_reports(tmp_path, mosquitto):
    from edgefleet.fleet import FleetService, FleetSettings

    _retained_reports(mosquitto.port, "late-0", ["late-tag"])
    svc = FleetService(
        FleetSettings(data_dir=tmp_path, broker_url=mosquitto.url, share_group="late")
    ).start()
    try:
        svc.sync()

        def seen() -> bool:
            try:
                d = svc.devices.get("late-0")
            except Exception:
                return False
            return d.online and d.tags == ["late-tag"] and d.profile == "x86_64-cpu"

        assert wait_until(seen, 10)
        assert svc.mqtt.client._clean_session is True  # no stable replica id -> clean
    finally:
        svc.stop()


# ----------------------------------------------------------------------------- duplicates


def test_duplicate_events_and_replayed_acks_are_no_ops(tmp_path):
    from edgefleet.fleet._db import ModelVersion, Rollout, RolloutDevice, RolloutEvent
    from sqlalchemy import func, select

    svc = offline_service(tmp_path)
    try:
        with svc.ctx.Session() as db:
            mv = ModelVersion(
                name="tiny",
                version="1.0.0",
                digest="0" * 64,
                file_sha256="0" * 64,
                size=1,
                path="x",
                manifest={},
            )
            db.add(mv)
            db.flush()
            db.add(
                Rollout(
                    id=7,
                    name="r",
                    model_version_id=mv.id,
                    status="RUNNING",
                    spec={},
                    target={},
                    waves=[["d-1"]],
                )
            )
            db.flush()
            db.add(
                RolloutDevice(
                    rollout_id=7,
                    device_id="d-1",
                    wave=0,
                    state="SENT",
                    command_id="c-1",
                    updated_at=1.0,
                )
            )
            db.commit()

        def rd() -> RolloutDevice:
            with svc.ctx.ReadSession() as db:
                return db.get(RolloutDevice, (7, "d-1"))

        ev = p.DeploymentEvent(device_id="d-1", deployment_id="rollout-7", state="ACTIVE")
        svc.reports.apply([ev])
        first = rd()
        assert first.state == "ACTIVE"
        svc.ctx.clock = lambda: first.updated_at + 100.0
        woken: list[int] = []
        svc.reports.on_progress = lambda: woken.append(1)
        svc.reports.apply([ev, ev])  # QoS 1 redelivery
        ack = p.CommandAck(
            device_id="d-1",
            command_id="c-1",
            action="cmd.deploy",
            accepted=False,
            reason="replayed",
        )
        again = p.CommandAck(device_id="d-1", command_id="c-1", action="cmd.deploy", accepted=True)
        svc.reports.apply([ack, again, again])
        after = rd()
        assert (after.state, after.updated_at, after.detail) == ("ACTIVE", first.updated_at, "")
        assert not woken  # nothing new: the engine is not woken
        with svc.ctx.ReadSession() as db:
            assert db.scalar(select(func.count()).select_from(RolloutEvent)) == 0
    finally:
        svc.stop()
