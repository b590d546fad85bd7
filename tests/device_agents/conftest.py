"""Fixtures for agent tests: packages (built once), an artifact server, a collector on the
session Mosquitto, and a factory of in-process agents."""

from __future__ import annotations

import uuid

import pytest
from edgefleet.sdk import TrustPolicy, generate_keypair, load_private_key

from tests.device_agents.support import ArtifactServer, Collector
from tests.support.packages import make_package
from tests.support.waiting import wait_until


@pytest.fixture(scope="session")
def fleet_key(signing_keys):
    return load_private_key(signing_keys[0])


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory):
    return generate_keypair(tmp_path_factory.mktemp("otherkeys"), "intruder")


@pytest.fixture(scope="session")
def packages(tmp_path_factory, signing_keys, other_keys):
    d = tmp_path_factory.mktemp("pkgs")
    key = signing_keys[0]
    return {
        "v1": make_package(d / "v1.efpkg", version="1.0.0", signing_key=key, seed=0),
        "v2": make_package(d / "v2.efpkg", version="2.0.0", signing_key=key, seed=1),
        "broken": make_package(
            d / "broken.efpkg", version="3.0.0", signing_key=key, seed=2, break_golden=True
        ),
        "untrusted": make_package(d / "u.efpkg", version="4.0.0", signing_key=other_keys[0]),
    }


@pytest.fixture(scope="session")
def artifacts():
    server = ArtifactServer(token="device-token-1")
    yield server
    server.close()


@pytest.fixture(scope="session")
def collector(mosquitto):
    c = Collector(mosquitto.port)
    yield c
    c.close()


@pytest.fixture
def make_agent(tmp_path, mosquitto, signing_keys, packages):
    """make_agent(install="v1", **settings) -> a started in-process Agent, connected."""
    from edgefleet.device_agents import Agent, AgentSettings

    started = []

    def factory(install: str | None = "v1", broker=None, wait_online=True, **overrides):
        device_id = overrides.pop("device_id", f"t-{uuid.uuid4().hex[:10]}")
        data_dir = overrides.pop("data_dir", tmp_path / device_id)
        settings = AgentSettings(
            device_id=device_id,
            broker_url=(broker or mosquitto).url,
            data_dir=data_dir,
            fleet_keys=[signing_keys[1]],
            device_token="device-token-1",
            telemetry_interval_s=overrides.pop("telemetry_interval_s", 3600),
            reconnect_min_s=0.1,
            reconnect_max_s=0.5,
            **overrides,
        )
        if install:
            from edgefleet.device_agents import ModelStore

            ModelStore(data_dir / "store").install(
                packages[install], TrustPolicy.device(signing_keys[1])
            )
        agent = Agent(settings).start()
        started.append(agent)
        if wait_online:
            wait_until(agent.connected.is_set, 10, what="agent online")
        return agent

    yield factory
    for a in started:
        a.stop(graceful=False)
