"""Pydantic models of every payload on the wire, one discriminated union ``Message``.

Every message carries ``schema_version`` (the protocol's, not the manifest's) and ``type``,
the discriminator. Timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ._topics import is_valid_device_id

__all__ = [
    "PROTOCOL_SCHEMA_VERSION",
    "MIN_SCHEMA_VERSION",
    "DeploymentState",
    "TERMINAL_STATES",
    "SlotName",
    "SlotInfo",
    "State",
    "FleetState",
    "Inventory",
    "CommandSignature",
    "ManifestSignature",
    "CommandBase",
    "DeployCommand",
    "CancelCommand",
    "RollbackCommand",
    "BenchmarkCommand",
    "ConfigCommand",
    "Command",
    "DeploymentEvent",
    "CommandAck",
    "ErrorEvent",
    "Event",
    "TelemetrySample",
    "TelemetryBatch",
    "Message",
    "utcnow",
]

PROTOCOL_SCHEMA_VERSION = 2
# Oldest version decode() still accepts (upgraded in _codec); see _codec.upgrade().
MIN_SCHEMA_VERSION = 1

SlotName = Literal["A", "B"]
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


class DeploymentState(StrEnum):
    QUEUED = "QUEUED"
    DOWNLOADING = "DOWNLOADING"
    VERIFYING = "VERIFYING"
    STAGED = "STAGED"
    ACTIVATING = "ACTIVATING"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"
    ROLLED_BACK = "ROLLED_BACK"
    REJECTED = "REJECTED"
    CANCELED = "CANCELED"


TERMINAL_STATES = frozenset(
    {
        DeploymentState.ACTIVE,
        DeploymentState.FAILED,
        DeploymentState.ROLLED_BACK,
        DeploymentState.REJECTED,
        DeploymentState.CANCELED,
    }
)


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = PROTOCOL_SCHEMA_VERSION

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != PROTOCOL_SCHEMA_VERSION:
            # Older payloads are upgraded by the codec before validation.
            raise ValueError(f"expected schema_version {PROTOCOL_SCHEMA_VERSION}, got {v}")
        return v


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _aware(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return v.astimezone(UTC)


class _DeviceMsg(_Msg):
    device_id: str
    ts: datetime = Field(default_factory=utcnow)

    @field_validator("device_id")
    @classmethod
    def _device(cls, v: str) -> str:
        if not is_valid_device_id(v):
            raise ValueError(f"expected a device id matching [A-Za-z0-9._-]{{1,64}}, got {v!r}")
        return v

    @field_validator("ts")
    @classmethod
    def _ts(cls, v: datetime) -> datetime:
        return _aware(v)


# ----------------------------------------------------------------------------- state


class SlotInfo(_Part):
    """What a model slot holds."""

    slot: SlotName
    package_name: str
    package_version: str
    digest: str = Field(description="sha256 of the package's canonical manifest")
    deployment_id: str | None = None
    active: bool = False


class State(_DeviceMsg):
    """Retained on ``.../state``; the ``online=False`` variant is the Last Will."""

    type: Literal["state"] = "state"
    online: bool
    agent_version: str = ""
    active_slot: SlotName | None = None
    slots: list[SlotInfo] = Field(default_factory=list, max_length=2)
    deployment_id: str | None = Field(default=None, description="deployment in progress")
    deployment_state: DeploymentState | None = None


class FleetState(_Msg):
    """Retained on ``edgefleet/v1/fleet/state``."""

    type: Literal["fleet_state"] = "fleet_state"
    online: bool
    version: str = ""
    ts: datetime = Field(default_factory=utcnow)

    @field_validator("ts")
    @classmethod
    def _ts(cls, v: datetime) -> datetime:
        return _aware(v)


class Inventory(_DeviceMsg):
    """Retained on ``.../inventory``: what the device is and can run."""

    type: Literal["inventory"] = "inventory"
    profile: str = Field(description="hardware profile name, e.g. raspberry-pi-5")
    arch: str = ""
    model: str = Field(default="", description="board model string as detected")
    os: str = ""
    cpu_count: int = Field(default=1, ge=1)
    ram_mb: int = Field(default=0, ge=0)
    disk_free_mb: int = Field(default=0, ge=0)
    accelerators: list[str] = Field(default_factory=list)
    runtimes: dict[str, str] = Field(default_factory=dict, description="runtime -> version")
    agent_version: str = ""
    tags: list[str] = Field(default_factory=list)


# ----------------------------------------------------------------------------- commands


class CommandSignature(_Part):
    algorithm: Literal["ed25519"] = "ed25519"
    key_id: str
    value: str = Field(description="base64 Ed25519 signature over the canonical command")


class ManifestSignature(_Part):
    """The package manifest's own signature, so the device can bind download to command."""

    key_id: str
    value: str


class CommandBase(_Msg):
    """Fields every command carries. The signature covers everything but ``signature``."""

    command_id: str = Field(min_length=1, max_length=64)
    device_id: str
    nonce: str = Field(description="random, 16-128 url-safe characters; never reused")
    issued_at: datetime
    expires_at: datetime
    signature: CommandSignature | None = None

    @field_validator("device_id")
    @classmethod
    def _device(cls, v: str) -> str:
        if not is_valid_device_id(v):
            raise ValueError(f"expected a device id matching [A-Za-z0-9._-]{{1,64}}, got {v!r}")
        return v

    @field_validator("nonce")
    @classmethod
    def _nonce(cls, v: str) -> str:
        if not _NONCE_RE.match(v):
            raise ValueError("expected a nonce of 16-128 characters A-Z a-z 0-9 _ -")
        return v

    @field_validator("issued_at", "expires_at")
    @classmethod
    def _ts(cls, v: datetime) -> datetime:
        return _aware(v)

    @model_validator(mode="after")
    def _window(self) -> CommandBase:
        if self.expires_at <= self.issued_at:
            raise ValueError("expires_at must be after issued_at")
        return self

    def signed_payload(self) -> dict:
        return self.model_dump(mode="json", exclude={"signature"})


class DeployCommand(CommandBase):
    type: Literal["cmd.deploy"] = "cmd.deploy"
    deployment_id: str = Field(min_length=1, max_length=64)
    package_name: str
    package_version: str
    artifact_url: str = Field(description="http(s) URL of the .efpkg; Range requests supported")
    sha256: str
    size: int = Field(gt=0)
    manifest_signature: ManifestSignature
    health_window_s: float = Field(default=10.0, ge=0, le=86400)
    max_error_rate: float = Field(default=0.05, ge=0, le=1)

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str) -> str:
        if not _SHA256_RE.match(v):
            raise ValueError(f"expected 64 lowercase hex characters, got {v!r}")
        return v

    @field_validator("package_name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"expected a package name matching {_NAME_RE.pattern}, got {v!r}")
        return v

    @field_validator("artifact_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {v!r}")
        return v


class CancelCommand(CommandBase):
    type: Literal["cmd.cancel"] = "cmd.cancel"
    deployment_id: str = Field(min_length=1, max_length=64)


class RollbackCommand(CommandBase):
    """Make the previous slot active again (``deployment_id``: the one being undone)."""

    type: Literal["cmd.rollback"] = "cmd.rollback"
    deployment_id: str | None = None


class BenchmarkCommand(CommandBase):
    """Run the SDK benchmark on a slot's package; figures come back in a CommandAck."""

    type: Literal["cmd.benchmark"] = "cmd.benchmark"
    slot: SlotName | Literal["active"] = "active"
    iterations: int = Field(default=50, ge=1, le=100_000)
    warmup: int = Field(default=5, ge=0, le=10_000)
    backend: str | None = None


class ConfigCommand(CommandBase):
    """Change agent settings at run time; fields left None are unchanged."""

    type: Literal["cmd.config"] = "cmd.config"
    telemetry_interval_s: float | None = Field(default=None, gt=0, le=86400)
    cache_entries: int | None = Field(default=None, ge=0)
    cache_bytes: int | None = Field(default=None, ge=0)


Command = Annotated[
    DeployCommand | CancelCommand | RollbackCommand | BenchmarkCommand | ConfigCommand,
    Field(discriminator="type"),
]


# ----------------------------------------------------------------------------- events


class DeploymentEvent(_DeviceMsg):
    """Sent at every deployment state change."""

    type: Literal["event.deployment"] = "event.deployment"
    deployment_id: str
    state: DeploymentState
    previous_state: DeploymentState | None = None
    package_name: str = ""
    package_version: str = ""
    slot: SlotName | None = None
    reason: str = ""
    progress: float | None = Field(default=None, ge=0, le=1)


class CommandAck(_DeviceMsg):
    """Answer to a command: accepted or refused (``reason`` = CommandRejected code)."""

    type: Literal["event.ack"] = "event.ack"
    command_id: str
    action: str
    accepted: bool
    reason: str = ""
    detail: str = ""
    result: dict[str, float | int | str | bool | None] = Field(default_factory=dict)


class ErrorEvent(_DeviceMsg):
    """Something the agent could not process (malformed command payload, internal error)."""

    type: Literal["event.error"] = "event.error"
    code: str
    message: str
    topic: str = ""


Event = Annotated[DeploymentEvent | CommandAck | ErrorEvent, Field(discriminator="type")]


# ----------------------------------------------------------------------------- telemetry


class TelemetrySample(_Part):
    ts: datetime
    model: str | None = Field(default=None, description="active package as name@version")
    calls: int = Field(default=0, ge=0, description="inference calls in this interval")
    errors: int = Field(default=0, ge=0)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    cache_hits: int = Field(default=0, ge=0)
    cache_misses: int = Field(default=0, ge=0)
    cpu_percent: float | None = None
    rss_mb: float | None = None
    temperature_c: float | None = None

    @field_validator("ts")
    @classmethod
    def _ts(cls, v: datetime) -> datetime:
        return _aware(v)


class TelemetryBatch(_DeviceMsg):
    """``seq`` increases by one per batch per device (gaps = loss); ``dropped`` is the total
    number of samples the device's bounded queue had to discard so far."""

    type: Literal["telemetry"] = "telemetry"
    seq: int = Field(ge=0)
    samples: list[TelemetrySample] = Field(max_length=1000)
    dropped: int = Field(default=0, ge=0)


Message = Annotated[
    State
    | FleetState
    | Inventory
    | DeployCommand
    | CancelCommand
    | RollbackCommand
    | BenchmarkCommand
    | ConfigCommand
    | DeploymentEvent
    | CommandAck
    | ErrorEvent
    | TelemetryBatch,
    Field(discriminator="type"),
]
