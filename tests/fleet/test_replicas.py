"""Scale-out: two fleet replicas on one store split device messages (shared subscription)."""

from __future__ import annotations

import pytest
from edgefleet.sdk import protocol as p

from tests.support.waiting import wait_until

from .fake_device import FakeDevice

pytestmark = pytest.mark.broker


def test_shared_subscription_splits_telemetry_between_replicas(
    tmp_path, mosquitto, signing_keys, package_pub
):
    from edgefleet.fleet import FleetService, FleetSettings
    from edgefleet.fleet._db import Telemetry
    from sqlalchemy import func, select

    base = FleetSettings(
        data_dir=tmp_path,
        broker_url=mosquitto.url,
        share_group="split",
        mqtt_client_id="fleet-r0",
        telemetry_flush_interval_s=0.05,
    )
    a = FleetService(base).start()
    b = FleetService(
        base.model_copy(update={"mqtt_client_id": "fleet-r1", "run_engine": False})
    ).start()
    dev = FakeDevice("split-0", mosquitto.port, a.ctx.signing_key.public_key(), package_pub)
    dev.start()
    try:
        for i in range(60):
            dev.telemetry("tiny@1.0.0", calls=1, errors=0, p95=1.0, seq=i)

        def stored() -> int:
            with a.ctx.Session() as db:
                return db.scalar(select(func.count()).select_from(Telemetry))

        assert wait_until(lambda: stored() == 60)
        got = [s.metrics.get("edgefleet_fleet_mqtt_messages_total") for s in (a, b)]
        assert all(n > 0 for n in got), got  # both replicas took a share
        assert sum(got) >= 60 + 2  # telemetry + the device's state and inventory
        assert p.shared_filter("telemetry", "split").startswith("$share/split/")
    finally:
        dev.stop()
        b.stop()
        a.stop()
