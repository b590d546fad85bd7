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


def mqtt_service(tmp_path, broker_url: str, group: str):
    """A started FleetService on ``broker_url`` in its own shared-subscription ``group``,
    telemetry flushed every 50 ms, no rollout engine: for the ingest tests."""
    from edgefleet.fleet import FleetService, FleetSettings

    return FleetService(
        FleetSettings(
            data_dir=tmp_path,
            broker_url=broker_url,
            share_group=group,
            mqtt_client_id=f"fleet-{group}",
            telemetry_flush_interval_s=0.05,
            run_engine=False,
        )
    ).start()


def check_refused_items_cost_only_themselves(
    svc, prefix: str, poison: str, *, rows: int, states: int
) -> None:
    """Past validation (a future bug, a new field), the store refuses one telemetry row and
    one State carrying ``poison`` in a text column: each batch is split, every other row and
    report of the devices ``{prefix}-N`` lands, and each bad item is counted in /metrics."""
    from datetime import UTC, datetime

    from edgefleet.sdk import protocol as p
    from sqlalchemy import text

    good = [(f"{prefix}-{i}", "m@1", 1.0e9 + i, i, 1, 0, 1.0, 2.0, 3.0, None, None, None)
            for i in range(rows)]  # fmt: skip
    bad = (f"{prefix}-evil", poison, 1.0e9, 0, 1, 0, None, None, None, None, None, None)
    svc.telemetry.put_many(good[: rows // 2] + [bad] + good[rows // 2 :])
    svc.telemetry.flush()
    with svc.ctx.engine.connect() as conn:
        q = text("SELECT count(*) FROM telemetry WHERE device_id LIKE :p")
        assert conn.execute(q, {"p": f"{prefix}-%"}).scalar() == rows
    assert svc.metrics.get("edgefleet_fleet_poison_dropped_total", path="telemetry") == 1

    # The reports path (state, inventory, events share it): one State the store refuses.
    msgs = [p.State(device_id=f"{prefix}-{i}", online=True, agent_version="ok")
            for i in range(states)]  # fmt: skip
    poison_state = p.State.model_construct(
        device_id=f"{prefix}-evil", online=True, agent_version=poison, slots=[],
        ts=datetime.now(UTC),
    )  # fmt: skip
    for m in msgs[: states // 2] + [poison_state] + msgs[states // 2 :]:
        svc.reports.put(m)
    svc.sync()
    assert all(svc.devices.get(f"{prefix}-{i}").agent_version == "ok" for i in range(states))
    assert svc.metrics.get("edgefleet_fleet_poison_dropped_total", path="reports") == 1
