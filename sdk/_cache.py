"""Result caches keyed by (model digest, input digest).

:class:`ResultCache` is in memory (LRU bounded by entries and bytes, TTL, thread-safe);
:class:`PersistentCache` is a SQLite file with the same bounds that survives restarts, for
offline field use. Cached outputs are returned as read-only arrays so a caller cannot
corrupt what later hits will see.
"""

from __future__ import annotations

import io
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ._errors import ConfigError
from ._metrics import HitCounts

__all__ = ["CacheStats", "Cache", "ResultCache", "PersistentCache", "input_digest"]

try:  # xxh3 hashes ~20x faster than sha256; cache keys need no cryptographic strength
    import xxhash

    def _hasher():
        return xxhash.xxh3_128()
except ImportError:  # pragma: no cover - xxhash is a core dependency
    import hashlib

    def _hasher():
        return hashlib.sha256()


def input_digest(inputs: Mapping[str, np.ndarray]) -> str:
    """Digest of names, dtypes, shapes and bytes of the inputs (order-independent)."""
    h = _hasher()
    for name in sorted(inputs):
        a = inputs[name]
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.hexdigest()


@dataclass(frozen=True)
class CacheStats(HitCounts):
    """A result cache's counters (besides ``hits``, ``misses`` and
    ``hit_rate``): entries dropped for room or age, and what it holds now."""

    evictions: int
    expirations: int
    entries: int
    bytes: int


class Cache(Protocol):
    def get(self, key: str) -> dict[str, np.ndarray] | None: ...

    def put(self, key: str, outputs: Mapping[str, np.ndarray]) -> None: ...

    def stats(self) -> CacheStats: ...


def _check_bounds(max_entries: int, max_bytes: int, ttl_s: float | None) -> None:
    if max_entries < 1 or max_bytes < 1:
        raise ConfigError(
            f"cache bounds must be >= 1, got max_entries={max_entries} max_bytes={max_bytes}"
        )
    if ttl_s is not None and ttl_s <= 0:
        raise ConfigError(f"ttl_s must be > 0 or None, got {ttl_s}")


def _frozen(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for k, v in outputs.items():
        a = np.array(v, copy=True)
        a.setflags(write=False)
        out[k] = a
    return out


class ResultCache:
    """In-memory LRU result cache."""

    def __init__(
        self, max_entries: int = 1024, max_bytes: int = 64 << 20, ttl_s: float | None = None
    ) -> None:
        _check_bounds(max_entries, max_bytes, ttl_s)
        self.max_entries, self.max_bytes, self.ttl_s = max_entries, max_bytes, ttl_s
        self._data: OrderedDict[str, tuple[float, int, dict[str, np.ndarray]]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = self._expirations = 0

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self._misses += 1
                return None
            stored_at, size, outputs = item
            if self.ttl_s is not None and time.monotonic() - stored_at > self.ttl_s:
                del self._data[key]
                self._bytes -= size
                self._expirations += 1
                self._misses += 1
                return None
            self._data.move_to_end(key)
            self._hits += 1
            return dict(outputs)

    def put(self, key: str, outputs: Mapping[str, np.ndarray]) -> None:
        frozen = _frozen(outputs)
        size = sum(a.nbytes for a in frozen.values())
        if size > self.max_bytes:
            return  # larger than the whole cache: caching it would evict everything
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._data[key] = (time.monotonic(), size, frozen)
            self._bytes += size
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, s, _) = self._data.popitem(last=False)
                self._bytes -= s
                self._evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                self._hits,
                self._misses,
                self._evictions,
                self._expirations,
                len(self._data),
                self._bytes,
            )


class PersistentCache:
    """SQLite-backed result cache that survives restarts (offline field use).

    Entries are npz blobs; LRU by last access time; TTL by creation time (wall clock,
    since it must hold across reboots).
    """

    def __init__(
        self,
        path: str | Path,
        max_entries: int = 10_000,
        max_bytes: int = 256 << 20,
        ttl_s: float | None = None,
    ) -> None:
        _check_bounds(max_entries, max_bytes, ttl_s)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_entries, self.max_bytes, self.ttl_s = max_entries, max_bytes, ttl_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, created REAL NOT NULL,"
            " accessed REAL NOT NULL, size INTEGER NOT NULL, blob BLOB NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS results_accessed ON results(accessed)")
        self._hits = self._misses = self._evictions = self._expirations = 0

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        now = time.time()
        with self._lock:
            row = self._db.execute(
                "SELECT created, blob FROM results WHERE key=?", (key,)
            ).fetchone()
            if row is None:
                self._misses += 1
                return None
            if self.ttl_s is not None and now - row[0] > self.ttl_s:
                self._db.execute("DELETE FROM results WHERE key=?", (key,))
                self._expirations += 1
                self._misses += 1
                return None
            self._db.execute("UPDATE results SET accessed=? WHERE key=?", (now, key))
            self._hits += 1
        try:
            with np.load(io.BytesIO(row[1]), allow_pickle=False) as z:
                return _frozen({k: z[k] for k in z.files})
        except (OSError, ValueError):
            # A corrupt row (disk trouble) is a miss, never a wrong answer.
            with self._lock:
                self._db.execute("DELETE FROM results WHERE key=?", (key,))
            return None

    def put(self, key: str, outputs: Mapping[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in outputs.items()})
        blob = buf.getvalue()
        if len(blob) > self.max_bytes:
            return
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?)",
                    (key, now, now, len(blob), blob),
                )
                self._evict()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _evict(self) -> None:
        n, total = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size),0) FROM results"
        ).fetchone()
        while n > self.max_entries or total > self.max_bytes:
            key, size = self._db.execute(
                "SELECT key, size FROM results ORDER BY accessed LIMIT 1"
            ).fetchone()
            self._db.execute("DELETE FROM results WHERE key=?", (key,))
            n, total = n - 1, total - size
            self._evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM results")

    def stats(self) -> CacheStats:
        with self._lock:
            n, total = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size),0) FROM results"
            ).fetchone()
            return CacheStats(
                self._hits, self._misses, self._evictions, self._expirations, n, total
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
