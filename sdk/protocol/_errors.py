"""Errors of the wire protocol."""

from __future__ import annotations

from .._errors import EdgefleetError

__all__ = ["ProtocolError", "CommandRejected"]


class ProtocolError(EdgefleetError, ValueError):
    """A topic or payload is malformed, oversized, of an unknown schema version, or does not
    belong on the topic it came from."""


class CommandRejected(EdgefleetError):
    """A command failed verification. ``reason`` is a short machine-readable code:
    ``unsigned``, ``unknown_key``, ``bad_signature``, ``wrong_device``, ``expired``,
    ``not_yet_valid``, ``lifetime_too_long``, ``replayed``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
