"""The fleet on a real PostgreSQL (initdb/pg_ctl as the postgres user, free port, temp dir)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.mosquitto import free_port

from .conftest import check_refused_items_cost_only_themselves, offline_service

pytestmark = pytest.mark.postgres

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *cmd],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def postgres_url():
    pytest.importorskip("psycopg")
    initdb = shutil.which("initdb") or str(PG_BIN / "initdb")
    pg_ctl = shutil.which("pg_ctl") or str(PG_BIN / "pg_ctl")
    if not Path(initdb).exists():
        pytest.skip("PostgreSQL server binaries are not installed (Debian: postgresql)")
    tmp = Path(tempfile.mkdtemp(prefix="fleet-pg-"))
    shutil.chown(tmp, "postgres", "postgres")
    os.chmod(tmp, 0o700)
    data, port = tmp / "data", free_port()
    _as_postgres(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    _as_postgres(
        pg_ctl,
        "-D",
        str(data),
        "-l",
        str(tmp / "log"),
        "-w",
        "-o",
        f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )
    try:
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        yield url
    finally:
        _as_postgres(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(tmp, ignore_errors=True)


def test_fleet_runs_on_postgresql(postgres_url, tmp_path, signing_keys, fleet_packages):
    from edgefleet.fleet import FleetService, FleetSettings, RolloutSpec, TargetSpec
    from edgefleet.fleet._telemetry import aggregate
    from edgefleet.fleet._telemetry_codec import batch_rows
    from edgefleet.sdk import protocol as p
    from sqlalchemy import inspect

    settings = FleetSettings(
        data_dir=tmp_path,
        database_url=postgres_url,
        mqtt_enabled=False,
        trusted_package_keys=[signing_keys[1]],
    )
    service = FleetService(settings).start()
    try:
        assert service.ctx.engine.dialect.name == "postgresql"
        tables = set(inspect(service.ctx.engine).get_table_names())
        assert {"devices", "rollouts", "telemetry", "alembic_version"} <= tables
        FleetService(settings).ctx.engine.dispose()  # migrating again is a no-op
        # The engine lease works on PostgreSQL too: the running service holds it.
        from edgefleet.fleet._lease import LeaseKeeper

        deadline = time.monotonic() + 10
        while not service.lease.held and time.monotonic() < deadline:
            time.sleep(0.05)
        rival = LeaseKeeper(service.ctx.engine, "engine", "rival", ttl_s=5)
        assert service.lease.held and not rival.acquire()
        mv = service.registry.upload(fleet_packages["v1"])
        assert service.registry.get("tiny", "1.0.0").digest == mv.digest
        for i in range(3):
            service.devices.provision(f"pg-{i}", ["pg"])
        ro = service.rollouts.create(
            "pg", "tiny", "1.0.0", TargetSpec(tags=["pg"]), RolloutSpec(strategy="canary")
        )
        service.rollouts.act(ro.id, "start", "test")
        states = {d.device_id: d.state for d in service.rollouts.devices(ro.id)}
        assert states == {"pg-0": "SENT", "pg-1": "PENDING", "pg-2": "PENDING"}
        batch = p.TelemetryBatch(
            device_id="pg-0",
            seq=1,
            samples=[
                p.TelemetrySample(
                    ts=p.utcnow(), model="tiny@1.0.0", calls=10, errors=1, latency_p95_ms=3.0
                )
            ],
        )
        service.telemetry.put_many(batch_rows(batch) * 100)
        service.telemetry.flush()
        calls, p95, err = aggregate(
            service.ctx.engine,
            model="tiny@1.0.0",
            device_ids=None,
            since=time.time() - 60,
            until=time.time() + 1,
        )
        assert calls == 1000 and p95 == pytest.approx(3.0) and err == pytest.approx(0.1)
    finally:
        service.stop()


def test_a_row_postgresql_refuses_costs_only_itself(postgres_url, tmp_path):
    """Past validation, PostgreSQL refuses a NUL in text: the batch is split, every other row
    and report lands, the bad ones are counted."""
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    svc = offline_service(tmp_path, database_url=url, telemetry_flush_interval_s=0.05).start()
    try:
        check_refused_items_cost_only_themselves(svc, "pgt", "nul\x00here", rows=200, states=20)
    finally:
        svc.stop()
