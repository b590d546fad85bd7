"""``edgefleet fleet broker-config`` against a real Mosquitto: client ids bound to the
credentials, packet limits, and TLS end to end (fleet paho + bulk reader, devices, a wrong CA
refused, per-device client certificates)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from edgefleet.sdk import protocol as p
from sqlalchemy import text

from tests.support.fleet_broker import generate_broker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


class Dev:
    """A paho client as the agent makes it: client id = device id unless told otherwise."""

    def __init__(self, g, user, *, client_id=None, password=None, ca=None, cert=None, port=None):
        self.disconnects = 0
        self.rc = None
        self.error: Exception | None = None
        self.ready = threading.Event()
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or user, clean_session=False
        )
        if password is not False:
            self.c.username_pw_set(user, password or g.device_passwords.get(user, ""))
        if ca is not None:
            certfile = keyfile = None
            if cert:
                certfile, keyfile = str(cert) + ".crt", str(cert) + ".key"
            self.c.tls_set(ca_certs=str(ca), certfile=certfile, keyfile=keyfile)
        self.c.on_connect = self._conn
        self.c.on_disconnect = self._disc
        try:  # paho does the TLS handshake inside connect()
            self.c.connect("127.0.0.1", port or g.device_port)
        except (OSError, ssl.SSLError) as e:
            self.error = e
            self.ready.set()
        self.c.loop_start()

    def _conn(self, c, u, f, rc, props) -> None:
        self.rc = rc
        self.ready.set()

    def _disc(self, c, u, f, rc, props) -> None:
        self.disconnects += 1

    def ok(self, timeout: float = 10) -> bool:
        return self.ready.wait(timeout) and self.error is None and not self.rc.is_failure

    def pub(self, topic: str, payload: bytes, qos: int = 1):
        return self.c.publish(topic, payload, qos=qos)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _fleet(g, **kw):
    from edgefleet.fleet import FleetService, FleetSettings

    settings = FleetSettings(
        data_dir=g.data_dir,
        broker_url=g.fleet_url(),
        mqtt_client_id=g.fleet_user,
        mqtt_username=g.fleet_user,
        mqtt_password=g.fleet_password,
        telemetry_flush_interval_s=0.05,
        run_engine=False,
        **kw,
    )
    return FleetService(settings).start()


def _telemetry(dev: str, seq: int) -> bytes:
    s = p.TelemetrySample(ts=datetime.now(UTC), model="m@1", calls=5, latency_p95_ms=3.0)
    return p.encode(p.TelemetryBatch(device_id=dev, seq=seq, samples=[s]))


def _rows(svc, dev: str) -> int:
    svc.telemetry.flush()
    with svc.ctx.engine.connect() as conn:
        q = text("SELECT count(*) FROM telemetry WHERE device_id = :d")
        return conn.execute(q, {"d": dev}).scalar()


def _mqtt_over_tls(g, user: str, password: str, cert=None) -> bool:
    """CONNECT over a verified TLS socket (paho leaks the socket of a failed handshake, a
    ResourceWarning here): True if the broker answers CONNACK 0."""
    from edgefleet.fleet import client_context
    from edgefleet.fleet._mqtt_wire import connect_packet

    ctx = client_context(g.ca, *((f"{cert}.crt", f"{cert}.key") if cert else ()))
    try:
        with socket.create_connection(("127.0.0.1", g.device_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(
                    connect_packet(
                        user, clean_session=True, keepalive=10, username=user, password=password
                    )
                )
                return tls.recv(4) == b"\x20\x02\x00\x00"
    except (OSError, ssl.SSLError):
        return False


def test_generated_config_binds_client_ids_and_limits_packets(tmp_path):
    g = generate_broker(tmp_path / "fleet", ["dev-a", "dev-b"], max_payload_bytes=64 * 1024)
    conf = (g.mqtt_dir / "mosquitto.conf").read_text()
    assert "use_username_as_clientid true" in conf and "max_packet_size" in conf
    assert (g.mqtt_dir / "fleet-passwd").read_text().startswith("fleet-main:$7$")
    with g:
        svc = _fleet(g, max_payload_bytes=64 * 1024)
        b = Dev(g, "dev-b")
        try:
            assert b.ok() and svc.mqtt.healthy
            # Device A's credentials, device B's client id: B must stay connected.
            a_as_b = Dev(g, "dev-a", client_id="dev-b")
            assert a_as_b.ok()
            time.sleep(1.0)
            assert b.disconnects == 0, "device A's credentials disconnected device B"
            # ...and what "dev-b" (really A) publishes under B's topic is refused by the ACL.
            a_as_b.pub(p.state_topic("dev-b"), p.encode(p.State(device_id="dev-b", online=False)))
            st = p.State(device_id="dev-b", online=True, agent_version="real-b")
            b.pub(p.state_topic("dev-b"), p.encode(st)).wait_for_publish(5)
            assert wait_until(lambda: svc.devices.get("dev-b").agent_version == "real-b", 10)
            time.sleep(0.3)
            assert svc.devices.get("dev-b").online
            # A device's credentials do not work on the fleet's listener.
            intruder = Dev(g, "dev-a", client_id="fleet-main-x", port=g.fleet_port)
            assert not intruder.ok(5)
            intruder.close()
            # A packet over the limit: the broker disconnects its sender; nobody receives it.
            a_as_b.pub(p.telemetry_topic("dev-a"), b"x" * (200 * 1024), qos=0)
            assert wait_until(lambda: a_as_b.disconnects >= 1, 10)
            b.pub(p.telemetry_topic("dev-b"), _telemetry("dev-b", 1)).wait_for_publish(5)
            assert wait_until(lambda: _rows(svc, "dev-b") == 1, 10)
            assert svc.metrics.get("edgefleet_fleet_mqtt_rejected_total", reason="oversized") == 0
            assert b.disconnects == 0
            a_as_b.close()
        finally:
            b.close()
            svc.stop()


def test_tls_end_to_end_and_a_wrong_ca_is_refused(tmp_path):
    from edgefleet.fleet import client_context, ensure_ca

    g = generate_broker(tmp_path / "fleet", ["dev-a"], tls=True)
    wrong = ensure_ca(tmp_path / "other-ca")
    with g:
        svc = _fleet(g, mqtt_tls_ca=g.ca)
        a = Dev(g, "dev-a", ca=g.ca)
        try:
            # Both fleet connections (paho and the bulk telemetry reader) are up over TLS.
            assert svc.mqtt.port == g.fleet_port and svc.mqtt.healthy
            assert isinstance(svc.mqtt.ingest._sock, ssl.SSLSocket)
            assert a.ok()
            st = p.State(device_id="dev-a", online=True, agent_version="tls")
            a.pub(p.state_topic("dev-a"), p.encode(st)).wait_for_publish(5)
            for seq in range(3):
                a.pub(p.telemetry_topic("dev-a"), _telemetry("dev-a", seq)).wait_for_publish(5)
            assert wait_until(lambda: svc.devices.get("dev-a").agent_version == "tls", 10)
            assert wait_until(lambda: _rows(svc, "dev-a") == 3, 10)
            # Plain MQTT on the TLS port gets nowhere.
            plain = Dev(g, "dev-a")
            assert not plain.ok(2)
            plain.close()
        finally:
            a.close()
            svc.stop()
        # A client trusting another CA refuses the broker's certificate.
        ctx = client_context(wrong.ca_cert)
        with socket.create_connection(("127.0.0.1", g.device_port), timeout=5) as raw:
            with pytest.raises(ssl.SSLCertVerificationError):
                ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        from edgefleet.fleet._ingest import TelemetryIngest
        from edgefleet.fleet._prometheus import Metrics

        reader = TelemetryIngest(
            "127.0.0.1",
            g.fleet_port,
            client_id="wrong-ca",
            clean_session=True,
            username=g.fleet_user,
            password=g.fleet_password,
            topic_filter="edgefleet/v1/devices/+/telemetry",
            max_payload_bytes=1024,
            metrics=Metrics(),
            on_rows=lambda rows: None,
            reject=lambda *a: None,
            tls=ctx,
        )
        reader.start()
        try:
            assert not reader.subscribed.wait(2)
        finally:
            reader.stop()


def test_per_device_client_certificates(tmp_path):
    g = generate_broker(tmp_path / "fleet", ["dev-a", "dev-b"], tls=True, client_certs=True)
    devices = g.mqtt_dir / "tls" / "devices"
    assert (devices / "dev-a.crt").exists() and (devices / "dev-b.key").stat().st_mode & 0o077 == 0
    with g:
        svc = _fleet(g, mqtt_tls_ca=g.ca)
        b = Dev(g, "dev-b", password=False, ca=g.ca, cert=devices / "dev-b")
        try:
            assert b.ok()
            # dev-a's certificate with dev-b's client id: its identity (CN) is its client id.
            a_as_b = Dev(g, "x", client_id="dev-b", password=False, ca=g.ca, cert=devices / "dev-a")
            assert a_as_b.ok()
            a_as_b.pub(p.state_topic("dev-b"), p.encode(p.State(device_id="dev-b", online=True)))
            st = p.State(device_id="dev-b", online=True, agent_version="cert-b")
            b.pub(p.state_topic("dev-b"), p.encode(st)).wait_for_publish(5)
            assert wait_until(lambda: svc.devices.get("dev-b").agent_version == "cert-b", 10)
            time.sleep(0.5)
            assert b.disconnects == 0
            a_as_b.close()
            # Without a certificate: refused at the TLS handshake, password or not.
            assert not _mqtt_over_tls(g, "dev-a", g.device_passwords["dev-a"])
            assert _mqtt_over_tls(g, "x", "", cert=devices / "dev-a")
        finally:
            b.close()
            svc.stop()
