"""The ``with`` protocol for objects that hold resources until ``close()``."""

from __future__ import annotations

from typing import Self

__all__ = ["Closing"]


class Closing:
    """``with obj:`` gives ``obj`` and calls ``obj.close()`` on the way out, error or not.
    Subclasses define ``close()`` (idempotent)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
