"""The operator's CLI against real processes: Mosquitto, ``edgefleet fleet serve`` and two
``edgefleet agent run`` (one declaring a maintenance window that is closed). Every step is
``python -m edgefleet fleet ...``: upload, devices, a scheduled rollout watched live until it
ends, the device that waits for its window, the audit trail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from edgefleet.fleet import FleetClient

from tests.e2e.conftest import agent_env, start_agent, start_fleet
from tests.support.packages import make_package
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]


def fleet_cli(fleet, *args, check=True):
    env = {**os.environ, "EDGEFLEET_URL": fleet.url, "EDGEFLEET_TOKEN": fleet.token,
           "COLUMNS": "200"}  # fmt: skip
    env.pop("EDGEFLEET_CONFIG", None)
    p = subprocess.run([sys.executable, "-m", "edgefleet", "fleet", *args], env=env,
                       capture_output=True, text=True, timeout=180)  # fmt: skip
    if check:
        assert p.returncode == 0, p.stderr + p.stdout
    return p


def test_cli_scheduled_rollout_watch_and_a_closed_window(tmp_path, procs, broker, signing_keys):
    priv, pub = signing_keys
    pkg = make_package(tmp_path / "tiny-1.0.0.efpkg", version="1.0.0", seed=4, signing_key=priv)
    fleet = start_fleet(procs, tmp_path, broker.url, pub)
    client = FleetClient(fleet.url, fleet.token)
    try:
        wait_for(lambda: _healthy(client), 60, "the fleet process to answer")
        assert "uploaded tiny@1.0.0" in fleet_cli(fleet, "models", "upload", str(pkg)).stdout
        # One agent may activate any time; the other only 03:00-03:05 UTC on 29 February.
        closed = [{"cron": "0 3 29 2 *", "duration_s": 300, "timezone": "UTC"}]
        for dev, extra in (("cli-open", {}), ("cli-night", {
            "EDGEFLEET_AGENT_MAINTENANCE_WINDOWS": json.dumps(closed)})):  # fmt: skip
            env = {**agent_env(pub, profile="raspberry-pi-4"), **extra}
            start_agent(procs, dev, tmp_path / dev, broker.url, fleet.fleet_pub, env)
        wait_for(lambda: client.search_devices(tag="e2e", online=True).total == 2, 90, "two agents")
        listed = json.loads(fleet_cli(fleet, "devices", "list", "--tag", "e2e", "--json").stdout)
        assert [d["id"] for d in listed["items"]] == ["cli-night", "cli-open"]
        shown = fleet_cli(fleet, "devices", "show", "cli-night").stdout
        assert "declared by the device: '0 3 29 2 *'" in shown and "onnxruntime" in shown
        at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
        ro = json.loads(fleet_cli(fleet, "rollouts", "create", "-m", "tiny@1.0.0", "--tag",
                                  "e2e", "--strategy", "all_at_once", "--health-window", "0.5",
                                  "--start-at", at, "--json").stdout)  # fmt: skip
        assert ro["status"] == "DRAFT"
        # The open device activates; the other stages and waits: watch until it is stuck on it.
        watch = fleet_cli(fleet, "rollouts", "watch", str(ro["id"]), "--json", "--interval",
                          "0.5", "--timeout", "30", check=False)  # fmt: skip
        assert watch.returncode == 3, watch.stderr  # still RUNNING at the timeout
        lines = [json.loads(x) for x in watch.stdout.splitlines()]
        assert lines[0]["status"] in ("DRAFT", "RUNNING") and lines[-1]["status"] == "RUNNING"
        states = {d.device_id: d for d in client.rollout(ro["id"]).devices}
        assert states["cli-open"].state == "ACTIVE"
        assert states["cli-night"].state == "STAGED"
        assert states["cli-night"].detail.startswith("waiting for a maintenance window")
        events = client.rollout(ro["id"]).events
        assert any(e.actor == "scheduler" and e.to_status == "RUNNING" for e in events)
        # Abort from the CLI: the waiting device's deployment is canceled, nothing activates.
        fleet_cli(fleet, "rollouts", "abort", str(ro["id"]), "--yes", "--reason", "night only")
        wait_for(
            lambda: {d.device_id: d.state for d in client.rollout(ro["id"]).devices}["cli-night"]
            == "CANCELED", 30, "the waiting device to cancel",
        )  # fmt: skip
        assert client.device("cli-night").active_model is None
        audit = fleet_cli(fleet, "audit", "--target", "rollout", "--target-id", str(ro["id"]))
        assert "rollout.create" in audit.stdout and "rollout.abort" in audit.stdout
    finally:
        client.close()


def _healthy(client: FleetClient) -> bool:
    try:
        return client.health()["status"] == "ok"
    except Exception:
        return False


def wait_for(pred, timeout: float, what: str) -> None:
    assert wait_until(pred, timeout, 0.3), f"timed out after {timeout:.0f}s waiting for {what}"
