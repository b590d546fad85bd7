"""Executors: how a cell's process is started (host, board-limited host, qemu aarch64).

Each cell runs ``edgefleet.hardware.hil._cell`` in a child process and reads back its JSON;
a crash, a timeout or a kill by the memory cap is turned into a failed/errored check here,
never into a pass. Fleet cells are collected by :mod:`._fleet`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.hardware.profiles import get_profile

from ._emulator import EmulatorRoot
from ._matrix_spec import MatrixSpec, host_arch
from ._results import CellResult, CheckResult

__all__ = [
    "EMULATED_NOT_RUN",
    "CellPlan",
    "emulated_not_run",
    "package_bytes",
    "plan_cells",
    "run_process_cell",
]

log = logging.getLogger(__name__)

# Runtimes never installed in the emulated root, and why. Whether the others run is measured
# when the root is prepared (emulator.json "not_run" says why one does not).
EMULATED_NOT_RUN = {
    # Measured under qemu 10.0: PyPI's only aarch64 torch 2.13 wheel is the CUDA build (427 MB
    # plus nvidia-*-cu13 wheels); without them `import torch` fails (libcublasLt not found).
    "executorch": "executorch's Python runtime needs torch, and PyPI's aarch64 torch 2.13 is "
    "the CUDA build (it fails at import without the nvidia-* wheels, measured under qemu 10); "
    "run executorch cells on a real board (fleet executor)",
    "torch": "torch is not installed in the emulated root (PyPI's aarch64 torch 2.13 is the "
    "CUDA build, measured)",
}


def emulated_not_run(runtime: str, emulator: EmulatorRoot) -> str:
    """Why ``runtime`` cannot run under this prepared emulator ("" if it runs)."""
    if runtime in EMULATED_NOT_RUN:
        return EMULATED_NOT_RUN[runtime]
    info = emulator.info()
    if runtime in info.get("runtimes", {}):
        return ""
    why = info.get("not_run", {}).get(runtime) or f"{runtime} is not installed in the root"
    return f"{why}; run {runtime} cells on a real aarch64 board (fleet executor)"


@dataclass(frozen=True)
class CellPlan:
    target: str
    executor: str
    runtime: str
    package: Path
    budgets: dict[str, float]
    checks: tuple[str, ...]

    def result(self, **kw: Any) -> CellResult:
        return CellResult(self.target, self.executor, self.runtime, self.package.name, **kw)


def plan_cells(spec: MatrixSpec) -> list[CellPlan]:
    cells = []
    for target in spec.targets:
        for executor in spec.executors_for(target):
            if executor == "fleet":
                continue  # fleet cells are per device, found at run time (see _fleet)
            for runtime in spec.runtimes_for(target):
                for package in spec.packages:
                    cells.append(
                        CellPlan(
                            target,
                            executor,
                            runtime,
                            Path(package),
                            spec.budgets_for(target),
                            tuple(spec.checks),
                        )  # fmt: skip
                    )
    return cells


def package_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def size_check(plan: CellPlan) -> CheckResult:
    size, budget = package_bytes(plan.package), int(plan.budgets["max_package_bytes"])
    ok = size <= budget
    return CheckResult(
        "size", "passed" if ok else "failed",
        f"package {size} bytes {'<=' if ok else '>'} budget {budget} bytes",
        {"package_bytes": size, "size_budget_bytes": budget},
    )  # fmt: skip


@functools.lru_cache(maxsize=64)
def _artifact_formats(package: Path, mtime: float) -> frozenset[str] | None:
    """Formats of the package's artifacts, read from its manifest; None if unreadable (the
    cell itself then reports why loading failed)."""
    from edgefleet.sdk import EdgefleetError, TrustPolicy, open_package

    try:
        with open_package(package, TrustPolicy.workstation()) as pkg:
            return frozenset(a.format for a in pkg.manifest.artifacts)
    except (EdgefleetError, OSError) as e:
        log.debug("cannot read %s for the format pre-check: %s", package, e)
        return None


def not_run_reason(plan: CellPlan, emulator: EmulatorRoot | None) -> str:
    from edgefleet.sdk.backends import get_backend

    profile = get_profile(plan.target)
    if plan.runtime not in profile.backends:
        return (
            f"{plan.target} does not list runtime {plan.runtime} (it has {list(profile.backends)})"
        )
    if plan.executor == "local" and profile.arch != host_arch():
        return (f"host is {host_arch()}, target is {profile.arch}: "
                "use the limited or emulated executor")  # fmt: skip
    if plan.executor == "emulated":
        if profile.arch != "aarch64":
            return "the emulated executor runs aarch64 targets only"
        if emulator is None:
            return ("emulator not prepared: run `edgefleet hil prepare-emulator --cache DIR` "
                    "and pass --emulator-cache DIR")  # fmt: skip
        why = emulated_not_run(plan.runtime, emulator)
        if why:
            return why
    formats = _artifact_formats(plan.package.resolve(), plan.package.stat().st_mtime)
    from edgefleet.sdk._gen_load import generation_formats

    wanted = (*get_backend(plan.runtime).formats, *generation_formats(plan.runtime))
    if formats is not None and not formats & set(wanted):
        return (f"package has no artifact for {plan.runtime} (needs {list(wanted)}, "
                f"has {sorted(formats)})")  # fmt: skip
    return ""


def _cell_spec(plan: CellPlan, spec: MatrixSpec) -> dict[str, Any]:
    profile = get_profile(plan.target)
    out: dict[str, Any] = {
        "package": str(plan.package.resolve()),
        "runtime": plan.runtime,
        "target": plan.target,
        "executor": plan.executor,
        "budgets": plan.budgets,
        "checks": [c for c in plan.checks if c != "size"],
        "latency_runs": spec.latency_runs,
        "trusted_keys": [str(Path(k).resolve()) for k in spec.trusted_keys],
    }
    avail = sorted(os.sched_getaffinity(0))
    if plan.executor == "limited":
        n = min(profile.cores, len(avail))
        out["cpus"] = avail[:n]
        out["memory_cap_mb"] = int(plan.budgets["peak_rss_mb"])
        short = f", host has only {len(avail)}" if n < profile.cores else ""
        arch = "" if profile.arch == host_arch() else f"host {host_arch()} CPU, indicative only; "
        out["timing_note"] = f"{arch}pinned to {n} of the board's {profile.cores} cores{short}"
    elif plan.executor == "local":
        out["timing_note"] = f"host with {len(avail)} cores"
    elif plan.executor == "emulated":
        out["timing_meaningful"] = False
        out["timing_note"] = "qemu-user emulation: timing is not the board's"
        out["memory_meaningful"] = False
        out["memory_note"] = "qemu-user's own translation memory inflates RSS"
    return out


def _child_env(plan: CellPlan, cell: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if plan.executor == "limited":
        n = str(len(cell["cpus"]))
        # glibc reserves 64 MB of address space per malloc arena; under an address-space
        # cap that would count against the model, so keep the arenas few.
        env.update(MALLOC_ARENA_MAX="2", OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n)
    return env


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_process_cell(
    plan: CellPlan, spec: MatrixSpec, workdir: Path, emulator: EmulatorRoot | None = None
) -> CellResult:
    """Run one cell in a child process (host python, or qemu for ``emulated``)."""
    t0 = time.monotonic()
    reason = not_run_reason(plan, emulator)
    if reason:
        return plan.result(not_run_reason=reason)
    workdir.mkdir(parents=True, exist_ok=True)
    cell = _cell_spec(plan, spec)
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(cell, indent=2))
    module = ["-m", "edgefleet.hardware.hil._cell", str(spec_path)]
    if plan.executor == "emulated":
        assert emulator is not None
        argv, env, cwd = emulator.command(*module), emulator.env(), emulator.cache
        timeout = spec.timeout_s * 4  # qemu-user is roughly 5-20x slower than native
    else:
        argv, env, cwd = [sys.executable, *module], _child_env(plan, cell), workdir
        timeout = spec.timeout_s
    log.debug("cell %s/%s/%s: %s", plan.target, plan.executor, plan.runtime, argv)
    with open(workdir / "stdout.log", "w+") as out, open(workdir / "stderr.log", "w+") as err:
        # Own session: a timeout kills the child and any helpers it started.
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd,
                                start_new_session=True)  # fmt: skip
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        out.seek(0)
        stdout = out.read()
        err.seek(0)
        stderr_tail = err.read()[-800:]
    result = _parse(plan, cell, code, stdout, stderr_tail, timeout)
    if "size" in plan.checks and not result.not_run_reason:
        result.checks.append(size_check(plan))
    result.duration_s = round(time.monotonic() - t0, 2)
    return result


def _parse(plan, cell, code, stdout: str, stderr_tail: str, timeout: float) -> CellResult:
    lines = [ln for ln in stdout.strip().splitlines() if ln.startswith("{")]
    if code == 0 and lines:
        try:
            data = json.loads(lines[-1])
            return plan.result(
                checks=[CheckResult.from_dict(c) for c in data.get("checks", [])],
                not_run_reason=data.get("not_run_reason", ""),
                environment=data.get("environment", {}),
            )
        except (ValueError, KeyError, TypeError) as e:
            why = f"unreadable cell output ({e})"
    elif code is None:
        why = f"timed out after {timeout:.0f} s"
    elif code < 0:
        why = f"crashed with {_signal_name(code)}"
    else:
        why = f"exited with status {code}"
    checks = [CheckResult("load", "error", f"cell process {why}: {stderr_tail.strip()[-400:]}")]
    cap = cell.get("memory_cap_mb")
    if cap and code is not None and code < 0 and "memory" in plan.checks:
        # Killed or aborted under the address-space cap: the allocation failure is the cause.
        checks.append(CheckResult("memory", "failed", f"{why} under the {cap} MB memory cap",
                                  {"rss_budget_mb": cap}))  # fmt: skip
    return plan.result(checks=checks)
