"""One jittered exponential backoff for every retry and reconnect (agent and fleet).

Without jitter every agent of a fleet retries on the same schedule after a broker restart,
and the broker sees the whole fleet reconnect at the same instants, again and again.
Each delay here is drawn from ``[ceiling * (1 - jitter), ceiling]``, the ceiling doubling
from ``min_s`` up to ``max_s``: retries spread out while the growth stays bounded.
"""

from __future__ import annotations

import random

from ._errors import ConfigError

__all__ = ["Backoff"]

_MAX_EXPONENT = 64  # factor ** attempts beyond this would only overflow; max_s caps it anyway


class Backoff:
    """``next()`` gives the delay before the next attempt; ``reset()`` after a success.

    >>> b = Backoff(0.5, 30)
    >>> 0.25 <= b.next() <= 0.5 and 0.5 <= b.next() <= 1.0
    True
    """

    def __init__(
        self,
        min_s: float = 0.5,
        max_s: float = 30.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < min_s <= max_s:
            raise ConfigError(f"backoff: expected 0 < min_s <= max_s, got {min_s}, {max_s}")
        if factor < 1 or not 0 <= jitter <= 1:
            raise ConfigError(
                f"backoff: expected factor >= 1 and 0 <= jitter <= 1, got {factor}, {jitter}"
            )
        self.min_s, self.max_s, self.factor, self.jitter = min_s, max_s, factor, jitter
        self._rng = rng or random.Random()
        self.attempts = 0

    @property
    def ceiling(self) -> float:
        """The largest delay the next ``next()`` can return."""
        return min(self.max_s, self.min_s * self.factor ** min(self.attempts, _MAX_EXPONENT))

    def next(self) -> float:
        ceiling = self.ceiling
        self.attempts += 1
        return ceiling * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self.attempts = 0
