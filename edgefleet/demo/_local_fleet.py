"""The demo's side of the fleet: an in-process fleet server. The demo drives it with the
public API client (:class:`edgefleet.fleet.FleetClient`, re-exported here), which speaks only
the documented ``/api/v1`` HTTP API: the same code drives a fleet started here, a
``edgefleet fleet serve`` process (the end-to-end tests) or a remote one.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.fleet import FleetApiError, FleetClient

__all__ = ["FleetApiError", "FleetClient", "LocalFleet", "free_port", "wait_for"]

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# LocalFleet's fields that are FleetSettings fields of the same name.
_SETTINGS = ("data_dir", "trusted_package_keys", "port", "host", "broker_url", "database_url")


@dataclass
class LocalFleet:
    """A fleet service running in this process: FleetService + uvicorn on a thread."""

    data_dir: Path
    trusted_package_keys: list[Path]
    port: int = 0
    host: str = "127.0.0.1"
    broker_url: str = ""
    database_url: str = ""
    admin_token: str = ""

    def start(self, timeout: float = 30.0) -> LocalFleet:
        import uvicorn

        from edgefleet.fleet import FleetService, FleetSettings, create_app

        self.port = self.port or free_port(self.host)
        keys = self.data_dir / "keys"
        if not (keys / "fleet.key").exists():  # made here, so devices can be handed its .pub
            from edgefleet.sdk import generate_keypair

            generate_keypair(keys, "fleet")
        settings = FleetSettings(
            **{k: getattr(self, k) for k in _SETTINGS},
            embedded_broker_port=0,
            # Fast clocks, so a demo rollout and its telemetry move in seconds.
            tick_interval_s=0.25,
            telemetry_flush_interval_s=0.2,
        )
        self.service = FleetService(settings)
        self.admin_token = self.service.tokens.create("admin", "demo")
        app = create_app(self.service, manage_lifecycle=True)
        config = uvicorn.Config(
            app, host=self.host, port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fleet-http", daemon=True)
        self._thread.start()
        wait_for(lambda: self._server.started or not self._thread.is_alive(), timeout, "fleet")
        if not self._server.started:
            raise FleetApiError(f"the fleet service did not start on {self.url} (see the log)")
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def mqtt_url(self) -> str:
        """Where devices connect: the configured broker or the fleet's embedded one."""
        if self.broker_url:
            return self.broker_url
        return self.service.broker.url

    @property
    def fleet_key(self) -> Path:
        """The public key devices use to verify the fleet's signed commands."""
        return self.data_dir / "keys" / "fleet.pub"

    def stop(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.should_exit = True
            self._thread.join(30)
            if self._thread.is_alive():
                log.warning("fleet HTTP server did not stop within 30 s")
