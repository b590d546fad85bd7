"""Maintenance windows on a real agent (real Mosquitto, real HTTP download): outside every
window the deployment downloads, verifies and stages, then waits; it activates once a
window opens; the fleet's windows in the command win over the device's own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from edgefleet.sdk import protocol as p

from tests.device_agents.support import deploy_cmd, wait_until

pytestmark = pytest.mark.broker

NIGHT = p.MaintenanceWindow(cron="0 2 * * *", duration_s=3600)  # 02:00-03:00 UTC
NOON = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
INSIDE = datetime(2026, 5, 5, 2, 30, tzinfo=UTC)


def _clocked(agent, now: list[datetime]) -> None:
    agent.deployer.hooks.clock = lambda: now[0]
    agent.deployer.hooks.window_poll_s = 0.05


def test_device_window_holds_activation_until_it_opens(
    make_agent, collector, artifacts, packages, fleet_key
):
    agent = make_agent(maintenance_windows=[NIGHT])
    # The device tells the fleet about its own windows (retained inventory).
    inv = wait_until(lambda: collector.of(p.Inventory, agent.device_id), 10, what="inventory")
    assert inv[-1].maintenance_windows == [NIGHT]
    now = [NOON]
    _clocked(agent, now)
    url, data = artifacts.add(packages["v2"])
    cmd = deploy_cmd(agent.device_id, url, data, packages["v2"], fleet_key)
    collector.publish(p.cmd_topic(agent.device_id), p.encode(cmd))

    def waiting():
        return [
            e for e in collector.of(p.DeploymentEvent, agent.device_id)
            if e.deployment_id == cmd.deployment_id and e.reason.startswith(p.WAITING_FOR_WINDOW)
        ]  # fmt: skip

    ev = wait_until(waiting, 30, what="STAGED, waiting for the window")[0]
    assert ev.state == p.DeploymentState.STAGED
    assert "next opens 2026-05-05T02:00+00:00" in ev.reason
    assert collector.states(agent.device_id, cmd.deployment_id)[-1] == "STAGED"
    assert agent.store.slot_info(agent.store.active_slot()).package_version == "1.0.0"
    now[0] = INSIDE  # the window opens
    assert collector.wait_terminal(agent.device_id, cmd.deployment_id) == "ACTIVE"
    assert agent.store.slot_info(agent.store.active_slot()).package_version == "2.0.0"


def test_fleet_windows_in_the_command_win_and_cancel_still_works(
    make_agent, collector, artifacts, packages, fleet_key
):
    agent = make_agent()  # no windows of its own: would activate at once
    _clocked(agent, [NOON])
    url, data = artifacts.add(packages["v2"])
    cmd = deploy_cmd(agent.device_id, url, data, packages["v2"], fleet_key)
    cmd = p.sign_command(
        cmd.model_copy(update={"maintenance_windows": [NIGHT], "signature": None}),
        fleet_key,
    )
    collector.publish(p.cmd_topic(agent.device_id), p.encode(cmd))
    wait_until(
        lambda: "STAGED" in collector.states(agent.device_id, cmd.deployment_id), 30,
        what="staged",
    )  # fmt: skip
    cancel = p.sign_command(
        p.CancelCommand(**p.command_fields(agent.device_id, ttl_s=60),
                        deployment_id=cmd.deployment_id),
        fleet_key,
    )  # fmt: skip
    collector.publish(p.cmd_topic(agent.device_id), p.encode(cancel))
    assert collector.wait_terminal(agent.device_id, cmd.deployment_id) == "CANCELED"
    assert agent.store.slot_info(agent.store.active_slot()).package_version == "1.0.0"
