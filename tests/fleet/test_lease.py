"""One rollout engine among several fleet replicas: a lease in the (real SQLite) database."""

from __future__ import annotations

import pytest
from edgefleet.sdk import protocol as p

from tests.fleet.conftest import UvicornThread
from tests.support.mosquitto import free_port
from tests.support.waiting import wait_until

from .fake_device import FakeDevice


def test_lease_is_exclusive_renewable_and_taken_over(tmp_path):
    from edgefleet.fleet._db import make_engine
    from edgefleet.fleet._lease import LeaseKeeper
    from edgefleet.fleet._migrate import upgrade_database

    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    upgrade_database(engine)
    a = LeaseKeeper(engine, "engine", "a", ttl_s=10)
    b = LeaseKeeper(engine, "engine", "b", ttl_s=10)
    try:
        assert a.acquire(now=100.0) and not b.acquire(now=100.0)
        assert a.acquire(now=108.0)  # renewed past half the TTL: now held until 118
        assert not b.acquire(now=115.0)
        assert b.acquire(now=118.5) and not a.acquire(now=118.6)  # a hung: b took over
        b.release()
        assert a.acquire(now=119.0)  # released: no need to wait for the expiry
    finally:
        engine.dispose()


@pytest.mark.broker
def test_two_replicas_one_engine_and_failover(
    tmp_path, mosquitto, signing_keys, fleet_packages, package_pub
):
    from edgefleet.fleet import FleetService, FleetSettings, RolloutSpec, TargetSpec, create_app

    def replica(name: str):
        port = free_port()
        s = FleetSettings(
            data_dir=tmp_path,  # shared: database, package store, keys
            broker_url=mosquitto.url,
            port=port,
            trusted_package_keys=[signing_keys[1]],
            tick_interval_s=0.1,
            engine_lease_s=2.0,
            share_group="lease",
            mqtt_client_id=f"fleet-{name}",
        )
        svc = FleetService(s).start()
        http = UvicornThread(create_app(svc), port)
        http.start()
        return svc, http

    first = replica("a")
    first[0].registry.upload(fleet_packages["v1"])
    first[0].registry.upload(fleet_packages["v2"])
    second = replica("b")
    replicas = [first, second]
    fleet_pub = first[0].ctx.signing_key.public_key()
    devs = [FakeDevice(f"lease-{i}", mosquitto.port, fleet_pub, package_pub, tags=("lease",))
            for i in range(3)]  # fmt: skip
    for d in devs:
        d.start()
    try:
        svc = first[0]
        assert wait_until(lambda: len(svc.devices.list(tag="lease")) == 3)

        def run(s, version: str) -> int:
            ro = s.rollouts.create(
                f"lease-{version}", "tiny", version, TargetSpec(tags=["lease"]),
                RolloutSpec(health_window_s=0),
            )  # fmt: skip
            s.rollouts.act(ro.id, "start", "test")
            assert wait_until(lambda: s.rollouts.get(ro.id).status == "COMPLETED", 30)
            return ro.id

        run(svc, "1.0.0")
        deploys = [sum(isinstance(c, p.DeployCommand) for c in d.received) for d in devs]
        assert deploys == [1, 1, 1]  # two engines would have sent some twice
        leaders = [s for s, _ in replicas if s.lease.held]
        assert len(leaders) == 1

        # The leader stops; the other replica takes the lease and runs the next rollout.
        leader = leaders[0]
        other = second[0] if leader is first[0] else first[0]
        for s, http in replicas:
            if s is leader:
                http.stop()
                s.stop()
        replicas = [r for r in replicas if r[0] is other]
        run(other, "2.0.0")
        assert other.lease.held
        assert [d.active for d in devs] == ["tiny@2.0.0"] * 3
    finally:
        for d in devs:
            d.stop()
        for s, http in replicas:
            http.stop()
            s.stop()
