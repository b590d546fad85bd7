"""Rollouts end to end: fleet + real Mosquitto + fake devices doing real smoke tests."""

from __future__ import annotations

import json
from contextlib import contextmanager

import paho.mqtt.client as mqtt
import pytest
from edgefleet.sdk import protocol as p

from tests.support.waiting import wait_until

from .fake_device import FakeDevice
from .rollout_api import start_rollout

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def models(live):
    with live.client(live.operator) as c:
        for key in ("v1", "v2", "broken"):
            r = c.post(
                "/api/v1/models", files={"file": ("p.efpkg", live.packages[key].read_bytes())}
            )
            assert r.status_code in (201, 409), r.text
    return live


def _devices(n, tag, mosquitto, fleet_pub, package_pub):
    return [
        FakeDevice(f"{tag}-{i}", mosquitto.port, fleet_pub, package_pub, tags=(tag,)).start()
        for i in range(n)
    ]


@contextmanager
def _registered(n, tag, live, mosquitto, fleet_pub, package_pub):
    """``n`` fake devices tagged ``tag``, registered with the fleet: (devices, API client)."""
    devs = _devices(n, tag, mosquitto, fleet_pub, package_pub)
    try:
        with live.client(live.operator) as c:
            _wait_registered(c, tag, n)
            yield devs, c
    finally:
        for d in devs:
            d.stop()


def _wait_registered(c, tag: str, n: int) -> None:
    assert wait_until(lambda: len(c.get("/api/v1/devices", params={"tag": tag}).json()) == n)


def _barrier(live, devs: list[FakeDevice]) -> None:
    """Send each device a no-op config command through the fleet's own MQTT session and
    wait for all of them: whatever the fleet published to those devices before (on the same
    session, topic and QoS) has been delivered once these have, as MQTT keeps that order."""
    ids = {}
    for d in devs:
        cmd = p.sign_command(
            p.ConfigCommand(**p.command_fields(d.id)), live.service.ctx.signing_key
        )
        live.service.ctx.publish(p.cmd_topic(d.id), p.encode(cmd), 1, False)
        ids[d.id] = cmd.command_id
    wait_until(
        lambda: all(any(c.command_id == ids[d.id] for c in d.received) for d in devs),
        what="the barrier command on every device",
    )


def test_failing_canary_halts_rollout_and_no_other_device_gets_it(
    models, live, mosquitto, fleet_pub, package_pub
):
    with _registered(4, "canary", live, mosquitto, fleet_pub, package_pub) as (devs, c):
        ro = start_rollout(c, "canary", "3.0.0", {"strategy": "canary", "canary": {"count": 1}})
        rid = ro["id"]
        assert wait_until(lambda: c.get(f"/api/v1/rollouts/{rid}").json()["status"] == "PAUSED")
        detail = c.get(f"/api/v1/rollouts/{rid}").json()
        assert "smoke test" in detail["devices"][0]["detail"]
        assert "over the failure threshold" in detail["reason"]
        _barrier(live, devs)  # a wrongly dispatched command would have arrived by now
        got = [d for d in devs if any(isinstance(x, p.DeployCommand) for x in d.received)]
        assert [d.id for d in got] == ["canary-0"]
        assert [w["states"] for w in detail["waves"]] == [{"FAILED": 1}, {"PENDING": 3}]
        assert [e["to_status"] for e in detail["events"]] == ["DRAFT", "RUNNING", "PAUSED"]
        # Manual rollback from PAUSED sends a signed rollback to the touched device only.
        r = c.post(f"/api/v1/rollouts/{rid}/rollback", json={"reason": "bad build"})
        assert r.status_code == 200 and r.json()["status"] == "ROLLED_BACK"
        assert wait_until(lambda: any(isinstance(x, p.RollbackCommand) for x in devs[0].received))
        assert not any(isinstance(x, p.RollbackCommand) for d in devs[1:] for x in d.received)
        assert c.post(f"/api/v1/rollouts/{rid}/start").status_code == 409


def test_wave_rollout_completes_and_devices_report_new_version(
    models, live, mosquitto, fleet_pub, package_pub
):
    with _registered(5, "waves", live, mosquitto, fleet_pub, package_pub) as (devs, c):
        ro = start_rollout(
            c,
            "waves",
            "1.0.0",
            {
                "strategy": "waves",
                "waves": [{"count": 1}, {"percent": 40}],
                "max_concurrent_downloads": 2,
            },
        )
        rid = ro["id"]
        assert [w["size"] for w in ro["waves"]] == [1, 2, 2]
        assert wait_until(
            lambda: c.get(f"/api/v1/rollouts/{rid}").json()["status"] == "COMPLETED", 30
        ), c.get(f"/api/v1/rollouts/{rid}").json()
        detail = c.get(f"/api/v1/rollouts/{rid}").json()
        assert [w["active"] for w in detail["waves"]] == [1, 2, 2]
        assert all(d.active == "tiny@1.0.0" for d in devs)
        assert wait_until(
            lambda: all(
                d["active_model"] == "tiny@1.0.0"
                for d in c.get("/api/v1/devices", params={"tag": "waves"}).json()
            )
        )
        # Every deploy command was signed, expiring, and addressed to its device.
        for d in devs:
            (cmd,) = [x for x in d.received if isinstance(x, p.DeployCommand)]
            assert cmd.device_id == d.id and cmd.expires_at > cmd.issued_at
            assert cmd.deployment_id == f"rollout-{rid}"
        # Telemetry per version, then the p95 gate against the previous version.
        for i, d in enumerate(devs):
            d.telemetry("tiny@1.0.0", calls=100, errors=0, p95=10.0 + i, seq=i)
        params = {"model": "tiny@1.0.0", "bucket_s": 3600, "since": 0}

        def calls() -> int:
            return sum(pt["calls"] for pt in c.get("/api/v1/telemetry", params=params).json())

        assert wait_until(lambda: calls() >= 500)


def test_p95_gate_pauses_a_slower_version(models, live, mosquitto, fleet_pub, package_pub):
    with _registered(3, "gate", live, mosquitto, fleet_pub, package_pub) as (devs, c):
        for d in devs:
            d.active = "tiny@1.0.0"
            d.publish_state()
            d.telemetry("tiny@1.0.0", calls=100, errors=0, p95=5.0)
        live.service.sync()
        assert wait_until(
            lambda: all(
                x["active_model"] == "tiny@1.0.0"
                for x in c.get("/api/v1/devices", params={"tag": "gate"}).json()
            )
        )
        ro = start_rollout(
            c,
            "gate",
            "2.0.0",
            {
                "strategy": "canary",
                "soak_s": 1.0,
                "max_p95_regression": 0.5,
                "min_gate_calls": 10,
            },
        )
        rid = ro["id"]
        assert wait_until(lambda: devs[0].active == "tiny@2.0.0")
        devs[0].telemetry("tiny@2.0.0", calls=100, errors=0, p95=50.0, seq=1)
        assert wait_until(lambda: c.get(f"/api/v1/rollouts/{rid}").json()["status"] == "PAUSED", 20)
        detail = c.get(f"/api/v1/rollouts/{rid}").json()
        assert "p95 latency gate failed" in detail["reason"]
        assert detail["gates"]["new_p95_ms"] == pytest.approx(50.0)
        assert detail["gates"]["old_p95_ms"] < 20.0
        assert not any(isinstance(x, p.DeployCommand) for d in devs[1:] for x in d.received)


def test_malformed_and_oversized_payloads_are_counted_not_fatal(live, mosquitto):
    m = live.service.metrics
    before = {
        r: m.get("edgefleet_fleet_mqtt_rejected_total", reason=r)
        for r in ("malformed", "oversized")
    }
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="junk")
    c.connect("127.0.0.1", mosquitto.port)
    c.loop_start()
    junk = [
        b"",
        b"{",
        b"[]",
        b"\xff\xfe",
        json.dumps({"type": "state"}).encode(),
        json.dumps(
            {"schema_version": 2, "type": "state", "device_id": "other", "online": True}
        ).encode(),
    ]
    for payload in junk:
        c.publish(p.state_topic("junk-1"), payload, qos=1).wait_for_publish(5)
    c.publish(p.telemetry_topic("junk-1"), b"x" * (300 * 1024), qos=1).wait_for_publish(5)
    c.publish("edgefleet/v1/devices/junk-1/nonsense", b"{}", qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()
    assert wait_until(
        lambda: (
            m.get("edgefleet_fleet_mqtt_rejected_total", reason="malformed")
            >= before["malformed"] + len(junk)
        )
    )
    assert (
        m.get("edgefleet_fleet_mqtt_rejected_total", reason="oversized") == before["oversized"] + 1
    )
    with live.client(live.viewer) as v:
        assert v.get("/health").json()["mqtt_connected"]
        assert v.get("/api/v1/devices/junk-1").status_code == 404


def test_device_refusing_the_command_signature_is_rejected(models, live, mosquitto, package_pub):
    from edgefleet.sdk._signing import Ed25519PrivateKey

    stranger = Ed25519PrivateKey.generate().public_key()
    dev = FakeDevice("untrusting-0", mosquitto.port, stranger, package_pub, tags=("untrusting",))
    dev.start()
    try:
        with live.client(live.operator) as c:
            _wait_registered(c, "untrusting", 1)
            rid = start_rollout(c, "untrusting", "1.0.0", {"strategy": "all_at_once"})["id"]
            assert wait_until(lambda: c.get(f"/api/v1/rollouts/{rid}").json()["status"] == "PAUSED")
            (d,) = c.get(f"/api/v1/rollouts/{rid}").json()["devices"]
            assert d["state"] == "REJECTED" and "unknown_key" in d["detail"]
            assert dev.active is None
    finally:
        dev.stop()


def test_offline_device_gets_the_command_from_its_persistent_session(
    models, live, mosquitto, fleet_pub, package_pub
):
    dev = FakeDevice("offline-0", mosquitto.port, fleet_pub, package_pub, tags=("offline",))
    dev.start()
    with live.client(live.operator) as c:
        _wait_registered(c, "offline", 1)
        dev.stop()  # persistent session: the broker queues QoS 1 commands meanwhile
        rid = start_rollout(c, "offline", "1.0.0", {"strategy": "all_at_once"})["id"]
        detail = c.get(f"/api/v1/rollouts/{rid}").json()
        assert detail["devices"][0]["state"] == "SENT"
        back = FakeDevice("offline-0", mosquitto.port, fleet_pub, package_pub, tags=("offline",))
        back.start()
        try:
            assert wait_until(
                lambda: c.get(f"/api/v1/rollouts/{rid}").json()["status"] == "COMPLETED"
            )
            assert back.active == "tiny@1.0.0"
        finally:
            back.stop()
