"""Errors of the wire protocol."""

from __future__ import annotations

from .._errors import EdgefleetError

__all__ = ["ProtocolError", "CommandRejected", "DuplicateCommand"]


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


class DuplicateCommand(CommandRejected):
    """The exact command already accepted (same nonce, same signed bytes) arrived again, e.g.
    a QoS 1 redelivery after a reconnect. A receiver that knows this class acknowledges it
    again without re-executing it; one that does not sees a ``replayed`` refusal, as before."""

    def __init__(self, message: str) -> None:
        super().__init__("replayed", message)
