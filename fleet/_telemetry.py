"""Telemetry: a batching writer (one executemany per flush) and the chart/gate queries."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from sqlalchemy import and_, case, func, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from ._db import Telemetry
from ._isolate import write_isolating
from ._prometheus import Metrics

__all__ = [
    "TelemetryWriter",
    "TelemetryPoint",
    "query_series",
    "series_by_model",
    "aggregate",
    "aggregate_generation",
]

log = logging.getLogger(__name__)

_COLUMNS = (
    "device_id",
    "model",
    "ts",
    "seq",
    "calls",
    "errors",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "cache_hit_rate",
    "ttft_p95_ms",
    "decode_tps",
)


def _as_dict(row: tuple) -> dict:
    return dict(zip(_COLUMNS, row, strict=True))


class TelemetryWriter:
    """Collects rows from the MQTT thread and writes them in batches from its own thread.

    Rows are tuples in ``_COLUMNS`` order (``_telemetry_codec.Row``). ``flush()`` blocks
    until everything queued before the call is in the database (used by tests and shutdown).
    """

    def __init__(
        self,
        engine: Engine,
        metrics: Metrics,
        *,
        batch_size: int = 2000,
        interval_s: float = 0.2,
        max_queue: int = 500_000,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._batch = batch_size
        self._interval = interval_s
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-telemetry", daemon=True)
        self.rows_written = 0
        marks = ", ".join("?" * len(_COLUMNS))
        self._sqlite_sql = (
            f"INSERT INTO telemetry ({', '.join(_COLUMNS)}) VALUES ({marks})"
            if engine.dialect.name == "sqlite"
            else ""
        )

    def start(self) -> None:
        self._thread.start()

    def put_many(self, rows: list[tuple]) -> None:
        """Queue rows (tuples in ``_COLUMNS`` order). One queue item per call keeps this
        cheap."""
        try:
            self._q.put_nowait(rows)
        except queue.Full:
            # Back-pressure would stall MQTT keepalives; count and drop instead.
            self._metrics.inc("edgefleet_fleet_telemetry_dropped_total", len(rows))

    def flush(self, timeout: float = 10.0) -> None:
        done = threading.Event()
        self._q.put(done)
        if not done.wait(timeout):
            raise TimeoutError("telemetry writer did not flush in time")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # stop() without start() is a no-op
            self._q.put(None)
            self._thread.join(10)

    def _insert(self, rows: list) -> None:
        with self._engine.begin() as conn:
            if self._sqlite_sql:
                # The DBAPI's executemany directly: the ORM-free hot path for SQLite.
                conn.exec_driver_sql(self._sqlite_sql, rows)
            else:
                conn.execute(insert(Telemetry), [_as_dict(r) for r in rows])

    def _write(self, rows: list) -> None:
        if not rows:
            return
        try:
            # A row the database refuses costs only itself, never the other devices' rows.
            n = write_isolating(
                self._insert,
                rows,
                metrics=self._metrics,
                path="telemetry",
                describe=lambda r: f"telemetry row of device {r[0]!r}",
            )
        except OperationalError as e:  # lock contention, a DB restart: retried, then lost
            log.error("telemetry batch of %d rows lost: %s", len(rows), e)
            self._metrics.inc("edgefleet_fleet_telemetry_write_errors_total")
            return
        except Exception:  # the writer thread must survive anything
            log.exception("telemetry batch of %d rows failed", len(rows))
            self._metrics.inc("edgefleet_fleet_telemetry_write_errors_total")
            return
        self.rows_written += n
        self._metrics.inc("edgefleet_fleet_telemetry_rows_total", n)

    def _run(self) -> None:
        rows: list = []
        waiters: list[threading.Event] = []
        deadline = time.monotonic() + self._interval
        while True:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                item = self._q.get(timeout=timeout)
            except queue.Empty:
                item = ...
            if isinstance(item, list):
                rows.extend(item)
                if len(rows) < self._batch:
                    continue
            elif isinstance(item, threading.Event):
                waiters.append(item)
            elif item is None:
                self._write(rows)
                return
            self._write(rows)
            rows = []
            for w in waiters:
                w.set()
            waiters = []
            deadline = time.monotonic() + self._interval


@dataclass(frozen=True)
class TelemetryPoint:
    t: float
    calls: int
    errors: int
    p95_ms: float | None
    cache_hit_rate: float | None


def _rows(bind: Engine | Connection, stmt) -> list:
    """Run ``stmt`` on an engine (own connection) or inside the caller's transaction (a
    connection): with SQLite a second connection would wait for the caller's write lock."""
    if isinstance(bind, Connection):
        return list(bind.execute(stmt))
    with bind.connect() as conn:
        return list(conn.execute(stmt))


def _filters(model: str | None, device_ids: list[str] | None, since: float, until: float):
    conds = [Telemetry.ts >= since, Telemetry.ts <= until]
    if model:
        conds.append(Telemetry.model == model)
    if device_ids is not None:
        conds.append(Telemetry.device_id.in_(device_ids))
    return and_(*conds)


# The generative figures are requests-weighted over the samples that carry them.
_GEN_SUMS = (
    func.sum(Telemetry.ttft_p95_ms * Telemetry.calls),
    func.sum(case((Telemetry.ttft_p95_ms.is_not(None), Telemetry.calls), else_=0)),
    func.sum(Telemetry.decode_tps * Telemetry.calls),
    func.sum(case((Telemetry.decode_tps.is_not(None), Telemetry.calls), else_=0)),
)
# One time bucket of a series, in the argument order of _point (after the bucket).
_BUCKET_SUMS = (
    func.sum(Telemetry.calls),
    func.sum(Telemetry.errors),
    func.sum(Telemetry.p95_ms * Telemetry.calls),
    func.sum(func.coalesce(Telemetry.cache_hit_rate * Telemetry.calls, 0)),
    *_GEN_SUMS,
)


def _bucket_rows(engine: Engine, bucket_s: float, where, *, by_model: bool) -> list:
    """Rows of (model if by_model, bucket index, *_BUCKET_SUMS), ordered by those keys."""
    bucket = func.floor(Telemetry.ts / bucket_s)
    keys = (Telemetry.model, bucket) if by_model else (bucket,)
    stmt = (
        select(*keys[:-1], bucket.label("b"), *_BUCKET_SUMS)
        .where(where)
        .group_by(*keys)
        .order_by(*keys)
    )
    return _rows(engine, stmt)


def query_series(
    engine: Engine,
    *,
    model: str | None,
    device_id: str | None,
    since: float,
    until: float,
    bucket_s: float,
) -> list[dict]:
    """Time buckets with calls, errors, calls-weighted p95 and cache hit rate."""
    where = _filters(model, [device_id] if device_id else None, since, until)
    return [_point(bucket_s, *row) for row in _bucket_rows(engine, bucket_s, where, by_model=False)]


def _weighted(total, weight) -> float | None:
    """``total / weight``, or None where no sample carried the figure."""
    return float(total) / weight if weight and total is not None else None


def _point(bucket_s: float, b, calls, errors, p95w, hitw, ttft_w, ttft_n, tps_w, tps_n) -> dict:
    calls = int(calls or 0)
    return {
        "t": float(b) * bucket_s,
        "calls": calls,
        "errors": int(errors or 0),
        "throughput_per_s": calls / bucket_s,
        "error_rate": (errors or 0) / calls if calls else None,
        "p95_ms": _weighted(p95w, calls),
        "cache_hit_rate": float(hitw) / calls if calls else None,
        "ttft_p95_ms": _weighted(ttft_w, ttft_n),
        "decode_tps": _weighted(tps_w, tps_n),
    }


def series_by_model(
    engine: Engine,
    *,
    device_id: str | None,
    since: float,
    until: float,
    bucket_s: float,
) -> dict[str, list[dict]]:
    """:func:`query_series` for every model at once: one scan of the window, not one per
    model (the dashboard's charts at fleet scale)."""
    where = _filters(None, [device_id] if device_id else None, since, until)
    out: dict[str, list[dict]] = {}
    for model, *row in _bucket_rows(engine, bucket_s, where, by_model=True):
        out.setdefault(model, []).append(_point(bucket_s, *row))
    return out


def aggregate(
    engine: Engine | Connection,
    *,
    model: str,
    device_ids: list[str] | None,
    since: float,
    until: float,
) -> tuple[int, float | None, float | None]:
    """(calls, calls-weighted p95 ms, error rate) over a window."""
    stmt = select(
        func.sum(Telemetry.calls),
        func.sum(Telemetry.errors),
        func.sum(Telemetry.p95_ms * Telemetry.calls),
    ).where(_filters(model, device_ids, since, until))
    ((calls, errors, p95w),) = _rows(engine, stmt)
    calls = int(calls or 0)
    if not calls:
        return 0, None, None
    return calls, (float(p95w) / calls if p95w is not None else None), (errors or 0) / calls


def aggregate_generation(
    engine: Engine | Connection,
    *,
    model: str,
    device_ids: list[str] | None,
    since: float,
    until: float,
) -> tuple[float | None, float | None]:
    """(requests-weighted TTFT p95 ms, requests-weighted decode tokens/s) over a window;
    None where no sample of a generative model carried the figure."""
    stmt = select(*_GEN_SUMS).where(_filters(model, device_ids, since, until))
    ((ttft_w, ttft_n, tps_w, tps_n),) = _rows(engine, stmt)
    return _weighted(ttft_w, ttft_n), _weighted(tps_w, tps_n)
