"""The one error hierarchy of edgefleet. Every error we raise derives from EdgefleetError."""

from __future__ import annotations

__all__ = [
    "EdgefleetError",
    "PackageError",
    "SignatureError",
    "InputError",
    "BackendUnavailableError",
    "BackendError",
    "ConfigError",
]


class EdgefleetError(Exception):
    """Root of every error raised by edgefleet."""


class PackageError(EdgefleetError):
    """A model package is missing, malformed, corrupt or unsafe."""


class SignatureError(PackageError):
    """A signature is missing, invalid, or made by a key that is not trusted."""


class InputError(EdgefleetError, ValueError):
    """Inputs given to a model do not match its specs (name, dtype, shape, values)."""


class BackendUnavailableError(EdgefleetError):
    """The requested runtime is not installed or cannot run the package's artifacts."""


class BackendError(EdgefleetError):
    """A runtime failed while loading or running a model."""


class ConfigError(EdgefleetError, ValueError):
    """A configuration value (options, recipe, settings) is invalid."""
