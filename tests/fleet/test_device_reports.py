"""Regression tests of issue 5's fleet fixes: device tags, MQTT sessions and retained
reports, lock contention in the API, QoS 1 duplicates."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime

import httpx
import paho.mqtt.client as mqtt
import pytest
from edgefleet.sdk import protocol as p

from tests.support.mosquitto import free_port
from tests.support.waiting import wait_until

from .conftest import ADMIN, UvicornThread


def _offline_service(tmp_path, **kw):
    from edgefleet.fleet import FleetService, FleetSettings

    return FleetService(FleetSettings(data_dir=tmp_path, mqtt_enabled=False, **kw))


# ----------------------------------------------------------------------------- tags


def test_reported_tags_reach_a_device_created_by_its_state(tmp_path):
    from edgefleet.fleet._db import Device

    svc = _offline_service(tmp_path)
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


@pytest.mark.broker
def test_stopped_replica_does_not_swallow_telemetry(tmp_path, mosquitto):
    from edgefleet.fleet import FleetService, FleetSettings
    from edgefleet.fleet._db import Telemetry
    from sqlalchemy import func, select

    base = FleetSettings(
        data_dir=tmp_path,
        broker_url=mosquitto.url,
        share_group="gone",
        mqtt_client_id="fleet-gone",
        telemetry_flush_interval_s=0.05,
    )
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

        def stored() -> int:
            with live.ctx.ReadSession() as db:
                return db.scalar(select(func.count()).select_from(Telemetry))

        assert wait_until(lambda: stored() == 40, 10), stored()
    finally:
        c.disconnect()
        c.loop_stop()
        live.stop()


# ----------------------------------------------------------------------------- lock contention


def test_held_write_lock_answers_503_with_retry_after(tmp_path):
    from edgefleet.fleet import create_app
    from fastapi.testclient import TestClient

    svc = _offline_service(tmp_path, sqlite_busy_timeout_s=0.2, bootstrap_admin_token=ADMIN)
    holder = sqlite3.connect(tmp_path / "fleet.db", isolation_level=None)
    try:
        with TestClient(create_app(svc)) as client:
            client.headers["Authorization"] = f"Bearer {ADMIN}"
            assert client.get("/api/v1/devices").status_code == 200  # warms the token cache
            holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock for long
            r = client.put("/api/v1/devices/x-1/tags", json={"tags": ["a"]})
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"] == "1"
            r = client.post("/api/v1/devices", json={"id": "x-1", "tags": ["a"]})
            assert r.status_code == 503, r.text
            holder.execute("ROLLBACK")
            r = client.post("/api/v1/devices", json={"id": "x-1", "tags": ["a"]})
            assert r.status_code == 201, r.text
    finally:
        holder.close()
        svc.stop()


@pytest.mark.broker
def test_api_under_ingestion_load_never_answers_500(tmp_path, mosquitto, fleet_packages):
    from edgefleet.fleet import FleetService, FleetSettings, create_app

    port = free_port()
    svc = FleetService(
        FleetSettings(
            data_dir=tmp_path,
            broker_url=mosquitto.url,
            port=port,
            share_group="hammer",
            allow_unverified_packages=True,
            bootstrap_admin_token=ADMIN,
            telemetry_flush_interval_s=0.01,
            telemetry_batch_size=50,
        )
    ).start()
    server = UvicornThread(create_app(svc), port)
    server.start()
    stop = threading.Event()
    statuses: list[int] = []

    def flood() -> None:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hammer-flood")
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        i = 0
        while not stop.is_set():
            dev = f"hm-{i % 40}"
            st = p.State(device_id=dev, online=True, agent_version=str(i))
            c.publish(p.state_topic(dev), p.encode(st), 1)
            s = p.TelemetrySample(ts=datetime.now(UTC), model="tiny@1.0.0", calls=1)
            c.publish(
                p.telemetry_topic(dev),
                p.encode(p.TelemetryBatch(device_id=dev, seq=i, samples=[s])),
                0,
            )
            i += 1
            time.sleep(0.001)
        c.disconnect()
        c.loop_stop()

    def api(k: int) -> None:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=60,
        ) as c:
            for i in range(8):
                body = {
                    "name": f"h{k}-{i}",
                    "model": "tiny",
                    "version": "1.0.0",
                    "target": {"device_ids": [f"hm-{(k + i) % 40}"]},
                    "spec": {},
                }
                statuses.append(c.post("/api/v1/rollouts", json=body).status_code)
                statuses.append(
                    c.put(f"/api/v1/devices/hm-{k}/tags", json={"tags": [f"t{i}"]}).status_code
                )

    flooder = threading.Thread(target=flood, daemon=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            c.headers["Authorization"] = f"Bearer {ADMIN}"
            data = fleet_packages["v1"].read_bytes()
            assert c.post("/api/v1/models", files={"file": ("p.efpkg", data)}).status_code == 201
        flooder.start()
        assert wait_until(lambda: len(svc.devices.list()) >= 40, 15)
        workers = [threading.Thread(target=api, args=(k,)) for k in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
    finally:
        stop.set()
        flooder.join(10)
        server.stop()
        svc.stop()
    assert len(statuses) == 64
    assert 500 not in statuses, statuses
    assert statuses.count(201) + statuses.count(200) >= 60, statuses  # 503 only in a pinch


# ----------------------------------------------------------------------------- duplicates


def test_duplicate_events_and_replayed_acks_are_no_ops(tmp_path):
    from edgefleet.fleet._db import ModelVersion, Rollout, RolloutDevice, RolloutEvent
    from sqlalchemy import func, select

    svc = _offline_service(tmp_path)
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


@pytest.mark.broker
def test_stable_replica_id_keeps_a_persistent_session(tmp_path, mosquitto):
    from edgefleet.fleet import FleetService, FleetSettings

    s = FleetSettings(
        data_dir=tmp_path,
        broker_url=mosquitto.url,
        mqtt_client_id="fx",
        replica_id="r1",
        share_group="stable",  # own group: the session left behind must not take others' share
    )
    svc = FleetService(s).start()
    try:
        assert svc.mqtt.client._client_id == b"fx-r1"
        assert svc.mqtt.client._clean_session is False
    finally:
        svc.stop()
        # Drop the persistent session on the shared broker (a clean connect discards it).
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fx-r1", clean_session=True)
        c.connect("127.0.0.1", mosquitto.port)
        c.disconnect()
