"""The public, typed client of the fleet's HTTP API (httpx only).

Importable without the server stack (no FastAPI, no SQLAlchemy), so ``pip install
'edgefleet[client]'`` on an operator laptop is enough for scripts and ``edgefleet fleet``
commands. The fleet URL and token come from arguments, then ``EDGEFLEET_URL`` /
``EDGEFLEET_TOKEN``, then a TOML file (``EDGEFLEET_CONFIG`` or
``~/.config/edgefleet/fleet.toml`` with ``url = ...`` and ``token = ...``).
"""

from __future__ import annotations

import logging
import os
import re
import time
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
from edgefleet.sdk import Closing, EdgefleetError

from ._client_models import (
    AuditPage,
    Device,
    DeviceDetail,
    DevicePage,
    ModelVersion,
    Rollout,
    RolloutDetail,
    TokenInfo,
)

__all__ = [
    "ACTIONS",
    "FINAL_STATUSES",
    "FleetApiError",
    "FleetClient",
    "client_config",
    "config_path",
    "save_client_config",
]

log = logging.getLogger(__name__)

ACTIONS = ("start", "pause", "resume", "abort", "rollback")
FINAL_STATUSES = ("COMPLETED", "ABORTED", "ROLLED_BACK")
_METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN)$")


class FleetApiError(EdgefleetError):
    """The fleet answered with an error (``status_code``), or did not answer (0)."""

    def __init__(self, message: str, status_code: int = 0, detail: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


def config_path() -> Path:
    env = os.environ.get("EDGEFLEET_CONFIG")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "edgefleet" / "fleet.toml"


def client_config(url: str | None = None, token: str | None = None) -> tuple[str, str]:
    """(url, token): arguments, then EDGEFLEET_URL / EDGEFLEET_TOKEN, then the config file."""
    url = url or os.environ.get("EDGEFLEET_URL") or None
    token = token or os.environ.get("EDGEFLEET_TOKEN") or None
    path = config_path()
    if (url is None or token is None) and path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            msg = f"{path}: not valid TOML ({e}); expected url = ..., token = ..."
            raise FleetApiError(msg) from e
        url = url or data.get("url")
        token = token or data.get("token")
    if not url:
        raise FleetApiError(
            f'no fleet URL: pass --url, set EDGEFLEET_URL, or put url = "..." in {path}'
        )
    if not token:
        raise FleetApiError(
            f'no API token: pass --token, set EDGEFLEET_TOKEN, or put token = "..." in {path}'
        )
    return url, token


def save_client_config(url: str, token: str, path: Path | None = None) -> Path:
    """Write the config file (mode 0600: it holds a token)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"url = {_toml_str(url)}\ntoken = {_toml_str(token)}\n")
    return path


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FleetClient(Closing):
    """The fleet's ``/api/v1`` API with an API token; methods return typed models.

    Reads are retried briefly (a busy or restarting fleet); writes are not (they may have
    taken effect). Errors raise :class:`FleetApiError` with the fleet's reason.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base_url, token = client_config(base_url, token)
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ transport

    def _call(self, method: str, path: str, **kw: Any) -> Any:
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
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text[:500]
            text = detail if isinstance(detail, str) else _validation_text(detail)
            raise FleetApiError(
                f"{method} {path} -> {r.status_code}: {text}", r.status_code, detail
            )
        if r.status_code == 204 or not r.content:
            return None
        return r.json() if "json" in r.headers.get("content-type", "") else r.text

    # ------------------------------------------------------------------ ops

    def health(self) -> dict:
        return self._call("GET", "/health")

    def metrics(self) -> dict[str, float]:
        """Prometheus text as {name: value summed over labels}."""
        out: dict[str, float] = {}
        for line in str(self._call("GET", "/metrics")).splitlines():
            m = _METRIC_RE.match(line.strip())
            if m and m.group(3) != "NaN":
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
        return out

    def whoami(self) -> dict:
        """{"id": token id, "role": ...} of this client's token."""
        return self._call("GET", "/api/v1/whoami")

    # ------------------------------------------------------------------ models

    def models(self, name: str | None = None) -> list[ModelVersion]:
        params = {"name": name} if name else None
        return [ModelVersion(**m) for m in self._call("GET", "/api/v1/models", params=params)]

    def model(self, name: str, version: str) -> ModelVersion:
        return ModelVersion(**self._call("GET", f"/api/v1/models/{name}/versions/{version}"))

    def upload(self, package: str | Path) -> ModelVersion:
        """Upload a signed ``.efpkg``; the fleet checks its signature and hashes."""
        path = Path(package)
        if not path.is_file():
            raise FleetApiError(f"{path}: no such package file")
        with open(path, "rb") as f:
            files = {"file": (path.name, f, "application/zip")}
            return ModelVersion(**self._call("POST", "/api/v1/models", files=files))

    # ------------------------------------------------------------------ devices

    def devices(self, tag: str | None = None) -> list[Device]:
        """Every device (one request; for large fleets use :meth:`search_devices`)."""
        params = {"tag": tag} if tag else None
        return [Device(**d) for d in self._call("GET", "/api/v1/devices", params=params)]

    def search_devices(
        self,
        q: str = "",
        *,
        profile: str | None = None,
        tag: str | None = None,
        online: bool | None = None,
        version: str | None = None,
        state: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> DevicePage:
        """Server-side search, filters and pagination (``q`` matches the id)."""
        params = {"q": q, "offset": offset, "limit": limit}
        for k, v in (
            ("profile", profile),
            ("tag", tag),
            ("online", online),
            ("version", version),
            ("state", state),
        ):
            if v is not None:
                params[k] = str(v).lower() if isinstance(v, bool) else v
        return DevicePage(**self._call("GET", "/api/v1/devices/search", params=params))

    def device(self, device_id: str) -> DeviceDetail:
        """Inventory, maintenance windows and deployment history."""
        return DeviceDetail(**self._call("GET", f"/api/v1/devices/{device_id}/detail"))

    def set_tags(self, device_id: str, tags: Iterable[str]) -> Device:
        body = {"tags": sorted(set(tags))}
        return Device(**self._call("PUT", f"/api/v1/devices/{device_id}/tags", json=body))

    def decommission(self, device_id: str) -> Device:
        return Device(**self._call("DELETE", f"/api/v1/devices/{device_id}"))

    def set_maintenance_windows(self, device_id: str, windows: list[dict]) -> DeviceDetail:
        """Windows (``cron``, ``duration_s``, ``timezone``) outside which the device
        downloads but does not activate; ``[]`` clears them."""
        body = {"windows": windows}
        path = f"/api/v1/devices/{device_id}/maintenance-windows"
        return DeviceDetail(**self._call("PUT", path, json=body))

    # ------------------------------------------------------------------ rollouts

    def rollouts(self) -> list[Rollout]:
        return [Rollout(**r) for r in self._call("GET", "/api/v1/rollouts")]

    def rollout(self, rollout_id: int) -> RolloutDetail:
        return RolloutDetail(**self._call("GET", f"/api/v1/rollouts/{rollout_id}"))

    def create_rollout(self, body: dict) -> RolloutDetail:
        """``body`` as ``POST /api/v1/rollouts`` takes it: name, model, version, target,
        spec, and optionally ``start`` (now) or ``start_at`` (ISO time, scheduled)."""
        return RolloutDetail(**self._call("POST", "/api/v1/rollouts", json=body))

    def act(self, rollout_id: int, action: str, reason: str = "") -> RolloutDetail:
        if action not in ACTIONS:
            raise FleetApiError(f"unknown rollout action {action!r}; expected one of {ACTIONS}")
        path = f"/api/v1/rollouts/{rollout_id}/{action}"
        return RolloutDetail(**self._call("POST", path, json={"reason": reason}))

    def wait_rollout(
        self,
        rollout_id: int,
        states: tuple[str, ...] = ("COMPLETED",),
        timeout: float = 120.0,
        on_poll: Callable[[RolloutDetail], None] | None = None,
        interval: float = 0.25,
    ) -> RolloutDetail:
        """Poll until the rollout reaches one of ``states``; an error if it ends elsewhere
        (PAUSED counts as an end unless it is wanted)."""
        ends = (*FINAL_STATUSES, "PAUSED")
        deadline = time.monotonic() + timeout
        while True:
            ro = self.rollout(rollout_id)
            if on_poll is not None:
                on_poll(ro)
            if ro.status in states:
                return ro
            if ro.status in ends:
                raise FleetApiError(
                    f"rollout {rollout_id} ended {ro.status} ({ro.reason}), "
                    f"expected {'/'.join(states)}"
                )
            if time.monotonic() > deadline:
                devs = [(d.device_id, d.state) for d in ro.devices]
                raise TimeoutError(
                    f"rollout {rollout_id} still {ro.status} after {timeout:.0f}s: "
                    f"{ro.reason}; devices {devs}"
                )
            time.sleep(interval)

    # ------------------------------------------------------------------ telemetry

    def telemetry(
        self,
        model: str | None = None,
        device: str | None = None,
        since: float | None = None,
        until: float | None = None,
        bucket_s: float = 60,
    ) -> list[dict]:
        params: dict[str, Any] = {"bucket_s": bucket_s}
        for k, v in (("model", model), ("device", device), ("since", since), ("until", until)):
            if v is not None:
                params[k] = v
        return self._call("GET", "/api/v1/telemetry", params=params)

    def telemetry_totals(self, model: str, hours: float = 1.0) -> tuple[int, float | None]:
        """(inference calls, calls-weighted cache hit rate) the fleet received for ``model``."""
        now = time.time()
        calls = hits = 0.0
        for b in self.telemetry(model, since=now - hours * 3600, until=now, bucket_s=86400):
            calls += b["calls"]
            hits += (b["cache_hit_rate"] or 0.0) * b["calls"]
        return int(calls), (hits / calls if calls else None)

    # ------------------------------------------------------------------ tokens, audit

    def tokens(self) -> list[TokenInfo]:
        return [TokenInfo(**t) for t in self._call("GET", "/api/v1/tokens")]

    def create_token(self, role: str, name: str = "") -> str:
        """A new API token (shown once)."""
        return self._call("POST", "/api/v1/tokens", json={"role": role, "name": name})["token"]

    def revoke_token(self, token_id: str) -> None:
        self._call("DELETE", f"/api/v1/tokens/{token_id}")

    def audit(
        self,
        *,
        after_id: int = 0,
        limit: int = 100,
        target_type: str | None = None,
        target_id: str | None = None,
    ) -> AuditPage:
        """Who did what to which rollout, model, device or token (newest first)."""
        params: dict[str, Any] = {"after_id": after_id, "limit": limit}
        if target_type:
            params["target_type"] = target_type
        if target_id:
            params["target_id"] = target_id
        return AuditPage(**self._call("GET", "/api/v1/audit", params=params))


def _validation_text(detail: Any) -> str:
    """FastAPI's list of validation errors as one line: 'body.spec.soak_s: ...'."""
    if isinstance(detail, list):
        parts = []
        for e in detail:
            if isinstance(e, dict):
                loc = ".".join(str(x) for x in e.get("loc", []))
                parts.append(f"{loc}: {e.get('msg', '')}")
        if parts:
            return "; ".join(parts)
    return str(detail)
