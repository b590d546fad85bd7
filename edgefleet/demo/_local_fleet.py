"""The demo's side of the fleet: a small HTTP API client and an in-process fleet server.

The client speaks only the documented ``/api/v1`` HTTP API, so the same code drives a fleet
started here, a ``edgefleet fleet serve`` process (the end-to-end tests) or a remote one.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.sdk import EdgefleetError

__all__ = ["FleetApiError", "FleetClient", "LocalFleet", "free_port", "wait_for"]

log = logging.getLogger(__name__)

_METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN)$")


class FleetApiError(EdgefleetError):
    """The fleet answered with an error, or did not answer at all."""


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


class FleetClient:
    """The fleet's HTTP API with an API token (operator or admin role)."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        # Reads are retried a little (a busy server, a restart); writes are not: they may
        # have taken effect.
        attempts = 3 if method == "GET" else 1
        for attempt in range(attempts):
            try:
                r = self._http.request(method, path, **kw)
            except httpx.HTTPError as e:
                if attempt + 1 < attempts:
                    time.sleep(0.5)
                    continue
                raise FleetApiError(f"{method} {self.base_url}{path} failed: {e}") from e
            if r.status_code < 500 or attempt + 1 == attempts:
                break
            log.warning("%s %s -> %s; retrying", method, path, r.status_code)
            time.sleep(0.5)
        if r.status_code >= 400:
            raise FleetApiError(f"{method} {path} -> {r.status_code}: {r.text[:500]}")
        return r.json() if r.content and "json" in r.headers.get("content-type", "") else r.text

    def health(self) -> dict:
        return self._call("GET", "/health")

    def upload(self, package: Path) -> dict:
        with open(package, "rb") as f:
            files = {"file": (Path(package).name, f, "application/zip")}
            return self._call("POST", "/api/v1/models", files=files)

    def devices(self, tag: str | None = None) -> list[dict]:
        return self._call("GET", "/api/v1/devices", params={"tag": tag} if tag else None)

    def create_rollout(self, body: dict) -> dict:
        return self._call("POST", "/api/v1/rollouts", json=body)

    def rollout(self, rollout_id: int) -> dict:
        return self._call("GET", f"/api/v1/rollouts/{rollout_id}")

    def act(self, rollout_id: int, action: str, reason: str = "") -> dict:
        return self._call(
            "POST", f"/api/v1/rollouts/{rollout_id}/{action}", json={"reason": reason}
        )

    def telemetry_totals(self, model: str, hours: float = 1.0) -> tuple[int, float | None]:
        """(inference calls, calls-weighted cache hit rate) the fleet received for ``model``."""
        now = time.time()
        params = {"model": model, "since": now - hours * 3600, "until": now, "bucket_s": 86400}
        calls = hits = 0.0
        for b in self._call("GET", "/api/v1/telemetry", params=params):
            calls += b["calls"]
            hits += (b["cache_hit_rate"] or 0.0) * b["calls"]
        return int(calls), (hits / calls if calls else None)

    def metrics(self) -> dict[str, float]:
        """Prometheus text as {name: value summed over labels}."""
        out: dict[str, float] = {}
        for line in str(self._call("GET", "/metrics")).splitlines():
            m = _METRIC_RE.match(line.strip())
            if m and m.group(3) != "NaN":
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
        return out

    def wait_rollout(
        self,
        rollout_id: int,
        states: tuple[str, ...] = ("COMPLETED",),
        timeout: float = 120.0,
        on_poll: Callable[[dict], None] | None = None,
    ) -> dict:
        """Poll until the rollout reaches one of ``states``; an error if it ends elsewhere."""
        final = ("COMPLETED", "ABORTED", "ROLLED_BACK", "PAUSED")
        deadline = time.monotonic() + timeout
        while True:
            ro = self.rollout(rollout_id)
            if on_poll is not None:
                on_poll(ro)
            if ro["status"] in states:
                return ro
            if ro["status"] in final:
                raise FleetApiError(
                    f"rollout {rollout_id} ended {ro['status']} ({ro['reason']}), "
                    f"expected {'/'.join(states)}"
                )
            if time.monotonic() > deadline:
                states = [(d["device_id"], d["state"]) for d in ro["devices"]]
                raise TimeoutError(
                    f"rollout {rollout_id} still {ro['status']} after {timeout:.0f}s: "
                    f"{ro['reason']}; devices {states}"
                )
            time.sleep(0.25)


@dataclass
class LocalFleet:
    """A fleet service running in this process: FleetService + uvicorn on a thread."""

    data_dir: Path
    package_keys: list[Path]
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
            data_dir=self.data_dir,
            database_url=self.database_url,
            host=self.host,
            port=self.port,
            broker_url=self.broker_url,
            embedded_broker_port=0,
            trusted_package_keys=self.package_keys,
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
