"""The error raised for a bad profile file or an unknown target."""

from __future__ import annotations

__all__ = ["ProfileError"]


class ProfileError(ValueError):
    """A profile file is invalid, or a profile name is unknown.

    This package is the bottom layer (it imports nothing of ours), so it cannot derive from
    ``edgefleet.sdk.EdgefleetError``; the SDK catches it and re-raises as its ConfigError.
    """
