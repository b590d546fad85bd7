"""Crash-safe file writes: write a temp file, fsync it, rename over the target, fsync the
directory. After a kill -9 or power loss the target holds the old or the new content."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "write_atomic",
    "write_json_atomic",
    "read_json",
    "fsync_dir",
    "set_durable",
    "durable",
]

_durable = True


def set_durable(on: bool) -> None:
    """Process-wide: skip fsync when False. Only for simulated fleets (``Simulation``), where
    hundreds of agents share one disk and a power cut is not what is being simulated; the
    rename still makes every write atomic. A real agent always fsyncs."""
    global _durable
    _durable = on


def durable() -> bool:
    """False in a simulated fleet (see ``set_durable``)."""
    return _durable


def fsync_dir(path: Path) -> None:
    if not _durable:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if _durable:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None if missing. A corrupt file (impossible with
    write_atomic, but disks lie) also reads as None so the caller falls back safely."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
