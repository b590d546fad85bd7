"""Typed answers of the fleet API as the client sees them (no server imports).

Lenient on purpose (unknown fields are kept, not refused): a newer fleet may add fields and
an older client must keep working. Each model also answers ``obj["field"]``, so code written
against the raw JSON (the demo, the e2e tests) keeps working with typed objects. The rollout,
wave and token fields are the server's own (``_answer_fields``, pydantic only).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from . import _answer_fields as fields

__all__ = [
    "ApiModel",
    "AuditEntry",
    "AuditPage",
    "Deployment",
    "Device",
    "DeviceDetail",
    "DevicePage",
    "ModelVersion",
    "Rollout",
    "RolloutDetail",
    "RolloutDevice",
    "RolloutEvent",
    "TokenInfo",
    "WaveProgress",
]


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError as e:
            raise KeyError(key) from e

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


class ModelVersion(ApiModel):
    id: int
    name: str
    version: str
    digest: str
    size: int
    signed_by: str | None = None
    created_at: datetime
    task: str = ""
    artifacts: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class Device(ApiModel):
    id: str
    online: bool
    profile: str | None = None
    tags: list[str] = Field(default_factory=list)
    agent_version: str | None = None
    active_slot: str | None = None
    slot_a: str | None = None
    slot_b: str | None = None
    active_model: str | None = None
    last_seen: datetime | None = None
    decommissioned: bool = False


class DevicePage(ApiModel):
    total: int
    offset: int
    limit: int
    items: list[Device]


class Deployment(ApiModel):
    rollout_id: int
    rollout_name: str
    model: str
    rollout_status: str
    wave: int
    state: str
    detail: str = ""
    updated_at: float


class DeviceDetail(Device):
    inventory: dict[str, Any] = Field(default_factory=dict)
    maintenance_windows: list[dict[str, Any]] = Field(default_factory=list)
    deployments: list[Deployment] = Field(default_factory=list)


class WaveProgress(ApiModel, fields.WaveProgress):
    pass


class RolloutDevice(ApiModel):
    device_id: str
    wave: int
    state: str
    previous_model: str | None = None
    detail: str = ""


class RolloutEvent(ApiModel):
    at: datetime
    from_status: str
    to_status: str
    reason: str
    actor: str | None = None


class Rollout(ApiModel, fields.RolloutFields):
    gates: dict[str, Any] = Field(default_factory=dict)


class RolloutDetail(Rollout):
    waves: list[WaveProgress] = Field(default_factory=list)
    devices: list[RolloutDevice] = Field(default_factory=list)
    events: list[RolloutEvent] = Field(default_factory=list)


class TokenInfo(ApiModel, fields.TokenFields):
    pass


class AuditEntry(ApiModel):
    id: int
    at: datetime
    actor_id: str | None = Field(description="token id; hidden from viewers unless their own")
    actor_role: str
    action: str
    target_type: str
    target_id: str
    detail: dict[str, Any] = Field(default_factory=dict)


class AuditPage(ApiModel):
    items: list[AuditEntry]
    last_id: int
