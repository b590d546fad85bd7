"""Deployments end to end against a real Mosquitto and a real HTTP artifact server."""

from __future__ import annotations

import numpy as np
import pytest
from edgefleet.device_agents import load_active
from edgefleet.sdk import protocol as p

from tests.device_agents.support import deploy_cmd
from tests.support.packages import tiny_inputs, tiny_reference
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


def _send(collector, agent, cmd):
    collector.publish(p.cmd_topic(agent.device_id), p.encode(cmd))


def _deploy(collector, agent, artifacts, package, key, **kw):
    """Serve ``package``, send the agent a signed deploy of it; the command sent."""
    url, data = artifacts.add(package)
    cmd = deploy_cmd(agent.device_id, url, data, package, key, **kw)
    _send(collector, agent, cmd)
    return cmd


def _old_model_kept(agent) -> None:
    """A deployment that did not finish left the old model serving and no download behind."""
    assert _serving(agent, 0)
    assert not list((agent.settings.data_dir / "downloads").glob("*"))


def _serving(agent, seed):
    """The active slot answers like the reference model of ``seed``."""
    model = load_active(agent.store)
    try:
        x = tiny_inputs(3, seed=7)
        return np.allclose(model.predict(x)["logits"], tiny_reference(x, seed), atol=1e-4)
    finally:
        model.close()


def test_happy_path_deploy(make_agent, collector, artifacts, packages, fleet_key):
    agent = make_agent()
    assert _serving(agent, 0)
    url, data = artifacts.add(packages["v2"])
    cmd = deploy_cmd(agent.device_id, url, data, packages["v2"], fleet_key)
    handle = load_active(agent.store, check_interval_s=0.0)
    _send(collector, agent, cmd)
    assert collector.wait_terminal(agent.device_id, cmd.deployment_id) == "ACTIVE"
    assert collector.states(agent.device_id, cmd.deployment_id) == [
        "QUEUED", "DOWNLOADING", "VERIFYING", "STAGED", "ACTIVATING", "ACTIVE",
    ]  # fmt: skip
    assert _serving(agent, 1)
    # A handle opened before the deployment follows the activation without a restart.
    x = tiny_inputs(2, seed=9)
    assert np.allclose(handle.predict(x)["logits"], tiny_reference(x, 1), atol=1e-4)
    handle.close()
    # The download carried the device token.
    assert any(r["auth"] == "Bearer device-token-1" for r in artifacts.requests)
    # Retained state reports both slots with the new one active.
    state = wait_until(
        lambda: [s for s in collector.of(p.State, agent.device_id)
                 if s.online and any(i.active and i.package_version == "2.0.0" for i in s.slots)]
    )  # fmt: skip
    assert {i.package_version for i in state[-1].slots} == {"1.0.0", "2.0.0"}
    acks = [
        a for a in collector.of(p.CommandAck, agent.device_id) if a.command_id == cmd.command_id
    ]
    assert acks and acks[0].accepted


def test_command_signed_by_untrusted_key_rejected(
    make_agent, collector, artifacts, packages, other_keys
):
    from edgefleet.sdk import load_private_key

    agent = make_agent()
    cmd = _deploy(collector, agent, artifacts, packages["v2"], load_private_key(other_keys[0]))
    assert collector.wait_terminal(agent.device_id, cmd.deployment_id) == "REJECTED"
    ack = wait_until(lambda: [a for a in collector.of(p.CommandAck, agent.device_id)
                              if a.command_id == cmd.command_id])  # fmt: skip
    assert not ack[0].accepted and ack[0].reason == "unknown_key"
    assert _serving(agent, 0)


def test_tampered_command_and_untrusted_package_rejected(
    make_agent, collector, artifacts, packages, fleet_key
):
    agent = make_agent()
    url, data = artifacts.add(packages["v2"])
    cmd = deploy_cmd(agent.device_id, url, data, packages["v2"], fleet_key)
    tampered = cmd.model_copy(update={"health_window_s": 0.0})  # signature no longer matches
    _send(collector, agent, tampered)
    assert collector.wait_terminal(agent.device_id, cmd.deployment_id) == "REJECTED"
    # A correctly signed command for a package signed by an untrusted key.
    url, data = artifacts.add(packages["untrusted"])
    cmd2 = deploy_cmd(agent.device_id, url, data, packages["untrusted"], fleet_key)
    _send(collector, agent, cmd2)
    assert collector.wait_terminal(agent.device_id, cmd2.deployment_id) == "REJECTED"
    reason = collector.of(p.DeploymentEvent, agent.device_id)[-1].reason
    assert "signature" in reason
    assert _serving(agent, 0)
    assert agent.store.active_slot() == "A"


def test_hash_mismatch_fails_and_old_model_keeps_serving(
    make_agent, collector, artifacts, packages, fleet_key
):
    agent = make_agent()
    cmd = _deploy(collector, agent, artifacts, packages["v2"], fleet_key, sha256="0" * 64)
    assert collector.wait_terminal(agent.device_id, cmd.deployment_id) == "FAILED"
    assert "hash mismatch" in collector.of(p.DeploymentEvent, agent.device_id)[-1].reason
    _old_model_kept(agent)


def test_smoke_test_failure_fails(make_agent, collector, artifacts, packages, fleet_key):
    agent = make_agent()
    cmd = _deploy(collector, agent, artifacts, packages["broken"], fleet_key)
    assert collector.wait_terminal(agent.device_id, cmd.deployment_id) == "FAILED"
    assert collector.states(agent.device_id, cmd.deployment_id)[-2] == "ACTIVATING"
    assert "smoke test failed" in collector.of(p.DeploymentEvent, agent.device_id)[-1].reason
    assert _serving(agent, 0)
    assert agent.store.slot_info("B") is None  # the failed package does not linger


def test_post_activation_failure_rolls_back(make_agent, collector, artifacts, packages, fleet_key):
    agent = make_agent(fault_point="health:fail")
    cmd = _deploy(collector, agent, artifacts, packages["v2"], fleet_key)
    assert collector.wait_terminal(agent.device_id, cmd.deployment_id) == "ROLLED_BACK"
    assert _serving(agent, 0)
    assert agent.store.active_slot() == "A"


def test_download_interrupted_resumes(make_agent, collector, artifacts, packages, fleet_key):
    agent = make_agent()
    url, data = artifacts.add(packages["v2"])
    path = url.split(":", 2)[2].split("/", 1)[1]
    artifacts.cut_after = len(data) // 2
    before = len(artifacts.requests)
    sent_before = artifacts.bytes_sent
    cmd = deploy_cmd(agent.device_id, url, data, packages["v2"], fleet_key)
    _send(collector, agent, cmd)
    assert collector.wait_terminal(agent.device_id, cmd.deployment_id) == "ACTIVE"
    reqs = [r for r in artifacts.requests[before:] if r["path"] == "/" + path]
    assert [r["range"] for r in reqs] == [None, f"bytes={len(data) // 2}-"]
    assert artifacts.bytes_sent - sent_before == len(data)  # nothing fetched twice
    assert _serving(agent, 1)


def test_duplicate_acked_again_replay_and_expired_refused(
    make_agent, collector, artifacts, packages, fleet_key
):
    from datetime import UTC, datetime, timedelta

    agent = make_agent()
    dev, data_dir = agent.device_id, agent.settings.data_dir
    url, data = artifacts.add(packages["v2"])
    cmd = deploy_cmd(dev, url, data, packages["v2"], fleet_key)
    _send(collector, agent, cmd)
    assert collector.wait_terminal(dev, cmd.deployment_id) == "ACTIVE"

    def acks(command_id):
        return [a for a in collector.of(p.CommandAck, dev) if a.command_id == command_id]

    # A QoS 1 redelivery (the same signed bytes): acknowledged again, not run again.
    _send(collector, agent, cmd)
    wait_until(lambda: len(acks(cmd.command_id)) == 2, what="second ack")
    assert [a.accepted for a in acks(cmd.command_id)] == [True, True]
    # The same nonce in a different, validly signed command: a replay.
    replay = p.sign_command(
        cmd.model_copy(update={"command_id": "replay-1", "deployment_id": "other"}), fleet_key
    )
    _send(collector, agent, replay)
    past = datetime.now(UTC) - timedelta(hours=1)
    expired = p.sign_command(
        p.ConfigCommand(**p.command_fields(dev, ttl_s=60, now=past), telemetry_interval_s=1.0),
        fleet_key,
    )
    _send(collector, agent, expired)
    wait_until(lambda: acks("replay-1") and acks(expired.command_id), what="refusals")
    assert acks("replay-1")[0].reason == "replayed" and not acks("replay-1")[0].accepted
    assert acks(expired.command_id)[0].reason == "expired"
    assert agent.config.telemetry_interval_s == 3600  # the expired config was not applied

    # Across a restart the duplicate is still recognised (persisted with its digest).
    agent.stop(graceful=True)
    again = make_agent(install=None, device_id=dev, data_dir=data_dir)
    _send(collector, again, cmd)
    wait_until(lambda: len(acks(cmd.command_id)) == 3, what="ack after restart")
    assert all(a.accepted for a in acks(cmd.command_id))
    assert collector.states(dev, cmd.deployment_id).count("QUEUED") == 1  # ran once only
    assert "other" not in {e.deployment_id for e in collector.of(p.DeploymentEvent, dev)
                           if e.state != p.DeploymentState.REJECTED}  # fmt: skip
    assert _serving(again, 1)


def test_non_command_message_gives_error_event(make_agent, collector):
    """A message that decodes but is not a command (a State on its own topic, handed to the
    command handler) is refused with an error event; the agent stays alive."""
    agent = make_agent(install=None, local_endpoint=None)
    state = p.State(device_id=agent.device_id, online=True, agent_version="0")
    before = len(collector.of(p.ErrorEvent, agent.device_id))
    agent.commands.handle(p.state_topic(agent.device_id), p.encode(state))
    wait_until(lambda: len(collector.of(p.ErrorEvent, agent.device_id)) > before)
    err = collector.of(p.ErrorEvent, agent.device_id)[-1]
    assert err.code == "malformed" and "expected a command" in err.message
    assert agent.connected.is_set()


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x00\xff garbage", b"[]", b'{"schema_version": 2, "type": "cmd.deploy"}',
     b'{"schema_version": 2, "type": "state", "device_id": "x", "online": true}',
     b"[" * 100_000 + b"]" * 100_000, b"x" * 300_000],
)  # fmt: skip
def test_malformed_command_payload_gives_error_event(make_agent, collector, fleet_key, payload):
    agent = make_agent(install=None, local_endpoint=None)
    before = len(collector.of(p.ErrorEvent, agent.device_id))
    collector.publish(p.cmd_topic(agent.device_id), payload)
    wait_until(lambda: len(collector.of(p.ErrorEvent, agent.device_id)) > before)
    err = collector.of(p.ErrorEvent, agent.device_id)[-1]
    assert err.code == "malformed" and err.topic == p.cmd_topic(agent.device_id)
    # Still alive and connected: it answers a valid command afterwards.
    assert agent.connected.is_set()
    cfg = p.sign_command(
        p.ConfigCommand(**p.command_fields(agent.device_id), telemetry_interval_s=99.0), fleet_key
    )
    collector.publish(p.cmd_topic(agent.device_id), p.encode(cfg))
    wait_until(lambda: agent.config.telemetry_interval_s == 99.0)
