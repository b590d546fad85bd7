"""Run a whole matrix: plan the cells, run each with its executor, write the reports."""

from __future__ import annotations

import logging
import os
import platform
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ._emulator import find_emulator
from ._executors import CellPlan, plan_cells, run_process_cell
from ._matrix_spec import MatrixSpec
from ._results import CellResult, MatrixResult

__all__ = ["Progress", "run_matrix"]

log = logging.getLogger(__name__)

# progress(plan, index, total, result): result is None when the cell starts.
Progress = Callable[[CellPlan, int, int, CellResult | None], None]


def _slug(plan: CellPlan) -> str:
    raw = f"{plan.target}--{plan.executor}--{plan.runtime}--{plan.package.name}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)


def run_matrix(spec: MatrixSpec, out: str | Path, progress: Progress | None = None) -> MatrixResult:
    """Run every cell of ``spec`` (one at a time: cells measure latency and RSS, so they
    must not compete for the cores) and write the reports into ``out``."""
    from ._report_files import write_reports

    # Absolute: each cell's process runs in its own working directory.
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    spec.validate()
    emulator = find_emulator(spec.emulator_cache)
    if spec.emulator_cache and emulator is None:
        log.warning("no prepared emulator in %s; emulated cells will not run", spec.emulator_cache)
    plans = plan_cells(spec)
    fleet_targets = [t for t in spec.targets if "fleet" in spec.executors_for(t)]
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    results: list[CellResult] = []
    for i, plan in enumerate(plans):
        if progress:
            progress(plan, i, len(plans), None)
        res = run_process_cell(plan, spec, out / "cells" / _slug(plan), emulator)
        log.info("cell %s: %s", res.id, res.status)
        results.append(res)
        if progress:
            progress(plan, i, len(plans), res)
    if fleet_targets:
        from ._fleet import run_fleet_cells

        results += run_fleet_cells(spec, fleet_targets)
    host = {
        "machine": platform.machine(),
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "emulator": emulator.info() if emulator else None,
        # Every runtime measured to run under the emulator used (empty: none prepared).
        "emulated_runtimes": emulator.info().get("emulated_runtimes", []) if emulator else [],
    }
    result = MatrixResult(results, started, round(time.monotonic() - t0, 2), host)
    write_reports(result, out)
    return result
