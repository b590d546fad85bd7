"""What a matrix run produces: one result per check, per cell, and for the whole matrix.

Plain dataclasses that round-trip through JSON, because a cell's result crosses a process
boundary (and, for emulated or fleet cells, an architecture or a network).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "CHECKS",
    "CellResult",
    "CheckResult",
    "MatrixResult",
    "Status",
    "cell_status",
]

# The checks of one cell, in report order. "size" (package bytes vs the target's budget)
# is checked by the parent; the others run inside the cell's own process.
CHECKS = ("load", "parity", "latency", "memory", "cache", "size")
Status = Literal["passed", "failed", "error", "not run"]


@dataclass
class CheckResult:
    name: str
    status: Status
    detail: str = ""
    # Figures shown in the report (latency_p95_ms, peak_rss_mb, max_abs_error, ...).
    figures: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckResult:
        return cls(d["name"], d["status"], d.get("detail", ""), dict(d.get("figures", {})))


@dataclass
class CellResult:
    target: str
    executor: str
    runtime: str
    package: str
    checks: list[CheckResult] = field(default_factory=list)
    # Set when the whole cell could not run (runtime missing for the arch, no artifact...).
    not_run_reason: str = ""
    duration_s: float = 0.0
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.target}/{self.executor}/{self.runtime}/{self.package}"

    @property
    def status(self) -> Status:
        return cell_status(self)

    def check(self, name: str) -> CheckResult | None:
        return next((c for c in self.checks if c.name == name), None)

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for c in self.checks:
            out.update(c.figures)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["id"], d["status"] = self.id, self.status
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellResult:
        return cls(
            target=d["target"],
            executor=d["executor"],
            runtime=d["runtime"],
            package=d["package"],
            checks=[CheckResult.from_dict(c) for c in d.get("checks", [])],
            not_run_reason=d.get("not_run_reason", ""),
            duration_s=float(d.get("duration_s", 0.0)),
            environment=dict(d.get("environment", {})),
        )


def cell_status(cell: CellResult) -> Status:
    """A cell passes only if it ran, loaded, and no check failed or errored."""
    if cell.not_run_reason:
        return "not run"
    states = {c.status for c in cell.checks}
    if "error" in states:
        return "error"
    if "failed" in states:
        return "failed"
    load = cell.check("load")
    if load is None or load.status != "passed":
        return "not run"
    return "passed"


@dataclass
class MatrixResult:
    cells: list[CellResult]
    started_at: str = ""
    duration_s: float = 0.0
    host: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "error": 0, "not run": 0}
        for c in self.cells:
            out[c.status] += 1
        return out

    @property
    def ok(self) -> bool:
        """No cell failed or errored (not-run cells are reported, not hidden, but allowed)."""
        counts = self.counts()
        return counts["failed"] == 0 and counts["error"] == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "host": self.host,
            "counts": self.counts(),
            "cells": [c.to_dict() for c in self.cells],
        }
