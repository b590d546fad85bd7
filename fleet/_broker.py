"""The embedded amqtt broker: zero-setup MQTT for the demo when no broker URL is given.

It runs on its own asyncio loop in a daemon thread. amqtt has no shared subscriptions and
no ACL file, so production deployments use Mosquitto (or a cluster) instead.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

__all__ = ["EmbeddedBroker"]

log = logging.getLogger(__name__)


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        if self.port == 0:
            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = s.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="fleet-amqtt", daemon=True)
        self._thread.start()
        # Broker.start() returns once the listener is bound; no TCP probe (amqtt logs and
        # leaks a stream for a connection that sends no MQTT).
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"embedded MQTT broker failed to start: {self._error}")
        log.warning(
            "embedded amqtt broker on %s: for demos and development only (anonymous, "
            "no per-device ACLs); set EDGEFLEET_FLEET_BROKER_URL in production",
            self.url,
        )
        return self

    def _run(self) -> None:
        from amqtt.broker import Broker

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        try:
            self._broker = Broker(config, loop=self._loop)
            self._loop.run_until_complete(self._broker.start())
        except BaseException as e:  # reported to start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    def stop(self) -> None:
        if self._loop is None or self._broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            fut.result(10)
        except Exception:  # shutting down anyway
            log.exception("embedded broker shutdown failed")
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
