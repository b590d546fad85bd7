"""Request and response models of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._db import ModelVersion
from ._engine import RolloutSpec, TargetSpec
from ._errors import BadRequestError

__all__ = [
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

_ID = r"^[A-Za-z0-9._-]{1,64}$"


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
    created_at: datetime
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
    last_seen: datetime | None
    provisioned: bool
    decommissioned: bool


class ProvisionIn(_In):
    id: str = Field(pattern=_ID)
    tags: list[str] = Field(default_factory=list, max_length=64)


class ProvisionOut(BaseModel):
    device: DeviceOut
    download_token: str = Field(description="shown once; Bearer token for artifact downloads")
    mqtt_username: str
    mqtt_password: str = Field(description="shown once")


class TagsIn(_In):
    tags: list[str] = Field(max_length=64)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for t in v:
            if not 1 <= len(t) <= 64:
                raise ValueError(f"tags must be 1-64 characters, got {t!r}")
        return v


class RolloutIn(_In):
    name: str = Field(min_length=1, max_length=128)
    model: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=64)
    target: TargetSpec
    spec: RolloutSpec = Field(default_factory=RolloutSpec)
    start: bool = Field(default=False, description="start right away instead of DRAFT")


class WaveProgress(BaseModel):
    index: int
    size: int
    states: dict[str, int]
    active: int
    failed: int


class RolloutOut(BaseModel):
    id: int
    name: str
    model: str
    status: str
    reason: str
    current_wave: int
    wave_count: int
    device_count: int
    created_at: datetime
    updated_at: datetime
    spec: dict[str, Any]
    target: dict[str, Any]
    gates: dict[str, Any]


class RolloutDeviceOut(BaseModel):
    device_id: str
    wave: int
    state: str
    previous_model: str | None
    detail: str


class RolloutEventOut(BaseModel):
    at: datetime
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


class TokenInfo(BaseModel):
    id: str
    name: str
    role: str
    created_at: datetime
    revoked: bool


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
    if since > until:
        raise BadRequestError(f"since ({since}) is after until ({until})")
    return since, until
