"""Agent settings: ``EDGEFLEET_AGENT_*`` environment variables and ``--config agent.toml``.

Precedence: explicit arguments > environment > TOML file > defaults.

A plain pydantic model with its own small env/TOML loader rather than pydantic-settings:
importing pydantic-settings costs ~0.25 s of CPU (asyncio, dotenv, cloud providers), a
quarter of the agent's cold-start budget on a board. Env values of list fields are JSON,
as with pydantic-settings.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from edgefleet.sdk import ConfigError
from edgefleet.sdk.protocol import DeviceId, MaintenanceWindow
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["AgentSettings", "FAULT_RE", "ENV_PREFIX"]

ENV_PREFIX = "EDGEFLEET_AGENT_"

# Test-only fault injection (os._exit(137), like kill -9): "after:<STATE>" right after that
# state is persisted, "after:SWITCH" right after the current pointer moved, "during:DOWNLOADING"
# half-way through the download; "health:fail" makes the post-activation probes fail.
FAULT_RE = re.compile(r"^(after:[A-Z_]+|during:DOWNLOADING|health:fail)$")


def _env_values(fields: dict) -> dict[str, Any]:
    """``EDGEFLEET_AGENT_<FIELD>`` variables (names case-insensitive); JSON for lists, dicts."""
    env = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)}
    out: dict[str, Any] = {}
    for name, info in fields.items():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        kind = next((k for k in ("list", "dict") if f"{k}[" in str(info.annotation)), None)
        if kind:
            try:
                out[name] = json.loads(raw)
            except ValueError as e:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}: expected a JSON {kind}: {e}") from e
        else:
            out[name] = raw
    return out


class AgentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: DeviceId
    broker_url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_insecure: bool = False
    mqtt_version: Literal["3.1.1", "5"] = "5"
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    # A 3.1.1-only broker may neither accept nor refuse an MQTT 5 CONNECT (amqtt misreads it
    # and waits): no CONNACK within this time -> fall back to 3.1.1.
    mqtt5_connack_timeout_s: float = Field(default=3.0, gt=0)
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    session_expiry_s: int = Field(default=7 * 86400, ge=0)

    data_dir: Path = Path("/var/lib/edgefleet")
    fleet_keys: list[Path] = Field(
        default_factory=list, description="public keys that sign commands (fleet)"
    )
    package_keys: list[Path] = Field(
        default_factory=list, description="public keys that sign packages; default fleet_keys"
    )
    device_token: str | None = None
    http_timeout_s: float = Field(default=30.0, gt=0)
    http_ca: Path | None = Field(
        default=None, description="CA bundle for HTTPS artifact downloads; None = system store"
    )
    download_retries: int = Field(default=5, ge=0)

    profile: str | None = Field(default=None, description="hardware profile; None = detect")
    backend: str | None = None
    # Extra runtime backends, name -> "module:Class" (a vendor's NPU runtime), registered
    # with the SDK at start and in the smoke-test child.
    backends: dict[str, str] = Field(default_factory=dict)
    smoke_test: bool = True
    # Load and smoke-test a staged package in a child process: a runtime that crashes
    # natively on it fails the deployment instead of killing the agent.
    smoke_isolated: bool = True
    smoke_timeout_s: float = Field(default=300.0, gt=0)
    max_resumes: int = Field(default=3, ge=1, description="restarts before a deployment fails")
    serve_model: bool = Field(default=True, description="keep the active model for the endpoint")
    local_endpoint: str | None = Field(
        default="127.0.0.1:0", description="host:port, unix:/path, or None to disable"
    )

    # Dynamic micro-batching on the local endpoint (0/1 = off), for dynamic-batch models.
    batch_max_size: int = Field(default=0, ge=0, le=1024)
    batch_max_delay_us: int = Field(default=2000, ge=0, le=1_000_000)
    # Batches running at once (see BatchingOptions.workers).
    batch_workers: int = Field(default=1, ge=1, le=64)
    # Adapt serving to memory/pressure/heat/load (fewer threads, smaller artifact, 429s).
    adapt: bool = False
    adapt_interval_s: float = Field(default=0.5, gt=0)
    resources_root: Path = Path("/")

    telemetry_interval_s: float = Field(default=10.0, gt=0)
    telemetry_queue_max: int = Field(default=10_000, ge=1)
    telemetry_batch_max: int = Field(default=100, ge=1, le=1000)
    cache_entries: int = Field(default=0, ge=0)
    cache_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    tags: list[str] = Field(default_factory=list)
    # Outside every window a deployment downloads, verifies and stages, then waits to
    # activate (TOML: [[maintenance_windows]] cron/duration_s/timezone; env: a JSON list).
    # Windows the fleet sends with a deploy command take precedence over these.
    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list, max_length=16)

    fault_point: str | None = None

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, v: str) -> str:
        u = urlsplit(v)
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
            raise ValueError(f"expected mqtt://host:port or mqtts://host:port, got {v!r}")
        return v

    @field_validator("fault_point")
    @classmethod
    def _fault(cls, v: str | None) -> str | None:
        if v and not FAULT_RE.match(v):
            raise ValueError(
                f"expected after:<STATE>, during:DOWNLOADING or health:fail, got {v!r}"
            )
        return v or None

    @model_validator(mode="before")
    @classmethod
    def _from_env(cls, data: Any) -> Any:
        # The environment fills in what the caller did not pass (explicit arguments win).
        if not isinstance(data, dict):
            return data
        return {**_env_values(cls.model_fields), **data}

    @classmethod
    def load(cls, config: str | Path | None = None, **overrides: object) -> AgentSettings:
        """Settings from ``config`` (TOML), the environment and ``overrides``; a clear
        ConfigError on a missing file or an invalid value."""
        from pydantic import ValidationError

        values: dict[str, Any] = {}
        if config is not None:
            path = Path(config)
            if not path.is_file():
                raise ConfigError(f"agent config {path} does not exist")
            try:
                values = tomllib.loads(path.read_text())
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
                raise ConfigError(f"agent config {path} is not valid TOML: {e}") from e
        try:
            env = _env_values(cls.model_fields)
            given = {k: v for k, v in overrides.items() if v is not None}
            return cls(**{**values, **env, **given})
        except (ValidationError, ValueError) as e:
            raise ConfigError(f"invalid agent settings:\n{e}") from e

    @property
    def broker_host(self) -> str:
        return urlsplit(self.broker_url).hostname or "127.0.0.1"

    @property
    def broker_port(self) -> int:
        u = urlsplit(self.broker_url)
        return u.port or (8883 if u.scheme == "mqtts" else 1883)

    @property
    def use_tls(self) -> bool:
        return urlsplit(self.broker_url).scheme == "mqtts" or self.tls_ca is not None

    @property
    def trusted_package_keys(self) -> list[Path]:
        return self.package_keys or self.fleet_keys
