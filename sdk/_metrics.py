"""Inference metrics: a log-bucketed latency histogram and call/error/cache counters.

The histogram has fixed buckets growing by 4 % from 1 us to ~100 s, so recording is O(1),
memory is constant and percentiles are within one bucket (4 %) of the true value.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["HitCounts", "LatencyHistogram", "Metrics", "MetricsSnapshot", "hit_rate", "to_ms"]

_GROWTH = 1.04
_MIN_S = 1e-6
_BUCKETS = int(math.log(1e8) / math.log(_GROWTH)) + 2
_LOG_GROWTH = math.log(_GROWTH)


def hit_rate(hits: int, misses: int) -> float | None:
    """hits / lookups, None before the first lookup."""
    n = hits + misses
    return hits / n if n else None


@dataclass(frozen=True)
class HitCounts:
    """Lookups of a cache that hit and missed; the base of the caches' stats."""

    hits: int
    misses: int

    @property
    def hit_rate(self) -> float | None:
        return hit_rate(self.hits, self.misses)


def to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 4)


class LatencyHistogram:
    """Not thread-safe on its own; :class:`Metrics` guards it."""

    __slots__ = ("counts", "total", "sum_s", "max_s")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.total = 0
        self.sum_s = 0.0
        self.max_s = 0.0

    def record(self, seconds: float) -> None:
        i = 0 if seconds <= _MIN_S else int(math.log(seconds / _MIN_S) / _LOG_GROWTH) + 1
        self.counts[min(i, _BUCKETS - 1)] += 1
        self.total += 1
        self.sum_s += seconds
        if seconds > self.max_s:
            self.max_s = seconds

    def record_many(self, seconds: np.ndarray) -> None:
        """Record many durations at once (the same buckets as :meth:`record`)."""
        if not seconds.size:
            return
        idx = np.zeros(seconds.shape, np.int64)
        big = seconds > _MIN_S
        idx[big] = (np.log(seconds[big] / _MIN_S) / _LOG_GROWTH).astype(np.int64) + 1
        for i, c in enumerate(np.bincount(np.minimum(idx, _BUCKETS - 1)).tolist()):
            if c:
                self.counts[i] += c
        self.total += int(seconds.size)
        self.sum_s += float(seconds.sum())
        self.max_s = max(self.max_s, float(seconds.max()))

    def percentile(self, q: float) -> float | None:
        """Upper edge of the bucket holding the q-th percentile (seconds), None if empty."""
        if not self.total:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.total))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return min(_MIN_S * _GROWTH**i, self.max_s)
        return self.max_s


@dataclass(frozen=True)
class MetricsSnapshot:
    calls: int
    errors: int
    cache_hits: int
    cache_misses: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    max_ms: float | None

    @property
    def cache_hit_rate(self) -> float | None:
        return hit_rate(self.cache_hits, self.cache_misses)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cache_hit_rate"] = self.cache_hit_rate
        d["error_rate"] = self.error_rate
        return d


class Metrics:
    """Thread-safe counters and latency histogram of one model (or of an agent).

    ``record_call`` only appends to a deque (atomic in CPython, no lock): the histogram is
    updated when figures are read, or every ``_DRAIN_AT`` calls. On a model that runs in
    15 us the lock and the bucket arithmetic per call were a measurable part of the SDK's
    overhead."""

    _DRAIN_AT = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: deque[float] = deque()  # seconds; < 0 marks an error
        self._reset()

    def _reset(self) -> None:
        self._hist = LatencyHistogram()
        self._calls = self._errors = self._hits = self._misses = 0

    def record_call(self, seconds: float, *, error: bool = False) -> None:
        self._pending.append(-1.0 if error else seconds)
        if len(self._pending) >= self._DRAIN_AT:
            with self._lock:
                self._drain()

    def _drain(self) -> None:
        """Move pending calls into the counters (caller holds the lock). Vectorised: at a
        few us per call, a Python-level histogram update per call was measurable."""
        pop = self._pending.popleft
        # popleft is atomic: a call recorded meanwhile stays queued for the next drain.
        got = np.fromiter((pop() for _ in range(len(self._pending))), np.float64)
        ok = got[got >= 0]
        self._calls += int(got.size)
        self._errors += int(got.size - ok.size)
        self._hist.record_many(ok)

    def record_cache(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self._hits += 1
            else:
                self._misses += 1

    def snapshot(self, *, reset: bool = False) -> MetricsSnapshot:
        """Current figures; ``reset=True`` starts a new window (what the agent publishes)."""
        with self._lock:
            self._drain()
            h = self._hist
            ms = to_ms

            snap = MetricsSnapshot(
                calls=self._calls,
                errors=self._errors,
                cache_hits=self._hits,
                cache_misses=self._misses,
                p50_ms=ms(h.percentile(50)),
                p95_ms=ms(h.percentile(95)),
                p99_ms=ms(h.percentile(99)),
                mean_ms=ms(h.sum_s / h.total) if h.total else None,
                max_ms=ms(h.max_s) if h.total else None,
            )
            if reset:
                self._reset()
            return snap
