"""Pydantic models of every payload on the wire, one discriminated union ``Message``.

Every message carries ``schema_version`` (the protocol's, not the manifest's) and ``type``,
the discriminator. Timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_serializer

from ._command_messages import (
    BenchmarkCommand,
    CancelCommand,
    ConfigCommand,
    DeployCommand,
    RollbackCommand,
)
from ._message_base import (
    DeploymentState,
    SlotName,
    _aware,
    _DeviceMsg,
    _Msg,
    _Part,
    utcnow,
)
from ._safety import MAX_COUNT
from ._windows import MaintenanceWindow, drop_empty

__all__ = [
    "GenerationTelemetry",
    "SlotInfo",
    "State",
    "FleetState",
    "Inventory",
    "DeploymentEvent",
    "CommandAck",
    "ErrorEvent",
    "Event",
    "ResourceEvent",
    "TelemetrySample",
    "TelemetryBatch",
    "Message",
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
    # The device's own windows (agent settings), so operators see them; left out when empty.
    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list, max_length=16)

    @model_serializer(mode="wrap")
    def _drop_empty_windows(self, handler):
        return drop_empty(handler(self), "maintenance_windows")


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


class ResourceEvent(_DeviceMsg):
    """The agent changed how it serves because of the device's resources (or went back)."""

    type: Literal["event.resources"] = "event.resources"
    level: Literal["normal", "constrained", "critical"]
    previous_level: Literal["normal", "constrained", "critical"]
    reasons: list[str] = Field(default_factory=list, max_length=16)
    artifact: str = Field(default="", description="artifact served now")
    threads: int | None = Field(default=None, ge=1, description="intra-op threads now")
    shedding: bool = False


Event = Annotated[
    DeploymentEvent | CommandAck | ErrorEvent | ResourceEvent, Field(discriminator="type")
]


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
    calls: int = Field(
        default=0, ge=0, le=MAX_COUNT, description="inference calls in this interval"
    )
    errors: int = Field(default=0, ge=0, le=MAX_COUNT)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    cache_hits: int = Field(default=0, ge=0, le=MAX_COUNT)
    cache_misses: int = Field(default=0, ge=0, le=MAX_COUNT)
    cpu_percent: float | None = None
    rss_mb: float | None = None
    temperature_c: float | None = None
    # Resource adaptation (None when the agent does not watch resources).
    memory_used: float | None = Field(default=None, ge=0, description="fraction of the limit")
    memory_pressure: float | None = Field(default=None, ge=0, description="PSI some avg10 %")
    adaptation_level: int | None = Field(default=None, ge=0, le=2)
    shed: int | None = Field(default=None, ge=0, description="requests refused with 429")
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
    | ResourceEvent
    | TelemetryBatch,
    Field(discriminator="type"),
]
