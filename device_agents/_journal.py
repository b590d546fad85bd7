"""Persistent agent state: the deployment journal and the seen-nonce store.

The journal holds the one deployment in progress (its command and its current state);
it is rewritten atomically at every state change so a restarted agent knows where it was.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

from edgefleet.sdk.protocol import DeployCommand, DeploymentState
from pydantic import BaseModel, ConfigDict

from ._fsutil import read_json, write_json_atomic

__all__ = ["DeploymentRecord", "Journal", "FileNonceStore"]

log = logging.getLogger(__name__)


class DeploymentRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    command: DeployCommand
    state: DeploymentState
    from_slot: str | None = None
    to_slot: str | None = None
    reason: str = ""
    updated_at: datetime

    @property
    def deployment_id(self) -> str:
        return self.command.deployment_id


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> DeploymentRecord | None:
        data = read_json(self.path)
        if data is None:
            return None
        try:
            return DeploymentRecord.model_validate(data)
        except ValueError as e:
            log.error("deployment journal %s unreadable, ignoring it: %s", self.path, e)
            return None

    def save(self, record: DeploymentRecord) -> None:
        write_json_atomic(self.path, record.model_dump(mode="json"))


class FileNonceStore:
    """Seen command nonces, persisted so a replay is refused even after a restart.
    Entries are dropped once their command has expired (then expiry refuses it anyway)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        raw = read_json(path) or {}
        self._seen: dict[str, datetime] = {}
        for nonce, exp in raw.items() if isinstance(raw, dict) else ():
            try:
                self._seen[nonce] = datetime.fromisoformat(exp)
            except (TypeError, ValueError):
                continue

    def check_and_add(self, nonce: str, expires_at: datetime, now: datetime) -> bool:
        with self._lock:
            self._seen = {n: e for n, e in self._seen.items() if e >= now}
            if nonce in self._seen:
                return False
            self._seen[nonce] = expires_at.astimezone(UTC)
            write_json_atomic(self.path, {n: e.isoformat() for n, e in self._seen.items()})
            return True
