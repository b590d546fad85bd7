"""The service without MQTT: a capturing publisher and a fake clock drive the engine."""

from __future__ import annotations

import re

import pytest
from edgefleet.fleet import FleetService, FleetSettings, RolloutSpec, TargetSpec, WaveSize
from edgefleet.fleet._deployment_reports import apply_event
from edgefleet.sdk import protocol as p


@pytest.fixture()
def svc(tmp_path, signing_keys, fleet_packages):
    s = FleetService(
        FleetSettings(data_dir=tmp_path, mqtt_enabled=False, trusted_package_keys=[signing_keys[1]])
    )
    s.sent = []
    s.ctx.publish = lambda topic, payload, qos, retain: s.sent.append((topic, payload))
    s.now = 1000.0
    s.ctx.clock = lambda: s.now
    s.registry.upload(fleet_packages["v1"])
    for i in range(4):
        s.devices.provision(f"svc-{i}", ["svc"])
    yield s
    s.ctx.engine.dispose()


def _commands(svc) -> list:
    return [p.decode(t, b) for t, b in svc.sent]


def test_commands_are_signed_expiring_and_sent_once(svc):
    ro = svc.rollouts.create(
        "a", "tiny", "1.0.0", TargetSpec(tags=["svc"]), RolloutSpec(strategy="canary")
    )
    svc.rollouts.act(ro.id, "start", "test")
    for _ in range(3):
        svc.rollouts.tick_one(ro.id)  # idempotent: no second deploy for the canary
    (cmd,) = _commands(svc)
    assert isinstance(cmd, p.DeployCommand) and cmd.device_id == "svc-0"
    verifier = p.CommandVerifier("svc-0", [svc.ctx.signing_key.public_key()])
    assert verifier.verify(cmd) is cmd
    ttl = (cmd.expires_at - cmd.issued_at).total_seconds()
    assert ttl == pytest.approx(svc.settings.command_ttl_s)
    # The URL's ticket lives minutes, not the command's day (fleet/_download_tickets.py).
    exp = int(re.search(r"device=svc-0&exp=(\d+)&ticket=", cmd.artifact_url).group(1))
    assert exp - cmd.issued_at.timestamp() == pytest.approx(
        svc.settings.download_ticket_ttl_s, abs=2
    )


def test_stuck_device_times_out_and_abort_cancels_in_flight(svc):
    spec = RolloutSpec(
        strategy="waves",
        waves=[WaveSize(count=2)],
        stuck_timeout_s=60,
        failure_threshold=0.5,
        success_threshold=0.5,
    )
    ro = svc.rollouts.create("b", "tiny", "1.0.0", TargetSpec(tags=["svc"]), spec)
    svc.rollouts.act(ro.id, "start", "test")
    assert len(_commands(svc)) == 2
    with svc.ctx.Session() as db:
        apply_event(db, "svc-0", f"rollout-{ro.id}", "ACTIVE", "", svc.now)
        apply_event(db, "svc-1", f"rollout-{ro.id}", "DOWNLOADING", "", svc.now)
        db.commit()
    svc.now += 61
    svc.rollouts.tick_one(ro.id)
    states = {d.device_id: d.state for d in svc.rollouts.devices(ro.id)}
    assert states["svc-1"] == "TIMED_OUT"
    assert svc.rollouts.get(ro.id).current_wave == 1  # 1/2 ok meets the 50% thresholds
    assert {c.device_id for c in _commands(svc)[2:]} == {"svc-2", "svc-3"}
    svc.sent.clear()
    aborted = svc.rollouts.act(ro.id, "abort", "test", "operator said so")
    assert aborted.status == "ABORTED"
    cancels = _commands(svc)
    assert {c.device_id for c in cancels} == {"svc-2", "svc-3"}
    assert all(isinstance(c, p.CancelCommand) for c in cancels)
    events = svc.rollouts.events(ro.id)
    assert [e.to_status for e in events][-1] == "ABORTED"
    assert events[-1].reason == "operator said so"


def test_upload_limit_is_413(tmp_path, signing_keys, fleet_packages):
    from edgefleet.fleet import create_app
    from fastapi.testclient import TestClient

    s = FleetService(
        FleetSettings(
            data_dir=tmp_path,
            mqtt_enabled=False,
            max_upload_bytes=1024,
            trusted_package_keys=[signing_keys[1]],
            bootstrap_admin_token="eft_00000000000000ab_admin",
        )
    )
    try:
        with TestClient(create_app(s)) as c:
            r = c.post(
                "/api/v1/models",
                files={"file": ("p.efpkg", fleet_packages["v1"].read_bytes())},
                headers={"Authorization": "Bearer eft_00000000000000ab_admin"},
            )
        assert r.status_code == 413 and "byte limit" in r.json()["detail"]
    finally:
        s.ctx.engine.dispose()


def test_sqlite_reads_do_not_queue_behind_a_writer(svc):
    import time

    from sqlalchemy import text

    writer = svc.ctx.Session()
    writer.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: holds the write lock
    try:
        t0 = time.monotonic()
        assert len(svc.devices.list()) == 4
        assert time.monotonic() - t0 < 5  # a write session would wait the 30 s busy timeout
    finally:
        writer.close()
