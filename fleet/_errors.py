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
    status_code = 400


class BadRequestError(FleetError):
    status_code = 400


class AuthError(FleetError):
    status_code = 401


class ForbiddenError(FleetError):
    status_code = 403


class NotFoundError(FleetError):
    status_code = 404


class ConflictError(FleetError):
    status_code = 409


class PayloadTooLargeError(FleetError):
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
