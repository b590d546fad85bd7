"""Per-client limit on failed authentications (API tokens, the metrics token).

Token secrets are 160-bit random, so guessing is hopeless; what the limit stops is a client
burning the fleet's CPU on Argon2 checks (each failed check costs tens of milliseconds) and
probing which token ids exist. A client (its IP address) that fails ``max_failures`` times
within ``window_s`` gets 429 with ``Retry-After`` for ``lockout_s``, without any token
check. Successes do not reset the count: a valid token must not launder a stream of guesses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from ._errors import FleetError

__all__ = ["AuthFailureLimiter", "TooManyRequestsError"]

log = logging.getLogger(__name__)


class TooManyRequestsError(FleetError, status=429):
    """Too many failed authentications from one client; ``Retry-After`` says when to retry."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, round(retry_after_s)))}


class AuthFailureLimiter:
    """Locks a client out for ``lockout_s`` after ``max_failures`` failed authentications
    within ``window_s``; memory stays bounded by ``max_clients`` under a flood."""

    def __init__(
        self,
        max_failures: int = 20,
        window_s: float = 60.0,
        lockout_s: float = 60.0,
        max_clients: int = 100_000,
    ) -> None:
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self._max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}  # client -> locked until (monotonic)
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Raise TooManyRequestsError while ``client`` is locked out."""
        with self._lock:
            until = self._locked.get(client)
            if until is None:
                return
            left = until - time.monotonic()
            if left <= 0:
                del self._locked[client]
                return
        raise TooManyRequestsError(
            f"too many failed authentications from {client}; retry in {left:.0f} s", left
        )

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) >= self._max_clients:  # bounded memory under a flood
                self._failures.clear()
            times = self._failures.setdefault(client, deque())
            times.append(now)
            while times and times[0] < now - self.window_s:
                times.popleft()
            if len(times) >= self.max_failures:
                if len(self._locked) >= self._max_clients:
                    self._locked = {c: t for c, t in self._locked.items() if t > now}
                self._locked[client] = now + self.lockout_s
                del self._failures[client]
                log.warning("client %s locked out for %.0f s after %d failed authentications",
                            client, self.lockout_s, self.max_failures)  # fmt: skip
