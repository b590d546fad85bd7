"""Zero-setup mode: no broker URL -> the fleet starts an embedded amqtt broker."""

from __future__ import annotations

import pytest

from tests.support.waiting import wait_until

from .fake_device import FakeDevice

pytest.importorskip("amqtt")


def test_embedded_broker_registers_devices(tmp_path, signing_keys):
    from edgefleet.fleet import FleetService, FleetSettings
    from edgefleet.sdk import load_public_key

    settings = FleetSettings(data_dir=tmp_path, embedded_broker_port=0, tick_interval_s=0.1)
    service = FleetService(settings).start()
    try:
        assert service.broker is not None and service.mqtt.connected.is_set()
        pub = service.ctx.signing_key.public_key()
        dev = FakeDevice("emb-1", service.broker.port, pub, load_public_key(signing_keys[1]))
        dev.start()
        try:
            assert wait_until(
                lambda: any(d.id == "emb-1" and d.online for d in service.devices.list()), 10
            )
        finally:
            dev.stop()
    finally:
        service.stop()
