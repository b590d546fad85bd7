"""Errors of the HIL matrix runner."""

from __future__ import annotations

from edgefleet.sdk import ConfigError, EdgefleetError

__all__ = ["EmulatorError", "HilError", "MatrixError"]


class HilError(EdgefleetError):
    """The matrix could not be run at all (as opposed to a cell failing its checks)."""


class MatrixError(HilError, ConfigError):
    """A matrix file or a command-line selection is invalid."""


class EmulatorError(HilError):
    """The aarch64 emulator root could not be prepared or is missing."""
