"""The public API client and the ``edgefleet fleet`` operator commands against a live fleet
(uvicorn + real Mosquitto + SQLite) with protocol-speaking devices; the CLI runs as a real
``python -m edgefleet`` process where it matters (upload, watch, config from env/file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from edgefleet.fleet import FleetApiError, FleetClient

from tests.support.imports import modules_loaded_by
from tests.support.waiting import wait_until

from .fake_device import FakeDevice

pytestmark = pytest.mark.broker


def cli(live, token, *args, env=None, check=True):
    """``python -m edgefleet fleet ...`` as a process; URL/token from the environment."""
    full = {**os.environ, "COLUMNS": "200", "EDGEFLEET_URL": live.url, "EDGEFLEET_TOKEN": token}
    full.update(env or {})
    full.pop("EDGEFLEET_CONFIG", None) if env is None else None
    p = subprocess.run(
        [sys.executable, "-m", "edgefleet", "fleet", *args],
        capture_output=True, text=True, env=full, timeout=120,
    )  # fmt: skip
    if check:
        assert p.returncode == 0, p.stderr + p.stdout
    return p


def last_json(p) -> dict | list:
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def devs(live, mosquitto, fleet_pub, package_pub):
    ds = [
        FakeDevice(f"cli-{i}", mosquitto.port, fleet_pub, package_pub, tags=("cli",)).start()
        for i in range(3)
    ]
    with FleetClient(live.url, live.admin) as c:
        assert wait_until(lambda: len(c.search_devices(tag="cli", online=True).items) == 3)
    yield ds
    for d in ds:
        d.stop()


def test_client_imports_without_the_server_stack():
    code = "import edgefleet.fleet as f, edgefleet.fleet._cli; f.FleetClient; f.client_config"
    assert modules_loaded_by(code, ("fastapi", "sqlalchemy", "uvicorn", "starlette")) == []


def test_url_and_token_from_flags_env_or_config_file(live, tmp_path, monkeypatch):
    cfg = tmp_path / "fleet.toml"
    monkeypatch.setenv("EDGEFLEET_CONFIG", str(cfg))
    monkeypatch.delenv("EDGEFLEET_URL", raising=False)
    monkeypatch.delenv("EDGEFLEET_TOKEN", raising=False)
    with pytest.raises(FleetApiError, match="no fleet URL.*EDGEFLEET_URL"):
        FleetClient()
    # login checks the token and writes the file (0600); later commands need no flags.
    env = {"EDGEFLEET_CONFIG": str(cfg), "EDGEFLEET_URL": "", "EDGEFLEET_TOKEN": ""}
    p = cli(live, "", "login", "--url", live.url, "--token", live.viewer, env=env)
    assert "(viewer)" in p.stdout and oct(cfg.stat().st_mode & 0o777) == "0o600"
    assert isinstance(last_json(cli(live, "", "models", "list", "--json", env=env)), list)
    with FleetClient() as c:
        assert c.whoami()["role"] == "viewer"
    # Flags beat the environment: a bad env token is overridden by --token.
    p = cli(live, "eft_bad_bad", "tokens", "list", "--json", "--token", live.admin)
    assert any(t["role"] == "admin" for t in last_json(p))
    # A wrong token is a clear error and exit code 2, not a traceback.
    p = cli(live, "eft_0000_nope", "models", "list", check=False)
    assert p.returncode == 2 and "401" in p.stderr and "Traceback" not in p.stderr
    p = cli(live, live.admin, "models", "list", env={"EDGEFLEET_CONFIG": str(cfg)}, check=False)
    assert p.returncode == 0


def test_models_upload_list_show(live, tmp_path):
    pkg = str(live.packages["v1"])
    p = cli(live, live.operator, "models", "upload", pkg, "--json", check=False)
    assert p.returncode == 0 or "already registered" in p.stderr
    models = last_json(cli(live, live.viewer, "models", "list", "--json"))
    assert "tiny@1.0.0" in {f"{m['name']}@{m['version']}" for m in models}
    shown = last_json(cli(live, live.viewer, "models", "show", "tiny@1.0.0", "--json"))
    assert shown["version"] == "1.0.0" and shown["artifacts"][0]["format"] == "onnx"
    table = cli(live, live.viewer, "models", "show", "tiny@1.0.0").stdout
    assert "tiny@1.0.0" in table and "onnx" in table
    # Refused upload: the fleet's reason reaches the operator.
    p = cli(live, live.operator, "models", "upload", str(live.packages["unsigned"]), check=False)
    assert p.returncode == 2 and "not signed" in p.stderr
    p = cli(live, live.operator, "models", "show", "tiny", check=False)
    assert p.returncode == 2 and "name@version" in p.stderr


def test_devices_list_filters_show_tag_and_windows(live, devs):
    page = last_json(cli(live, live.viewer, "devices", "list", "--tag", "cli", "--json"))
    assert page["total"] == 3 and [d["id"] for d in page["items"]] == ["cli-0", "cli-1", "cli-2"]
    page = last_json(cli(live, live.viewer, "devices", "list", "-q", "cli-1", "--json"))
    assert [d["id"] for d in page["items"]] == ["cli-1"]
    with FleetClient(live.url, live.viewer) as c:
        pg = c.search_devices(tag="cli", limit=2, offset=2)
        assert pg.total == 3 and [d.id for d in pg.items] == ["cli-2"]
        assert c.search_devices(tag="cli", online=False).total == 0
        assert c.search_devices(tag="cli", profile="raspberry-pi-5").total == 0
        assert c.search_devices(tag="cli", profile="x86_64-cpu").total == 3
        with pytest.raises(FleetApiError) as e:
            c.search_devices(limit=100_000)
        assert e.value.status_code == 422
    out = cli(live, live.operator, "devices", "tag", "cli-0", "--add", "lab", "--json")
    assert set(last_json(out)["tags"]) == {"cli", "lab"}
    out = cli(live, live.operator, "devices", "tag", "cli-0", "--remove", "lab", "--json")
    assert set(last_json(out)["tags"]) == {"cli"}
    # Maintenance windows given through the API; a bad cron is a 422 naming the field.
    p = cli(live, live.operator, "devices", "windows", "cli-2",
            "--window", "0 3 * * 1-5;3600;Europe/Berlin", "--json")  # fmt: skip
    assert last_json(p)["maintenance_windows"] == [
        {"cron": "0 3 * * 1-5", "duration_s": 3600, "timezone": "Europe/Berlin"}
    ]
    p = cli(live, live.operator, "devices", "windows", "cli-2", "--window", "61 * * * *;60",
            check=False)  # fmt: skip
    assert p.returncode == 2 and "cron minute" in p.stderr
    shown = cli(live, live.viewer, "devices", "show", "cli-2").stdout
    assert "0 3 * * 1-5" in shown and "x86_64-cpu" in shown
    cli(live, live.operator, "devices", "windows", "cli-2")  # cleared
    with FleetClient(live.url, live.viewer) as c:
        assert c.device("cli-2").maintenance_windows == []


def test_rollout_create_watch_show_and_actions(live, devs):
    with live.client(live.operator) as c:
        c.post("/api/v1/models", files={"file": ("p.efpkg", live.packages["v1"].read_bytes())})
    p = cli(live, live.operator, "rollouts", "create", "-m", "tiny@1.0.0", "--tag", "cli",
            "--strategy", "canary", "--waves", "1", "--health-window", "0", "--soak", "2",
            "--start", "--json")  # fmt: skip
    ro = last_json(p)
    assert ro["status"] == "RUNNING" and [w["size"] for w in ro["waves"]] == [1, 2]
    # watch: live until the end; --json prints one line per change, exit 0 on COMPLETED.
    w = cli(live, live.viewer, "rollouts", "watch", str(ro["id"]), "--json", "--interval", "0.2")
    lines = [json.loads(x) for x in w.stdout.strip().splitlines()]
    assert lines[-1]["status"] == "COMPLETED" and len(lines) >= 2
    assert sum(x["active"] for x in lines[-1]["waves"]) == 3
    # The rich view (no --json) draws waves, gates and events; exit 0.
    view = cli(live, live.viewer, "rollouts", "watch", str(ro["id"]))
    assert "COMPLETED" in view.stdout and "3/3" not in view.stdout and "2/2" in view.stdout
    shown = last_json(cli(live, live.viewer, "rollouts", "show", str(ro["id"]), "--json"))
    assert [d["state"] for d in shown["devices"]] == ["ACTIVE"] * 3
    with FleetClient(live.url, live.viewer) as c:  # filters by deployment state and version
        assert c.search_devices(tag="cli", state="ACTIVE").total == 3
        assert c.search_devices(tag="cli", state="FAILED").total == 0
        assert wait_until(lambda: c.search_devices(tag="cli", version="tiny@1.0.0").total == 3)
        assert c.search_devices(tag="cli", version="tiny@9.9.9").total == 0
        assert c.search_devices(tag="cli").items[0]["deployment_state"] == "ACTIVE"
    # A draft, aborted from the CLI: the reason lands in the event log.
    ro2 = last_json(cli(live, live.operator, "rollouts", "create", "-m", "tiny@1.0.0",
                        "--device", "cli-0", "--json"))  # fmt: skip
    assert ro2["status"] == "DRAFT"
    p = cli(live, live.operator, "rollouts", "abort", str(ro2["id"]), "--yes",
            "--reason", "wrong target")  # fmt: skip
    assert "ABORTED" in p.stdout
    p = cli(live, live.operator, "rollouts", "start", str(ro2["id"]), check=False)
    assert p.returncode == 2 and "409" in p.stderr and "cannot start" in p.stderr
    w = cli(live, live.viewer, "rollouts", "watch", str(ro2["id"]), "--json", check=False)
    assert w.returncode == 1  # ended, but not COMPLETED
    with FleetClient(live.url, live.operator) as c:
        events = c.rollout(ro2["id"]).events
    with FleetClient(live.url, live.admin) as c:  # the refused start changed nothing: no entry
        logged = [e.action for e in c.audit(target_type="rollout", target_id=str(ro2["id"])).items]
    assert logged == ["rollout.abort", "rollout.create"]
    assert events[-1].reason == "wrong target" and events[-1].actor.startswith("token:")


def test_scheduled_rollout_starts_at_its_time(live, devs):
    with FleetClient(live.url, live.operator) as c:
        c._http.post(
            "/api/v1/models", files={"file": ("p.efpkg", live.packages["v1"].read_bytes())}
        )
        at = datetime.now(UTC) + timedelta(seconds=2)
        body = {"name": "night", "model": "tiny", "version": "1.0.0",
                "target": {"device_ids": ["cli-1"]}, "start_at": at.isoformat()}  # fmt: skip
        ro = c.create_rollout(body)
        assert ro.status == "DRAFT" and ro.start_at is not None
        time.sleep(0.5)
        assert c.rollout(ro.id).status == "DRAFT"  # not before its time
        done = c.wait_rollout(ro.id, ("COMPLETED",), timeout=30)
        start = [e for e in done.events if e.to_status == "RUNNING"][0]
        started = start.at.replace(tzinfo=start.at.tzinfo or UTC)  # SQLite: naive UTC
        assert start.actor == "scheduler" and started >= at - timedelta(seconds=0.01)
        with pytest.raises(FleetApiError, match="start_at needs a timezone"):
            c.create_rollout({**body, "start_at": "2030-01-01T02:00:00"})
        with pytest.raises(FleetApiError, match="either start"):
            c.create_rollout({**body, "start": True})
        p = cli(live, live.operator, "rollouts", "create", "-m", "tiny@1.0.0", "--device",
                "cli-1", "--start-at", "2099-01-01T02:00:00+00:00", "--json")  # fmt: skip
        assert last_json(p)["start_at"].startswith("2099-01-01T02:00:00")


def test_tokens_and_audit_log(live, devs):
    p = cli(live, live.admin, "tokens", "create", "--role", "viewer", "--name", "audit-v", "--json")
    new = last_json(p)
    assert new["token"].startswith("eft_") and new["role"] == "viewer"
    listed = last_json(cli(live, live.admin, "tokens", "list", "--json"))
    assert new["id"] in {t["id"] for t in listed}
    assert new["token"].split("_", 2)[2] not in json.dumps(listed)  # never the secret
    p = cli(live, live.operator, "tokens", "list", check=False)
    assert p.returncode == 2 and "403" in p.stderr and "admin role" in p.stderr
    with FleetClient(live.url, live.operator) as op:
        me = op.whoami()["id"]
        op.set_tags("cli-1", ["cli", "audited"])
    with FleetClient(live.url, live.admin) as admin:
        entries = admin.audit(target_type="device", target_id="cli-1").items
        tag = next(e for e in entries if e.action == "device.tag")
        assert tag.actor_id == me and tag.actor_role == "operator"
        assert "audited" in tag.detail["tags"]
        created = next(e for e in admin.audit(limit=200).items if e.action == "token.create")
        assert created.target_id == new["id"] and created.detail == {"role": "viewer"}
        assert new["token"] not in json.dumps(admin.audit(limit=500).model_dump(mode="json"))
        ro = next(  # one an operator's token acted on
            r for r in admin.rollouts()
            if any(e.actor.startswith("token:") for e in admin.rollout(r.id).events)
        )  # fmt: skip
    # A viewer sees roles, not other tokens' ids (in the audit log and rollout events).
    with FleetClient(live.url, new["token"]) as viewer:
        seen = viewer.audit(target_type="device", target_id="cli-1").items
        assert seen and all(e.actor_id is None for e in seen)
        assert {e.actor_role for e in seen} >= {"operator"}
        shown = viewer.rollout(ro.id)
        texts = [e.actor for e in shown.events] + [e.reason for e in shown.events]
        texts += [shown.reason] + [r.reason for r in viewer.rollouts()]
        assert not any("token:" in t for t in texts), texts

    table = cli(live, live.admin, "audit", "--target", "device", "--target-id", "cli-1").stdout
    assert "device.tag" in table and me in table
    cli(live, live.admin, "tokens", "revoke", new["id"])
    with FleetClient(live.url, new["token"]) as gone:
        with pytest.raises(FleetApiError) as e:
            gone.models()
        assert e.value.status_code == 401


def test_fleet_given_windows_travel_with_the_deploy(live, devs):
    with FleetClient(live.url, live.operator) as c:
        c._http.post(
            "/api/v1/models", files={"file": ("p.efpkg", live.packages["v2"].read_bytes())}
        )
        win = {"cron": "30 1 * * *", "duration_s": 7200, "timezone": "UTC"}
        c.set_maintenance_windows("cli-0", [win])
        ro = c.create_rollout({"name": "w", "model": "tiny", "version": "2.0.0",
                               "target": {"device_ids": ["cli-0", "cli-1"]},
                               "spec": {"health_window_s": 0}, "start": True})  # fmt: skip
        c.wait_rollout(ro.id, timeout=30)
        deploys = {
            d.id: [m for m in d.received if getattr(m, "deployment_id", "") == f"rollout-{ro.id}"]
            for d in devs[:2]
        }
        assert [w.model_dump() for w in deploys["cli-0"][0].maintenance_windows] == [win]
        assert deploys["cli-1"][0].maintenance_windows == []
        c.set_maintenance_windows("cli-0", [])


def test_updates_say_what_changed_since_a_time(live, devs):
    with FleetClient(live.url, live.viewer) as c:
        t = c._call("GET", "/api/v1/updates", params={"since": 0})["now"]
        devs[0].publish_state()
        assert wait_until(
            lambda: c._call("GET", "/api/v1/updates", params={"since": t})["devices_changed"] >= 1
        )
        later = c._call("GET", "/api/v1/updates", params={"since": time.time() + 60})
        assert later["devices_changed"] == 0 and later["rollouts_changed"] == []
        assert later["models"] >= 1 and later["audit_last_id"] >= 1
        with pytest.raises(FleetApiError) as e:
            c._call("GET", "/api/v1/updates", params={"since": "yesterday"})
        assert e.value.status_code == 422
        # The bounds are in the OpenAPI schema: a 422 naming the constraint.
        for bad in ("-1", "inf", "nan"):
            with pytest.raises(FleetApiError, match="query.since") as e:
                c._call("GET", "/api/v1/updates", params={"since": bad})
            assert e.value.status_code == 422
