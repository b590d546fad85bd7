"""Store a batch so that one bad item costs only itself.

Batches (telemetry rows, device reports) mix many devices. Validation refuses what it can
see is unusable, but a store may still refuse an item (a constraint, an encoding, a value
the database cannot hold): then the batch is split in halves until the failing items stand
alone; those are counted (``edgefleet_fleet_poison_dropped_total{path}``), logged and
dropped, and every other item is stored. A database that is busy or away is not the data's
fault: the whole batch is retried, then given up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy.exc import OperationalError

from ._prometheus import Metrics

__all__ = ["POISON_METRIC", "write_isolating"]

log = logging.getLogger(__name__)

POISON_METRIC = "edgefleet_fleet_poison_dropped_total"

T = TypeVar("T")

_last_warn: dict[str, float] = {}


def _retrying(write: Callable[[Sequence[T]], None], items: Sequence[T], attempts: int) -> None:
    for attempt in range(1, attempts + 1):
        try:
            write(items)
            return
        except OperationalError:
            if attempt == attempts:
                raise
            log.warning("writing %d items failed (attempt %d); retrying", len(items), attempt)
            time.sleep(0.2 * attempt)


def write_isolating(
    write: Callable[[Sequence[T]], None],
    items: Sequence[T],
    *,
    metrics: Metrics,
    path: str,
    describe: Callable[[T], str] = repr,
    attempts: int = 3,
) -> int:
    """``write(items)`` (all or nothing, e.g. one transaction); returns how many items were
    stored. An :class:`OperationalError` is retried ``attempts`` times and then raised: the
    caller decides what losing a batch to an outage means."""
    if not items:
        return 0
    try:
        _retrying(write, items, attempts)
        return len(items)
    except OperationalError:
        raise
    except Exception as e:
        if len(items) == 1:
            _drop(items[0], e, metrics, path, describe)
            return 0
        error = e
    half = len(items) // 2
    log.debug("a batch of %d failed (%s); splitting it", len(items), error)
    return sum(
        write_isolating(
            write, part, metrics=metrics, path=path, describe=describe, attempts=attempts
        )
        for part in (items[:half], items[half:])
    )


def _drop(item: object, error: Exception, metrics: Metrics, path: str, describe) -> None:
    metrics.inc(POISON_METRIC, path=path)
    now = time.monotonic()
    if now - _last_warn.get(path, 0.0) > 5.0:  # a hostile device must not flood the log
        _last_warn[path] = now
        log.warning(
            "dropped one %s item the store refused (%s: %s): %s",
            path,
            type(error).__name__,
            str(error)[:200],
            describe(item)[:200],
            exc_info=error,  # a bug rather than bad data deserves its traceback
        )
