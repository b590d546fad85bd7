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
    """Root of the fleet's errors; the API answers ``{"detail": message}`` with its status."""

    status_code = 400


class BadRequestError(FleetError):
    """The request is well formed but its content is refused (unknown device ids, a bad package)."""

    status_code = 400


class AuthError(FleetError):
    """No credential, or one that is malformed, unknown, revoked or expired."""

    status_code = 401


class ForbiddenError(FleetError):
    """A valid token whose role does not allow the action."""

    status_code = 403


class NotFoundError(FleetError):
    """The named device, model version, rollout or token does not exist."""

    status_code = 404


class ConflictError(FleetError):
    """The request contradicts what is stored (a version uploaded twice, a decommissioned id)."""

    status_code = 409


class PayloadTooLargeError(FleetError):
    """An upload over the configured size limit."""

    status_code = 413


class InvalidTransitionError(ConflictError):
    """A rollout action is not allowed in the rollout's current state."""


class StorageError(FleetError):
    """The artifact store is misconfigured or unreachable: not the client's fault."""

    status_code = 503


def found(row: T | None, message: str) -> T:
    """``row``, or NotFoundError(message) when the lookup found nothing."""
    if row is None:
        raise NotFoundError(message)
    return row
