"""Generated Mosquitto credentials and ACLs, enforced by a real Mosquitto."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest
from edgefleet.fleet import hash_mqtt_password, render_acl, render_password_file
from edgefleet.sdk import protocol as p

from tests.support.mosquitto import Mosquitto
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


class Client:
    def __init__(self, port: int, user: str, password: str) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.rc = None
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"c-{user}")
        self.c.username_pw_set(user, password)
        self.c.on_connect = self._conn
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, m.payload))
        self.acked: set[int] = set()
        self.c.on_subscribe = lambda c, u, mid, codes, props: self.acked.add(mid)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _conn(self, c, u, f, rc, props) -> None:
        self.rc = rc
        self.ready.set()

    def sub(self, topic: str) -> None:
        """Subscribe and wait for the broker's SUBACK (granted or not)."""
        mid = self.c.subscribe(topic, 1)[1]
        wait_until(lambda: mid in self.acked, 5, what=f"SUBACK for {topic}")

    def pub(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_device_cannot_publish_as_another_nor_read_its_commands(tmp_path):
    users = {"fleet-svc": "fleetpw", "dev-a": "apw", "dev-b": "bpw"}
    (tmp_path / "passwd").write_text(
        render_password_file((u, hash_mqtt_password(pw)) for u, pw in users.items())
    )
    (tmp_path / "acl").write_text(render_acl("fleet-svc"))
    # "user root": mosquitto would drop to its own user and not read pytest tmp dirs.
    conf = [
        "user root",
        "allow_anonymous false",
        f"password_file {tmp_path / 'passwd'}",
        f"acl_file {tmp_path / 'acl'}",
    ]
    with Mosquitto(extra_conf=conf) as broker:
        bad = Client(broker.port, "dev-a", "wrong")
        assert bad.ready.wait(5) and bad.rc.is_failure
        bad.close()
        fleet = Client(broker.port, "fleet-svc", "fleetpw")
        a = Client(broker.port, "dev-a", "apw")
        b = Client(broker.port, "dev-b", "bpw")
        for c in (fleet, a, b):
            assert c.ready.wait(5) and not c.rc.is_failure
        fleet.sub("edgefleet/v1/devices/+/state")
        a.sub(p.cmd_topic("dev-b"))  # silently not granted
        a.sub(p.cmd_topic("dev-a"))
        b.sub(p.cmd_topic("dev-b"))
        a.pub(p.state_topic("dev-b"), b"forged")  # denied by the ACL
        a.pub(p.state_topic("dev-a"), b"mine")
        fleet.pub(p.cmd_topic("dev-b"), b"for-b")
        fleet.pub(p.cmd_topic("dev-a"), b"for-a")
        assert wait_until(lambda: (p.cmd_topic("dev-b"), b"for-b") in b.got, 5)
        assert wait_until(lambda: (p.state_topic("dev-a"), b"mine") in fleet.got, 5)
        assert wait_until(lambda: (p.cmd_topic("dev-a"), b"for-a") in a.got, 5)
        # No wait needed for what must not arrive: each refused message was sent (PUBACKed)
        # before one the same subscriber has now received, and the broker delivers in order.
        assert (p.state_topic("dev-b"), b"forged") not in fleet.got
        assert all(t != p.cmd_topic("dev-b") for t, _ in a.got)
        for c in (fleet, a, b):
            c.close()


def test_fleet_generated_files_work_with_a_real_mosquitto(tmp_path, signing_keys):
    """Provision through the fleet, start Mosquitto on the files it wrote, connect the fleet
    and a device with the generated credentials; the device only sees its own commands."""
    from edgefleet.fleet import FleetService, FleetSettings

    settings = FleetSettings(
        data_dir=tmp_path / "fleet", mqtt_enabled=False, mqtt_client_id="fleet-main"
    )
    gen = FleetService(settings)
    _, _, pw_a = gen.devices.provision("dev-a", ["lab"])
    _, _, pw_b = gen.devices.provision("dev-b", ["lab"])
    fleet_pw = gen.devices.broker_credentials()
    gen.ctx.engine.dispose()
    mdir = settings.data_dir / "mqtt"
    assert "dev-a:$7$" in (mdir / "passwd").read_text()
    conf = [
        "user root",
        "allow_anonymous false",
        f"password_file {mdir / 'passwd'}",
        f"acl_file {mdir / 'acl'}",
    ]
    with Mosquitto(extra_conf=conf) as broker:
        live = FleetService(
            settings.model_copy(
                update={
                    "mqtt_enabled": True,
                    "broker_url": broker.url,
                    "mqtt_username": "fleet-main",
                    "mqtt_password": fleet_pw,
                }
            )
        ).start()
        a = Client(broker.port, "dev-a", pw_a)
        b = Client(broker.port, "dev-b", pw_b)
        try:
            assert a.ready.wait(5) and not a.rc.is_failure
            assert b.ready.wait(5) and not b.rc.is_failure
            a.sub(p.cmd_topic("dev-a"))
            a.sub(p.cmd_topic("dev-b"))
            st = p.State(device_id="dev-b", online=True, agent_version="forged")
            a.pub(p.state_topic("dev-b"), p.encode(st))  # denied: not a's topic
            st = p.State(device_id="dev-a", online=True, agent_version="real")
            a.pub(p.state_topic("dev-a"), p.encode(st))
            live.ctx.publish(p.cmd_topic("dev-b"), b"for-b", 1, False)
            live.ctx.publish(p.cmd_topic("dev-a"), b"for-a", 1, False)
            assert wait_until(lambda: live.devices.get("dev-a").agent_version == "real", 5)
            assert wait_until(lambda: (p.cmd_topic("dev-a"), b"for-a") in a.got, 5)
            # The forged state and the command for b went out before what has now arrived,
            # on the same connections: had the broker let them through, they would be here.
            assert live.devices.get("dev-b").agent_version is None
            assert all(t != p.cmd_topic("dev-b") for t, _ in a.got)
        finally:
            a.close()
            b.close()
            live.stop()
