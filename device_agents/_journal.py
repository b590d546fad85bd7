"""Persistent agent state: the deployment journal and the seen-nonce store.

The journal holds the one deployment in progress (its command and its current state);
it is rewritten atomically at every state change so a restarted agent knows where it was.
Accepted commands waiting for the worker are kept in a pending file for the same reason.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

from edgefleet.sdk.protocol import DeployCommand, DeploymentState
from pydantic import BaseModel, ConfigDict

from ._fsutil import read_json, write_json_atomic

__all__ = ["DeploymentRecord", "Journal", "FileNonceStore", "PendingCommands"]

log = logging.getLogger(__name__)


class DeploymentRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    command: DeployCommand
    state: DeploymentState
    from_slot: str | None = None
    to_slot: str | None = None
    reason: str = ""
    updated_at: datetime
    resumes: int = 0  # agent restarts during this deployment (crash-loop guard)

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
    """Seen command nonces with the digest of the command that used each, persisted so a
    replay is refused and a redelivered duplicate recognised even after a restart. Entries
    are dropped once their command has expired (then expiry refuses it anyway)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        raw = read_json(path) or {}
        self._seen: dict[str, tuple[datetime, str]] = {}
        for nonce, entry in raw.items() if isinstance(raw, dict) else ():
            try:
                # Older files stored just the expiry: such nonces never match as duplicates.
                exp, digest = (entry, "") if isinstance(entry, str) else entry
                self._seen[nonce] = (datetime.fromisoformat(exp), str(digest))
            except (TypeError, ValueError):
                continue

    def check_and_add(
        self, nonce: str, expires_at: datetime, now: datetime, digest: str = ""
    ) -> bool:
        with self._lock:
            self._seen = {n: e for n, e in self._seen.items() if e[0] >= now}
            if nonce in self._seen:
                return False
            self._seen[nonce] = (expires_at.astimezone(UTC), digest)
            write_json_atomic(
                self.path, {n: [e.isoformat(), d] for n, (e, d) in self._seen.items()}
            )
            return True

    def digest(self, nonce: str) -> str | None:
        with self._lock:
            entry = self._seen.get(nonce)
            return entry[1] if entry else None


class PendingCommands:
    """Accepted commands not yet run (a deploy waiting behind another), persisted so a
    restart runs them instead of losing them. Removed once their job has started."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> list[dict]:
        raw = read_json(self.path)
        return raw if isinstance(raw, list) else []

    def add(self, cmd) -> None:
        with self._lock:
            items = [i for i in self._read() if i.get("nonce") != cmd.nonce]
            items.append({"nonce": cmd.nonce, "payload": cmd.model_dump(mode="json")})
            write_json_atomic(self.path, items)

    def remove(self, nonce: str) -> None:
        with self._lock:
            items = self._read()
            kept = [i for i in items if i.get("nonce") != nonce]
            if len(kept) != len(items):
                write_json_atomic(self.path, kept)

    def load(self) -> list:
        """The pending commands, oldest first (unreadable entries are logged and skipped)."""
        from edgefleet.sdk.protocol import ProtocolError, parse_message

        out = []
        for item in self._read():
            try:
                out.append(parse_message(json.dumps(item.get("payload"))))
            except ProtocolError as e:
                log.error("pending command in %s unreadable, skipping it: %s", self.path, e)
        return out
