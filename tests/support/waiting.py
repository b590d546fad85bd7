"""The one polling helper of the tests: wait for a condition, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(
    pred: Callable[[], T], timeout: float = 20.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll ``pred`` until it returns something truthy and return that; on timeout an
    AssertionError naming ``what`` (so ``assert wait_until(...)`` reads well too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(interval)
    got = pred()
    if got:
        return got
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
