"""Dynamic micro-batching for the local endpoint (like Triton's dynamic batcher).

Concurrent requests for a model whose inputs and outputs have a dynamic batch dim wait at
most ``max_delay_us`` after the first of them arrives, or until ``max_batch`` rows are
queued, and run as one batch; each caller gets its own rows back. Requests whose
non-batch shapes or dtypes differ are never mixed. If a batch fails, its requests are run
one by one, so one bad request costs only its own answer. The batch is one copy of the
requests' rows (one contiguous input for one runtime call); each caller gets views of the
batch's outputs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgefleet.sdk import ConfigError, EdgefleetError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["BatchingOptions", "MicroBatcher", "Overloaded", "batchable"]

log = logging.getLogger(__name__)


class Overloaded(EdgefleetError):
    """The endpoint sheds this request (queue full or resource pressure): retry later."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class BatchingOptions:
    # Rows per batch at most; 0 or 1 turns batching off.
    max_batch: int = 16
    # How long the first request of a batch waits for company (Triton:
    # max_queue_delay_microseconds).
    max_delay_us: int = 2000
    # Requests waiting at most; beyond it the endpoint answers 429 instead of queueing.
    max_queue: int = 256
    # Batches running at once, each one runtime call. 1 suits a runtime that spreads one
    # call over the cores (ONNX Runtime's default intra-op threads); with one worker per
    # core, give each call one intra-op thread: no thread-pool handoffs inside a call, and
    # a core another process takes stalls one batch instead of every call's helpers.
    workers: int = 1

    def __post_init__(self) -> None:
        if self.max_batch < 0 or self.max_delay_us < 0 or self.max_queue < 1 or self.workers < 1:
            raise ConfigError(
                "batching: expected max_batch >= 0, max_delay_us >= 0, max_queue >= 1 and "
                f"workers >= 1, got {self.max_batch}, {self.max_delay_us}, {self.max_queue}, "
                f"{self.workers}"
            )


def batchable(model: Any) -> bool:
    """Every input and output has a symbolic first (batch) dim and the artifact is not
    exported for a fixed batch."""
    info = model.info
    if getattr(info.artifact, "fixed_batch", None):
        return False
    specs = list(info.inputs) + list(info.outputs)
    return bool(specs) and all(s.shape and isinstance(s.shape[0], str) for s in specs)


@dataclass
class _Request:
    model: Any
    feed: dict[str, np.ndarray]
    rows: int
    key: tuple
    arrived: float
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, np.ndarray] | None = None
    error: BaseException | None = None


def _key(model: Any, feed: dict[str, np.ndarray]) -> tuple[tuple, int] | None:
    """(compatibility key, rows), or None when the feed has no common batch dim."""
    rows = {v.shape[0] for v in feed.values() if v.ndim >= 1}
    if len(rows) != 1 or any(v.ndim == 0 for v in feed.values()):
        return None
    sig = tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in feed.items()))
    return (id(model), sig), rows.pop()


class MicroBatcher:
    """``options.workers`` threads form and run the batches; ``submit`` blocks for its
    answer."""

    def __init__(self, options: BatchingOptions = BatchingOptions()) -> None:
        self.options = options
        self._cond = threading.Condition()
        self._queue: deque[_Request] = deque()
        self._stopped = False
        self._forming = 0  # workers in _take: rows queued together are shared among them
        self.batches = self.rows = self.fallbacks = 0
        self._threads = [
            threading.Thread(target=self._loop, name=f"edgefleet-batcher-{i}", daemon=True)
            for i in range(options.workers)
        ]
        for t in self._threads:
            t.start()

    @property
    def enabled(self) -> bool:
        return self.options.max_batch > 1

    def submit(self, model: Any, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        found = _key(model, feed) if self.enabled and batchable(model) else None
        if found is None or found[1] >= self.options.max_batch:
            return model.predict(feed)
        key, rows = found
        req = _Request(model, feed, rows, key, time.monotonic())
        with self._cond:
            if self._stopped:
                raise EdgefleetError("the batcher is stopped")
            if len(self._queue) >= self.options.max_queue:
                raise Overloaded(f"{len(self._queue)} requests already queued", 0.1)
            self._queue.append(req)
            self._cond.notify()
        req.done.wait()
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def stats(self) -> dict[str, float]:
        return {
            "batches": self.batches,
            "batched_rows": self.rows,
            "mean_batch": round(self.rows / self.batches, 2) if self.batches else 0.0,
            "batch_fallbacks": self.fallbacks,
        }

    def _take(self) -> list[_Request] | None:
        with self._cond:
            self._forming += 1
            try:
                return self._form()
            finally:
                self._forming -= 1

    def _form(self) -> list[_Request] | None:
        """Wait for a batch: the first request's deadline or max_batch rows. Rows that
        came together are split evenly among the idle workers (16 queued, 2 idle: 8
        each) rather than one taking all while the other's core idles."""
        opts = self.options
        while True:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if not self._queue:
                return None
            first = self._queue[0]
            deadline = first.arrived + opts.max_delay_us / 1e6
            while not self._stopped and self._queue and self._queue[0] is first:
                rows = sum(r.rows for r in self._queue if r.key == first.key)
                left = deadline - time.monotonic()
                if rows >= opts.max_batch or left <= 0:
                    break
                self._cond.wait(left)
            if self._queue and self._queue[0] is first:
                break  # else another worker took this batch while we waited: start over
        same = sum(r.rows for r in self._queue if r.key == first.key)
        cap = min(opts.max_batch, -(-same // self._forming))
        batch, rows, keep = [], 0, deque()
        for r in self._queue:
            if r.key == first.key and (not batch or rows + r.rows <= cap):
                batch.append(r)
                rows += r.rows
            else:
                keep.append(r)
        self._queue = keep
        if keep:
            self._cond.notify()  # what is left may make a batch for an idle worker
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        import numpy as np  # lazily: the agent starts without numpy

        model = batch[0].model
        if len(batch) > 1:
            try:
                feed = {k: np.concatenate([r.feed[k] for r in batch]) for k in batch[0].feed}
                out = model.predict(feed)
                total = sum(r.rows for r in batch)
                if all(v.ndim >= 1 and v.shape[0] == total for v in out.values()):
                    start = 0
                    for r in batch:  # views of the batch's outputs, no copies
                        r.result = {k: v[start : start + r.rows] for k, v in out.items()}
                        start += r.rows
                        r.done.set()
                    self._count(1, total)
                    return
                log.warning("batched outputs of %s lack the batch dim; running one by one",
                            model.info.name)  # fmt: skip
            except Exception as e:
                log.debug("batch of %d failed (%s); running one by one", len(batch), e)
            self._count(0, 0, fallback=True)
        for r in batch:  # one by one: each request gets its own answer or error
            try:
                r.result = model.predict(r.feed)
            except BaseException as e:
                r.error = e
            self._count(1, r.rows)
            r.done.set()

    def _count(self, batches: int, rows: int, fallback: bool = False) -> None:
        with self._cond:
            self.batches += batches
            self.rows += rows
            self.fallbacks += fallback

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=5)
