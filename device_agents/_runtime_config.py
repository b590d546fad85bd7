"""What a config command can change at run time (telemetry interval, result cache), kept in
``config.json`` so it survives a restart; the settings give the defaults."""

from __future__ import annotations

import logging
from pathlib import Path

from edgefleet.sdk.protocol import ConfigCommand

from ._fsutil import read_json, write_json_atomic
from ._settings import AgentSettings

__all__ = ["RuntimeConfig"]

log = logging.getLogger(__name__)

_FIELDS = ("telemetry_interval_s", "cache_entries", "cache_bytes")


class RuntimeConfig:
    def __init__(self, path: Path, settings: AgentSettings) -> None:
        self.path = path
        saved = read_json(path) or {}
        self.telemetry_interval_s = float(
            saved.get("telemetry_interval_s", settings.telemetry_interval_s)
        )
        self.cache_entries = int(saved.get("cache_entries", settings.cache_entries))
        self.cache_bytes = int(saved.get("cache_bytes", settings.cache_bytes))

    def apply(self, cmd: ConfigCommand) -> set[str]:
        """Take the fields ``cmd`` sets (None = unchanged), persist; the names changed."""
        changed = {f for f in _FIELDS if getattr(cmd, f) is not None}
        for f in changed:
            setattr(self, f, getattr(cmd, f))
        write_json_atomic(self.path, {f: getattr(self, f) for f in _FIELDS})
        return changed
