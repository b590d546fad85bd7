"""cancel / rollback / benchmark / config commands, and commands sent while offline."""

from __future__ import annotations

import json

import pytest
from edgefleet.sdk import protocol as p

from tests.device_agents.support import deploy_cmd, wait_until
from tests.device_agents.test_deploy import _send, _serving

pytestmark = pytest.mark.broker


def _ack(collector, agent, cmd):
    return wait_until(
        lambda: [a for a in collector.of(p.CommandAck, agent.device_id)
                 if a.command_id == cmd.command_id],
        what=f"ack of {cmd.type}",
    )[-1]  # fmt: skip


def test_cancel_while_downloading(make_agent, collector, artifacts, packages, fleet_key):
    agent = make_agent()
    url, data = artifacts.add(packages["v2"])
    cmd = deploy_cmd(agent.device_id, url, data, packages["v2"], fleet_key)
    artifacts.delay_s = 1.0
    try:
        _send(collector, agent, cmd)
        wait_until(lambda: "DOWNLOADING" in collector.states(agent.device_id, cmd.deployment_id))
        cancel = p.sign_command(
            p.CancelCommand(**p.command_fields(agent.device_id), deployment_id=cmd.deployment_id),
            fleet_key,
        )
        _send(collector, agent, cancel)
        assert collector.wait_terminal(agent.device_id, cmd.deployment_id) == "CANCELED"
    finally:
        artifacts.delay_s = 0.0
    assert _serving(agent, 0)
    assert not list((agent.settings.data_dir / "downloads").glob("*"))


def test_rollback_benchmark_and_config(make_agent, collector, artifacts, packages, fleet_key):
    agent = make_agent()
    url, data = artifacts.add(packages["v2"])
    cmd = deploy_cmd(agent.device_id, url, data, packages["v2"], fleet_key)
    _send(collector, agent, cmd)
    assert collector.wait_terminal(agent.device_id, cmd.deployment_id) == "ACTIVE"

    bench = p.sign_command(
        p.BenchmarkCommand(**p.command_fields(agent.device_id), iterations=30), fleet_key
    )
    _send(collector, agent, bench)
    ack = wait_until(
        lambda: [a for a in collector.of(p.CommandAck, agent.device_id)
                 if a.command_id == bench.command_id and a.result]
    )[-1]  # fmt: skip
    r = ack.result
    assert r["package"] == "tiny@2.0.0" and r["iterations"] == 30
    assert 0 < r["p50_ms"] <= r["p95_ms"] < 1000 and r["rss_mb"] > 10

    rollback = p.sign_command(
        p.RollbackCommand(**p.command_fields(agent.device_id), deployment_id=cmd.deployment_id),
        fleet_key,
    )
    _send(collector, agent, rollback)
    wait_until(lambda: "ROLLED_BACK" in collector.states(agent.device_id, cmd.deployment_id))
    assert _ack(collector, agent, rollback).accepted
    assert _serving(agent, 0)

    config = p.sign_command(
        p.ConfigCommand(**p.command_fields(agent.device_id), telemetry_interval_s=0.1,
                        cache_entries=32),
        fleet_key,
    )  # fmt: skip
    _send(collector, agent, config)
    assert _ack(collector, agent, config).accepted
    wait_until(lambda: agent.telemetry_interval_s == 0.1)
    saved = json.loads((agent.settings.data_dir / "config.json").read_text())
    assert saved["cache_entries"] == 32 and saved["telemetry_interval_s"] == 0.1
    # The new interval is live: telemetry starts flowing at ~10 Hz.
    wait_until(lambda: len(collector.of(p.TelemetryBatch, agent.device_id)) >= 3, 10)


@pytest.mark.parametrize("version", ["5", "3.1.1"])
def test_command_sent_while_offline_arrives_on_reconnect(make_agent, collector, fleet_key, version):
    agent = make_agent(install=None, local_endpoint=None, mqtt_version=version)
    dev, data_dir = agent.device_id, agent.settings.data_dir
    agent.stop(graceful=True)
    wait_until(lambda: not collector.of(p.State, dev)[-1].online, 30, what="offline state")
    config = p.sign_command(
        p.ConfigCommand(**p.command_fields(dev), telemetry_interval_s=42.0), fleet_key
    )
    _send(collector, agent, config)  # nobody is connected as this device right now
    again = make_agent(
        install=None, local_endpoint=None, device_id=dev, data_dir=data_dir, mqtt_version=version
    )
    wait_until(lambda: again.telemetry_interval_s == 42.0, 10, what="queued command")


def test_deploy_waiting_behind_another_survives_restart(
    make_agent, collector, artifacts, packages, fleet_key
):
    """A second deploy accepted while one runs is persisted; after a restart it runs."""
    agent = make_agent()
    dev, data_dir = agent.device_id, agent.settings.data_dir
    url2, data2 = artifacts.add(packages["v2"])
    url1, data1 = artifacts.add(packages["v1"])
    first = deploy_cmd(dev, url2, data2, packages["v2"], fleet_key)
    second = deploy_cmd(dev, url1, data1, packages["v1"], fleet_key)
    artifacts.delay_s = 0.8
    try:
        _send(collector, agent, first)
        wait_until(lambda: "DOWNLOADING" in collector.states(dev, first.deployment_id))
        _send(collector, agent, second)
        assert _ack(collector, agent, second).accepted
        pending = json.loads((data_dir / "pending.json").read_text())
        assert second.nonce in [i["nonce"] for i in pending]
        agent.stop(graceful=False)  # the running deploy finishes; the waiting one must not
    finally:
        artifacts.delay_s = 0.0
    assert collector.states(dev, second.deployment_id) == []
    again = make_agent(install=None, device_id=dev, data_dir=data_dir)
    assert collector.wait_terminal(dev, second.deployment_id) == "ACTIVE"
    assert collector.states(dev, second.deployment_id).count("QUEUED") == 1
    # Removed once the deploy returns (after its health window), a moment after ACTIVE.
    wait_until(
        lambda: json.loads((data_dir / "pending.json").read_text()) == [],
        what="pending.json emptied after the deploy",
    )
    assert _serving(again, 0)
