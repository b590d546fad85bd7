"""The rollout engine's clock: one thread that ticks every rollout, on the replica that
holds the engine lease, every ``tick_interval_s`` or as soon as something is woken."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.exc import OperationalError

from ._lease import LeaseKeeper

__all__ = ["RolloutTicker"]

log = logging.getLogger(__name__)


class RolloutTicker:
    def __init__(self, tick: Callable[[], None], lease: LeaseKeeper, interval_s: float) -> None:
        self.tick = tick
        self.lease = lease
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Tick now (a device made progress) instead of at the next interval."""
        self._wake.set()

    def start(self) -> RolloutTicker:
        self._thread = threading.Thread(target=self._loop, name="fleet-tick", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                leader = self.lease.acquire()
            except OperationalError as e:  # database busy or away: not the leader this tick
                log.warning("engine lease: %s", e.orig)
                continue
            if leader:
                self.tick()
        try:
            self.lease.release()  # so another replica takes over at once
        except OperationalError as e:
            log.warning("engine lease not released (expires by itself): %s", e.orig)
