"""Scale-out: fleet replicas on one store split device messages (shared subscription); a
replica that stops for good gives its share back, a stable replica id keeps its session."""

from __future__ import annotations

from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from edgefleet.sdk import protocol as p

from tests.support.waiting import wait_until

from .fake_device import FakeDevice

pytestmark = pytest.mark.broker


def _settings(tmp_path, mosquitto, group: str, client_id: str, **kw):
    from edgefleet.fleet import FleetSettings

    return FleetSettings(data_dir=tmp_path, broker_url=mosquitto.url, share_group=group,
                         mqtt_client_id=client_id, telemetry_flush_interval_s=0.05,
                         **kw)  # fmt: skip


def _stored(svc) -> int:
    from edgefleet.fleet._db import Telemetry
    from sqlalchemy import func, select

    with svc.ctx.ReadSession() as db:
        return db.scalar(select(func.count()).select_from(Telemetry))


def test_shared_subscription_splits_telemetry_between_replicas(
    tmp_path, mosquitto, signing_keys, package_pub
):
    from edgefleet.fleet import FleetService

    base = _settings(tmp_path, mosquitto, "split", "fleet-r0")
    a = FleetService(base).start()
    b = FleetService(
        base.model_copy(update={"mqtt_client_id": "fleet-r1", "run_engine": False})
    ).start()
    dev = FakeDevice("split-0", mosquitto.port, a.ctx.signing_key.public_key(), package_pub)
    dev.start()
    try:
        for i in range(60):
            dev.telemetry("tiny@1.0.0", calls=1, errors=0, p95=1.0, seq=i)
        assert wait_until(lambda: _stored(a) == 60)
        got = [s.metrics.get("edgefleet_fleet_mqtt_messages_total") for s in (a, b)]
        assert all(n > 0 for n in got), got  # both replicas took a share
        assert sum(got) >= 60 + 2  # telemetry + the device's state and inventory
        assert p.shared_filter("telemetry", "split").startswith("$share/split/")
    finally:
        dev.stop()
        b.stop()
        a.stop()


def test_stopped_replica_does_not_swallow_telemetry(tmp_path, mosquitto):
    from edgefleet.fleet import FleetService

    base = _settings(tmp_path, mosquitto, "gone", "fleet-gone")
    live = FleetService(base).start()
    dead = FleetService(base.model_copy(update={"run_engine": False})).start()
    dead.stop()  # for good: its share must go back to the live replica
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gone-dev")
    c.connect("127.0.0.1", mosquitto.port)
    c.loop_start()
    try:
        for i in range(40):
            b = p.TelemetryBatch(
                device_id="gone-0",
                seq=i,
                samples=[p.TelemetrySample(ts=datetime.now(UTC), model="tiny@1.0.0", calls=1)],
            )
            c.publish(p.telemetry_topic("gone-0"), p.encode(b), 1).wait_for_publish(5)
        assert wait_until(lambda: _stored(live) == 40, 10), _stored(live)
    finally:
        c.disconnect()
        c.loop_stop()
        live.stop()


def test_stable_replica_id_keeps_a_persistent_session(tmp_path, mosquitto):
    """With a replica id the fleet's MQTT session outlives a restart: a device report sent
    while it was down (QoS 1, not retained) is delivered when it comes back."""
    from edgefleet.fleet import FleetService

    # Its own share group: the session left behind must not take the other tests' share.
    s = _settings(tmp_path, mosquitto, "stable", "fx", replica_id="r1")
    FleetService(s).start().stop()  # the broker now keeps a session for fx-r1
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="while-down")
    c.connect("127.0.0.1", mosquitto.port)
    c.loop_start()
    st = p.State(device_id="persist-0", online=True, agent_version="sent-while-down")
    c.publish(p.state_topic("persist-0"), p.encode(st), qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()
    svc = FleetService(s).start()
    try:
        assert wait_until(lambda: _agent_version(svc, "persist-0") == "sent-while-down", 10)
    finally:
        svc.stop()
        # Drop the persistent session on the shared broker (a clean connect discards it).
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fx-r1", clean_session=True)
        c.connect("127.0.0.1", mosquitto.port)
        c.disconnect()


def _agent_version(svc, device_id: str) -> str | None:
    from edgefleet.fleet import NotFoundError

    try:
        return svc.devices.get(device_id).agent_version
    except NotFoundError:
        return None
