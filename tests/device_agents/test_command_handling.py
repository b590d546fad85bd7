"""cancel / rollback / benchmark / config commands, and commands sent while offline."""

from __future__ import annotations

import json

import pytest
from edgefleet.sdk import protocol as p

from tests.device_agents.support import deploy_cmd
from tests.device_agents.test_deploy import _deploy, _old_model_kept, _send, _serving
from tests.support.waiting import wait_until

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
    _old_model_kept(agent)


def test_rollback_benchmark_and_config(make_agent, collector, artifacts, packages, fleet_key):
    agent = make_agent()
    cmd = _deploy(collector, agent, artifacts, packages["v2"], fleet_key)
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
    wait_until(lambda: agent.config.telemetry_interval_s == 0.1)
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
    wait_until(lambda: again.config.telemetry_interval_s == 42.0, 10, what="queued command")


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


class _HoldingProxy:
    """TCP proxy to the broker that forwards client bytes at once but holds the broker's
    replies (the CONNACK) until ``release()``: the window in which a device is connected
    at TCP level but not yet subscribed."""

    def __init__(self, port: int) -> None:
        import socket
        import threading

        self.released = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"mqtt://127.0.0.1:{self.listener.getsockname()[1]}"
        self._port = port
        self._socks: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        upstream = socket.create_connection(("127.0.0.1", self._port))
        self._socks += [client, upstream]
        threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
        threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src, dst, hold: bool) -> None:
        try:
            while data := src.recv(65536):
                if hold:
                    self.released.wait()
                dst.sendall(data)
        except OSError:
            pass

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        for s in [self.listener, *self._socks]:
            s.close()


def test_online_is_announced_only_after_the_command_subscription(make_agent):
    """The startup jobs publish the device state; while the CONNACK is in flight that
    state must not go out ahead of the SUBSCRIBE: whoever reacts to "online" with a command
    must find the device subscribed (a lost first command, seen under load)."""
    from tests.support.mosquitto import Mosquitto, free_port

    broker = Mosquitto(port=free_port(), extra_conf=["log_type all"]).start()
    proxy = _HoldingProxy(broker.port)
    agent = make_agent(broker=proxy, wait_online=False, mqtt5_connack_timeout_s=30.0)
    try:
        wait_until(lambda: not agent.work.busy, what="startup jobs (they end by publishing state)")
        # Whatever they published is on the wire (ahead of any later SUBSCRIBE in the stream).
        wait_until(lambda: not agent.client.want_write(), what="the agent's output written")
        proxy.release()
        wait_until(agent.connected.is_set, 20, what="agent online")
        dev = agent.device_id

        def first(*parts: str) -> int | None:
            lines = (broker.workdir / "mosquitto.log").read_text().splitlines()
            return next((i for i, line in enumerate(lines) if all(x in line for x in parts)), None)

        state = (f"Received PUBLISH from {dev}", f"{dev}/state")
        wait_until(lambda: first(*state) is not None, what="the online state")
        assert first(f"Received SUBSCRIBE from {dev}") < first(*state)
    finally:
        agent.stop(graceful=False)
        proxy.close()
        broker.stop()
