"""The agent against the embedded amqtt broker (MQTT 3.1.1 only): it falls back from its
default MQTT 5, once, and then works as usual."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

import pytest
from edgefleet.sdk import protocol as p

from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


class _Amqtt:
    """A real amqtt broker on a free port, on its own event loop thread."""

    def __init__(self) -> None:
        from amqtt.broker import Broker

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.broker = Broker(config, loop=self.loop)
            self.loop.run_until_complete(self.broker.start())
            started.set()
            self.loop.run_forever()
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(15), "amqtt did not start"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.broker.shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def amqtt_broker():
    b = _Amqtt()
    yield b
    b.close()


def test_agent_falls_back_to_mqtt311_on_amqtt(make_agent, amqtt_broker, fleet_key, caplog):
    from tests.device_agents.support import Collector

    caplog.set_level(logging.WARNING, logger="edgefleet.device_agents._agent")
    collector = Collector(amqtt_broker.port)
    try:
        agent = make_agent(
            install=None, local_endpoint=None, broker=amqtt_broker, mqtt5_connack_timeout_s=1.0
        )
        assert agent.settings.mqtt_version == "5" and agent.mqtt_version == "3.1.1"
        wait_until(lambda: [s for s in collector.of(p.State, agent.device_id) if s.online])
        # Commands flow over the 3.1.1 session.
        cfg = p.sign_command(
            p.ConfigCommand(**p.command_fields(agent.device_id), telemetry_interval_s=77.0),
            fleet_key,
        )
        collector.publish(p.cmd_topic(agent.device_id), p.encode(cfg))
        wait_until(lambda: agent.config.telemetry_interval_s == 77.0, what="config over amqtt")
        # A second agent in the same process falls back quietly: one warning in all.
        make_agent(
            install=None, local_endpoint=None, broker=amqtt_broker, mqtt5_connack_timeout_s=1.0
        )
        warnings = [r for r in caplog.records if "falling back to MQTT 3.1.1" in r.getMessage()]
        assert len(warnings) <= 1
    finally:
        collector.close()
