"""Shared pieces of the wire messages: schema version, deployment states, base models."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._device_id import DeviceId

__all__ = [
    "PROTOCOL_SCHEMA_VERSION",
    "MIN_SCHEMA_VERSION",
    "DeploymentState",
    "TERMINAL_STATES",
    "SlotName",
    "utcnow",
]

PROTOCOL_SCHEMA_VERSION = 2
# Oldest version decode() still accepts (upgraded in _codec); see _codec.upgrade().
MIN_SCHEMA_VERSION = 1

SlotName = Literal["A", "B"]
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
    # defer_build: schemas are built on first use, keeping agent start-up fast.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    schema_version: int = PROTOCOL_SCHEMA_VERSION

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != PROTOCOL_SCHEMA_VERSION:
            # Older payloads are upgraded by the codec before validation.
            raise ValueError(f"expected schema_version {PROTOCOL_SCHEMA_VERSION}, got {v}")
        return v


class _Part(BaseModel):
    # defer_build: schemas are built on first use, keeping agent start-up fast.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def _aware(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return v.astimezone(UTC)


class _DeviceMsg(_Msg):
    device_id: DeviceId
    ts: datetime = Field(default_factory=utcnow)

    @field_validator("ts")
    @classmethod
    def _ts(cls, v: datetime) -> datetime:
        return _aware(v)
