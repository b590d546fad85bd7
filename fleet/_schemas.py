"""Request and response models of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from edgefleet.sdk.protocol import DEVICE_ID_PATTERN
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._answer_fields import RolloutFields, TokenFields, WaveProgress
from ._conformance import UtcDatetime
from ._db import ModelVersion
from ._errors import BadRequestError
from ._rollout_machine import RolloutSpec, TargetSpec

__all__ = [
    "ERRORS",
    "ErrorOut",
    "ModelVersionOut",
    "DeviceOut",
    "ProvisionIn",
    "ProvisionOut",
    "TagsIn",
    "RolloutIn",
    "RolloutOut",
    "RolloutDetail",
    "WaveProgress",
    "RolloutDeviceOut",
    "RolloutEventOut",
    "ActionIn",
    "TokenIn",
    "TokenOut",
    "TokenInfo",
    "TelemetryPointOut",
    "VersionSummary",
    "HealthOut",
    "mv_out",
    "time_window",
]

# What every API route may answer besides its success (documented in OpenAPI).
ERRORS = {
    400: {"description": "bad request, with a reason"},
    401: {"description": "missing or invalid token"},
    403: {"description": "token lacks the role"},
    404: {"description": "not found"},
    409: {"description": "conflict (duplicate, invalid state transition)"},
    422: {"description": "validation error"},
}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    detail: str | list[Any]


class HealthOut(BaseModel):
    status: Literal["ok"]
    mqtt_connected: bool
    database: str


class ModelVersionOut(BaseModel):
    id: int
    name: str
    version: str
    digest: str
    file_sha256: str
    size: int
    signed_by: str | None
    created_at: UtcDatetime
    artifacts: list[dict[str, Any]] = Field(default_factory=list)
    task: str = ""


class DeviceOut(BaseModel):
    id: str
    online: bool
    profile: str | None
    tags: list[str]
    agent_version: str | None
    active_slot: str | None
    slot_a: str | None
    slot_b: str | None
    active_model: str | None
    last_seen: UtcDatetime | None
    provisioned: bool
    decommissioned: bool


class ProvisionIn(_In):
    id: str = Field(pattern=DEVICE_ID_PATTERN)
    tags: list[str] = Field(default_factory=list, max_length=64)


class ProvisionOut(BaseModel):
    device: DeviceOut
    download_token: str = Field(description="shown once; Bearer token for artifact downloads")
    mqtt_username: str
    mqtt_password: str = Field(description="shown once")


Tag = Annotated[str, Field(min_length=1, max_length=64)]  # in the schema, not a validator


class TagsIn(_In):
    tags: list[Tag] = Field(max_length=64)


class RolloutIn(_In):
    name: str = Field(min_length=1, max_length=128)
    model: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=64)
    target: TargetSpec
    spec: RolloutSpec = Field(default_factory=RolloutSpec)
    start: bool = Field(default=False, description="start right away instead of DRAFT")
    start_at: datetime | None = Field(
        default=None,
        description="scheduled start (timezone-aware ISO time): stays DRAFT until then",
    )

    @field_validator("start_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("start_at needs a timezone, e.g. 2026-01-01T02:00:00Z")
        # Stored in UTC: SQLite keeps the wall time and drops the offset.
        return v.astimezone(UTC) if v is not None else None


# Subclassed, not aliased: the class name is the schema's name in the OpenAPI document.
class RolloutOut(RolloutFields):
    pass


class RolloutDeviceOut(BaseModel):
    device_id: str
    wave: int
    state: str
    previous_model: str | None
    detail: str


class RolloutEventOut(BaseModel):
    at: UtcDatetime
    from_status: str
    to_status: str
    reason: str
    actor: str


class RolloutDetail(RolloutOut):
    waves: list[WaveProgress]
    devices: list[RolloutDeviceOut]
    events: list[RolloutEventOut]


class ActionIn(_In):
    reason: str = Field(default="", max_length=500)


class TokenIn(_In):
    role: Literal["viewer", "operator", "admin"]
    name: str = Field(default="", max_length=128)


class TokenOut(BaseModel):
    token: str = Field(description="shown once")
    role: str


class TokenInfo(TokenFields):
    pass


class TelemetryPointOut(BaseModel):
    t: float
    calls: int
    errors: int
    throughput_per_s: float
    error_rate: float | None
    p95_ms: float | None
    cache_hit_rate: float | None
    ttft_p95_ms: float | None = None  # generative models only
    decode_tps: float | None = None


class VersionSummary(BaseModel):
    model: str
    series: list[TelemetryPointOut]


def mv_out(mv: ModelVersion) -> dict:
    return {
        "id": mv.id,
        "name": mv.name,
        "version": mv.version,
        "digest": mv.digest,
        "file_sha256": mv.file_sha256,
        "size": mv.size,
        "signed_by": mv.signed_by,
        "created_at": mv.created_at,
        "artifacts": [
            {k: a.get(k) for k in ("name", "format", "precision", "size", "sha256", "targets")}
            for a in mv.manifest.get("artifacts", [])
        ],
        "task": mv.manifest.get("task", ""),
    }


def time_window(since: float | None, until: float | None, hours: float) -> tuple[float, float]:
    now = time.time()
    for name, v in (("since", since), ("until", until)):
        if v is not None and not math.isfinite(v):
            raise BadRequestError(f"{name} must be a finite unix time")
    until = until if until is not None else now
    since = since if since is not None else until - hours * 3600
    # A window that starts after it ends (e.g. in the future) holds nothing: an empty
    # answer, not an error, so a schema-valid query always succeeds.
    return min(since, until), until
