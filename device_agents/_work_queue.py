"""One job at a time per agent on a (possibly shared) executor: deployments, rollbacks and
benchmarks run here, off the MQTT thread, in the order they came."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

__all__ = ["WorkQueue"]

log = logging.getLogger(__name__)


class WorkQueue:
    """``after_each`` runs after every job, failed or not (the agent publishes its state)."""

    def __init__(self, executor: Executor, name: str, after_each: Callable[[], None]) -> None:
        self.executor = executor
        self.name = name
        self.after_each = after_each
        self._work: deque = deque()
        self._busy = self._halt = False
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._busy

    def submit(self, fn, *args) -> None:
        with self._lock:
            self._work.append((fn, args))
            if self._busy:
                return
            self._busy = True
        self.executor.submit(self._drain)

    def halt(self) -> None:
        """Finish the running job only; the waiting ones are persisted by their owners."""
        self._halt = True

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._work or self._halt:
                    self._busy = False
                    return
                fn, args = self._work.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("%s: background job failed", self.name)
            finally:
                self.after_each()
