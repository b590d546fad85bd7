"""Errors of the fleet service; each maps to one HTTP status in the API layer."""

from __future__ import annotations

from typing import TypeVar

from edgefleet.sdk import EdgefleetError

__all__ = [
    "FleetError",
    "AuthError",
    "ForbiddenError",
    "NotFoundError",
    "ConflictError",
    "BadRequestError",
    "InvalidTransitionError",
    "PayloadTooLargeError",
    "StorageError",
    "found",
]

T = TypeVar("T")


class FleetError(EdgefleetError):
    """Root of the fleet's errors; the API answers ``{"detail": message}`` with its status
    (``status_code``, given by a subclass as ``class XError(FleetError, status=...)``)."""

    status_code = 400

    def __init_subclass__(cls, status: int | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status_code = status


class BadRequestError(FleetError, status=400):
    """The request is well formed but its content is refused (unknown device ids, a bad package)."""


class AuthError(FleetError, status=401):
    """No credential, or one that is malformed, unknown, revoked or expired."""


class ForbiddenError(FleetError, status=403):
    """A valid token whose role does not allow the action."""


class NotFoundError(FleetError, status=404):
    """The named device, model version, rollout or token does not exist."""


class ConflictError(FleetError, status=409):
    """The request contradicts what is stored (a version uploaded twice, a decommissioned id)."""


class PayloadTooLargeError(FleetError, status=413):
    """An upload over the configured size limit."""


class InvalidTransitionError(ConflictError):
    """A rollout action is not allowed in the rollout's current state."""


class StorageError(FleetError, status=503):
    """The artifact store is misconfigured or unreachable: not the client's fault."""


def found(row: T | None, message: str) -> T:
    """``row``, or NotFoundError(message) when the lookup found nothing."""
    if row is None:
        raise NotFoundError(message)
    return row
