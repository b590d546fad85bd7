"""Store-and-forward telemetry: a bounded SQLite queue of samples, sent in order.

Samples are appended locally; a batch (the oldest rows, a fixed sequence number) is formed,
published at QoS 1, and its rows deleted only when the broker's PUBACK arrives. One batch is
in flight at a time, so batches arrive in order. The batch in flight is persisted, so after a
restart it is re-sent with the same sequence number (the fleet deduplicates by seq).
When the bound is hit the oldest samples are dropped and counted.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edgefleet.sdk.protocol import GenerationTelemetry, TelemetryBatch, TelemetrySample

__all__ = ["TelemetryQueue", "PendingBatch", "system_sample"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class PendingBatch:
    seq: int
    last_id: int
    batch: TelemetryBatch


class TelemetryQueue:
    def __init__(self, path: Path, device_id: str, max_rows: int = 10_000) -> None:
        self.device_id = device_id
        self.max_rows = max_rows
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def _meta(self, key: str, default: int = 0) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else int(row[0])

    def _set(self, key: str, value: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._meta("dropped")

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    def append(self, sample: TelemetrySample) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                body = sample.model_dump_json()
                self._db.execute("INSERT INTO samples(body) VALUES (?)", (body,))
                n = self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
                if n > self.max_rows:
                    over = n - self.max_rows
                    self._db.execute(
                        "DELETE FROM samples WHERE id IN "
                        "(SELECT id FROM samples ORDER BY id LIMIT ?)",
                        (over,),
                    )
                    self._set("dropped", self._meta("dropped") + over)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def next_batch(self, limit: int) -> PendingBatch | None:
        """The batch to send: the persisted in-flight one, else a new one of the oldest rows."""
        with self._lock:
            seq = self._meta("pending_seq", -1)
            if seq >= 0:
                last = self._meta("pending_last")
                rows = self._db.execute(
                    "SELECT id, body FROM samples WHERE id <= ? ORDER BY id", (last,)
                ).fetchall()
                if rows:
                    return self._batch(seq, rows)
                self._set("pending_seq", -1)  # all of it was dropped by the bound
            rows = self._db.execute(
                "SELECT id, body FROM samples ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
            if not rows:
                return None
            seq = self._meta("next_seq")
            self._db.execute("BEGIN IMMEDIATE")
            self._set("next_seq", seq + 1)
            self._set("pending_seq", seq)
            self._set("pending_last", rows[-1][0])
            self._db.execute("COMMIT")
            return self._batch(seq, rows)

    def _batch(self, seq: int, rows: list) -> PendingBatch:
        samples = [TelemetrySample.model_validate(json.loads(body)) for _, body in rows]
        batch = TelemetryBatch(
            device_id=self.device_id, seq=seq, samples=samples, dropped=self._meta("dropped")
        )
        return PendingBatch(seq=seq, last_id=rows[-1][0], batch=batch)

    def ack(self, pending: PendingBatch) -> None:
        """The broker acknowledged ``pending``: delete its rows."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM samples WHERE id <= ?", (pending.last_id,))
            if self._meta("pending_seq", -1) == pending.seq:
                self._set("pending_seq", -1)
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _temperature_c() -> float | None:
    """First readable thermal zone (boards expose millidegrees in sysfs)."""
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*/temp"))[:4]:
        try:
            return round(int(zone.read_text().strip()) / 1000.0, 1)
        except (OSError, ValueError):
            continue
    return None


# TelemetrySample field <- snapshot attribute. A generative model's requests count as
# calls, its TTFT as latency.
_PREDICT_FIELDS = {"calls": "calls", "errors": "errors", "latency_p50_ms": "p50_ms",
                   "latency_p95_ms": "p95_ms", "latency_p99_ms": "p99_ms",
                   "cache_hits": "cache_hits", "cache_misses": "cache_misses"}  # fmt: skip
_GENERATE_FIELDS = {"calls": "requests", "errors": "errors", "latency_p50_ms": "ttft_p50_ms",
                    "latency_p95_ms": "ttft_p95_ms"}  # fmt: skip


def _snapshot_fields(s) -> dict:
    if s is None:
        return {}
    if not hasattr(s, "tokens_generated"):  # an SDK MetricsSnapshot
        return {k: getattr(s, a) for k, a in _PREDICT_FIELDS.items()}
    # a GenerationSnapshot: GenerationTelemetry names its figures as the snapshot does
    generation = GenerationTelemetry(**{f: getattr(s, f) for f in GenerationTelemetry.model_fields})
    return {k: getattr(s, a) for k, a in _GENERATE_FIELDS.items()} | {"generation": generation}


def system_sample(process, snapshot, model: str | None) -> TelemetrySample:
    """A sample from an SDK MetricsSnapshot or GenerationSnapshot (or None) and a
    psutil.Process."""
    fields = _snapshot_fields(snapshot)
    return TelemetrySample(
        ts=datetime.now(UTC),
        model=model,
        **fields,
        cpu_percent=process.cpu_percent(None) if process else None,
        rss_mb=round(process.memory_info().rss / 2**20, 2) if process else None,
        temperature_c=_temperature_c(),
    )
