"""The fields of the API's rollout and token answers, declared once.

The server's response models (``_schemas.py``: they make the OpenAPI document) and the
client's typed answers (``_client_models.py``) both derive from these. Pydantic only, so the
client still imports no FastAPI or SQLAlchemy; the client adds its lenient config (unknown
fields kept) and defaults where an older fleet may not send a field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from ._conformance import UtcDatetime

__all__ = ["RolloutFields", "TokenFields", "WaveProgress"]


class WaveProgress(BaseModel):
    """One wave of a rollout: its size and how many devices are in each state."""

    index: int
    size: int
    states: dict[str, int]
    active: int
    failed: int


class RolloutFields(BaseModel):
    """A rollout as listed (``GET /api/v1/rollouts``)."""

    id: int
    name: str
    model: str
    status: str
    reason: str
    current_wave: int
    wave_count: int
    device_count: int
    created_at: UtcDatetime
    updated_at: UtcDatetime
    spec: dict[str, Any]
    target: dict[str, Any]
    gates: dict[str, Any]
    start_at: datetime | None = None


class TokenFields(BaseModel):
    """An API token as listed: never its secret."""

    id: str
    name: str
    role: str
    created_at: UtcDatetime
    revoked: bool
