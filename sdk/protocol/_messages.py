"""Pydantic models of every payload on the wire, one discriminated union ``Message``.

Every message carries ``schema_version`` (the protocol's, not the manifest's) and ``type``,
the discriminator. Timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator

from ._base import (
    MIN_SCHEMA_VERSION,
    PROTOCOL_SCHEMA_VERSION,
    TERMINAL_STATES,
    DeploymentState,
    SlotName,
    _aware,
    _DeviceMsg,
    _Msg,
    _Part,
    utcnow,
)
from ._cmdmodels import (
    BenchmarkCommand,
    CancelCommand,
    Command,
    CommandBase,
    CommandSignature,
    ConfigCommand,
    DeployCommand,
    ManifestSignature,
    RollbackCommand,
)

__all__ = [
    "GenerationTelemetry",
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


class GenerationTelemetry(_Part):
    """Generation figures of an interval (text-generation packages)."""

    ttft_p50_ms: float | None = Field(default=None, ge=0)
    ttft_p95_ms: float | None = Field(default=None, ge=0)
    decode_tokens_per_s: float | None = Field(default=None, ge=0)
    tokens_generated: int = Field(default=0, ge=0)
    prefix_cache_hits: int = Field(default=0, ge=0)
    prefix_cache_misses: int = Field(default=0, ge=0)


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
    generation: GenerationTelemetry | None = Field(
        default=None, description="set when the active model is generative"
    )

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
