"""Request and response models of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._engine import RolloutSpec, TargetSpec

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


class VersionSummary(BaseModel):
    model: str
    series: list[TelemetryPointOut]


def finite(v: float | None, name: str) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number")
    return v
