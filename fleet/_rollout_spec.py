"""Rollout options as validated pydantic models: targets, wave sizes, thresholds, gates."""

from __future__ import annotations

import logging
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["WaveSize", "TargetSpec", "RolloutSpec"]

log = logging.getLogger(__name__)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WaveSize(_Spec):
    """One wave: an absolute ``count`` or a ``percent`` of the targeted devices."""

    # The "exactly one" rule in the OpenAPI document too, not only in the validator.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["count"],
                 "properties": {"count": {"type": "integer"}, "percent": {"type": "null"}}},
                {"required": ["percent"],
                 "properties": {"percent": {"type": "number"}, "count": {"type": "null"}}},
            ]
        }
    )  # fmt: skip

    count: int | None = Field(default=None, ge=1)
    percent: float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _one(self) -> WaveSize:
        if (self.count is None) == (self.percent is None):
            raise ValueError("a wave needs exactly one of 'count' or 'percent'")
        return self

    def size(self, total: int) -> int:
        if self.count is not None:
            return self.count
        return max(1, math.ceil(total * self.percent / 100))


class TargetSpec(_Spec):
    """Devices a rollout reaches: union of explicit ids, then filtered by tags and profile."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["device_ids"], "properties": {"device_ids": {"minItems": 1}}},
                {"required": ["tags"], "properties": {"tags": {"minItems": 1}}},
                {"required": ["profile"], "properties": {"profile": {"type": "string"}}},
            ]
        }
    )

    device_ids: list[str] = Field(default_factory=list, max_length=100_000)
    tags: list[str] = Field(default_factory=list, description="devices having ALL these tags")
    profile: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _something(self) -> TargetSpec:
        if not (self.device_ids or self.tags or self.profile):
            raise ValueError("target needs device_ids, tags or profile")
        return self


class RolloutSpec(_Spec):
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [  # "waves" needs at least one wave (the validator below, in the schema)
                {"properties": {"strategy": {"enum": ["all_at_once", "canary"]}}},
                {"required": ["waves"], "properties": {"waves": {"minItems": 1}}},
            ]
        }
    )

    strategy: Literal["all_at_once", "canary", "waves"] = "all_at_once"
    canary: WaveSize = Field(default_factory=lambda: WaveSize(count=1))
    waves: list[WaveSize] = Field(default_factory=list, max_length=100)
    success_threshold: float = Field(default=1.0, ge=0, le=1, description="fraction ACTIVE")
    failure_threshold: float = Field(default=0.0, ge=0, le=1, description="halt above this")
    on_failure: Literal["pause", "rollback"] = "pause"
    soak_s: float = Field(default=0.0, ge=0, le=7 * 86400)
    max_p95_regression: float | None = Field(
        default=None, gt=0, description="halt if new p95 > old p95 * (1 + this)"
    )
    max_error_rate_increase: float | None = Field(
        default=None, ge=0, le=1, description="halt if new error rate - old > this"
    )
    # Generative packages: the same mechanism on time to first token and decode speed.
    max_ttft_p95_regression: float | None = Field(
        default=None, gt=0, description="halt if new TTFT p95 > old * (1 + this)"
    )
    max_decode_tps_regression: float | None = Field(
        default=None, gt=0, lt=1, description="halt if new decode tokens/s < old * (1 - this)"
    )
    min_gate_calls: int = Field(default=1, ge=0)
    max_concurrent_downloads: int = Field(default=100, ge=1)
    stuck_timeout_s: float = Field(default=600.0, gt=0)
    health_window_s: float = Field(default=10.0, ge=0, le=86400, description="sent to devices")

    @model_validator(mode="after")
    def _waves(self) -> RolloutSpec:
        if self.strategy == "waves" and not self.waves:
            raise ValueError("strategy 'waves' needs at least one wave size in 'waves'")
        return self
