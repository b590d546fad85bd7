"""Fleet fixtures: one live fleet (uvicorn + real Mosquitto + SQLite) for the session."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.mosquitto import free_port
from tests.support.packages import make_package

ADMIN = "eft_0123456789abcdef_test-admin-secret"


@dataclass
class Live:
    service: object
    url: str
    admin: str
    operator: str
    viewer: str
    packages: dict[str, Path]

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


class UvicornThread:
    def __init__(self, app, port: int) -> None:
        import uvicorn

        cfg = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started, "uvicorn did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def fleet_packages(tmp_path_factory, signing_keys) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fleet-pkgs")
    key = signing_keys[0]
    return {
        "v1": make_package(d / "v1.efpkg", version="1.0.0", signing_key=key),
        "v2": make_package(d / "v2.efpkg", version="2.0.0", signing_key=key, seed=3),
        "broken": make_package(d / "b.efpkg", version="3.0.0", signing_key=key, break_golden=True),
        "unsigned": make_package(d / "u.efpkg", version="4.0.0"),
    }


@pytest.fixture(scope="session")
def live(tmp_path_factory, mosquitto, signing_keys, fleet_packages):
    from edgefleet.fleet import FleetService, FleetSettings, create_app

    port = free_port()
    settings = FleetSettings(
        data_dir=tmp_path_factory.mktemp("fleet"),
        broker_url=mosquitto.url,
        port=port,
        trusted_package_keys=[signing_keys[1]],
        bootstrap_admin_token=ADMIN,
        tick_interval_s=0.1,
        telemetry_flush_interval_s=0.05,
        mqtt_client_id="fleet-test",
    )
    service = FleetService(settings).start()
    server = UvicornThread(create_app(service), port)
    server.start()
    live = Live(
        service=service,
        url=f"http://127.0.0.1:{port}",
        admin=ADMIN,
        operator=service.tokens.create("operator", "op"),
        viewer=service.tokens.create("viewer", "view"),
        packages=fleet_packages,
    )
    yield live
    server.stop()
    service.stop()


@pytest.fixture(scope="session")
def fleet_pub(live):
    return live.service.ctx.signing_key.public_key()


@pytest.fixture(scope="session")
def package_pub(signing_keys):
    from edgefleet.sdk import load_public_key

    return load_public_key(signing_keys[1])


def offline_service(tmp_path, **kw):
    """A FleetService without MQTT (not started): for tests that feed it reports directly."""
    from edgefleet.fleet import FleetService, FleetSettings

    return FleetService(FleetSettings(data_dir=tmp_path, mqtt_enabled=False, **kw))
