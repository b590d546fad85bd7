"""A bounded pool of runtime sessions for one model, so concurrent ``predict`` calls on a
runtime that serialises each session (a LiteRT interpreter, an ExecuTorch method) run in
parallel up to ``size`` sessions instead of queueing on one lock.

Sessions are created lazily (the first one is the model's own), at most ``size``; a caller
that finds all of them busy waits for one to come back. Each session is used by one thread
at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._errors import ConfigError

__all__ = ["SessionPool"]

log = logging.getLogger(__name__)


class SessionPool:
    def __init__(self, first: Any, factory: Callable[[], Any], size: int) -> None:
        if size < 1:
            raise ConfigError(f"sessions: expected >= 1, got {size}")
        self.size = size
        self._factory = factory
        self._idle = [first]
        self._all = [first]
        self._creating = 0
        self._cond = threading.Condition()
        self.waits = 0  # calls that found every session busy

    @property
    def created(self) -> int:
        with self._cond:
            return len(self._all)

    def _take(self) -> Any:
        with self._cond:
            while True:
                if self._idle:
                    return self._idle.pop()
                if len(self._all) + self._creating < self.size:
                    self._creating += 1
                    break
                self.waits += 1
                self._cond.wait()
        try:
            session = self._factory()  # outside the lock: loading takes a while
        except BaseException:
            with self._cond:
                self._creating -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._creating -= 1
            self._all.append(session)
        log.debug("session pool grew to %d", len(self._all))
        return session

    @contextmanager
    def acquire(self) -> Iterator[Any]:
        session = self._take()
        try:
            yield session
        finally:
            with self._cond:
                self._idle.append(session)
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            sessions, self._all, self._idle = self._all, [], []
        for s in sessions:
            s.close()
