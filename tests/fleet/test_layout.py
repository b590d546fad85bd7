"""Layering, public API and settings of edgefleet.fleet."""

from __future__ import annotations

import ast
from pathlib import Path

import edgefleet.fleet as fleet

from tests.support.imports import modules_loaded_by

FLEET = Path(fleet.__file__).parent


def test_fleet_never_imports_the_device_agent():
    for path in FLEET.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert "device_agents" not in n, f"{path.name} imports {n}"


def test_importing_the_fleet_does_not_import_torch():
    assert modules_loaded_by("import edgefleet.fleet, edgefleet.fleet._cli", ["torch"]) == []


def test_public_api_is_explicit():
    assert sorted(fleet.__all__) == sorted(set(fleet.__all__))
    for name in fleet.__all__:
        assert hasattr(fleet, name), name


def test_settings_come_from_the_env_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEFLEET_FLEET_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EDGEFLEET_FLEET_PORT", "9123")
    s = fleet.FleetSettings()
    assert s.data_dir == tmp_path and s.port == 9123
    assert s.db_url == f"sqlite:///{tmp_path.resolve() / 'fleet.db'}"


def test_migrations_match_the_models(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from edgefleet.fleet._db import Base, make_engine
    from edgefleet.fleet._migrate import upgrade_database

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade_database(engine)
    upgrade_database(engine)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_cli_token_create(monkeypatch, tmp_path):
    from edgefleet.fleet._cli import app
    from typer.testing import CliRunner

    monkeypatch.setenv("EDGEFLEET_FLEET_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    ok = runner.invoke(app, ["token", "create", "--role", "operator", "--name", "ci"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip().startswith("eft_")
    bad = runner.invoke(app, ["token", "create", "--role", "root"])
    assert bad.exit_code == 2 and "unknown role" in bad.output
    listed = runner.invoke(app, ["token", "list"])
    # the secret (which may itself contain "_") is never listed
    secret = ok.output.strip().split("_", 2)[2]
    assert "operator" in listed.output and secret not in listed.output
