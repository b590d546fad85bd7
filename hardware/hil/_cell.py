"""One matrix cell, run in its own process: ``python -m edgefleet.hardware.hil._cell SPEC``.

It loads the package on one runtime with the target's profile, runs the checks and prints
one JSON object as its last line of stdout. Running in a child keeps the peak RSS the cell's
own and contains a crashing runtime. It must also run under the emulated aarch64 python,
so it imports only the SDK, numpy and the standard library.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "run_cell"]

log = logging.getLogger(__name__)

_MB = 1 << 20


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_mb() -> float:
    # VmHWM belongs to this process image; ru_maxrss would include the parent's peak,
    # which Linux carries over into a child at fork + exec.
    return round(_status_kb("VmHWM") / 1024.0, 1)


def _cap_memory(cap_mb: int) -> dict[str, Any]:
    """Let the address space grow by what the RSS budget leaves after start-up.

    RLIMIT_AS limits virtual memory, not RSS, so the cap is calibrated here, after the
    runtime is imported: current size + (budget - current RSS). An over-budget model then
    fails its allocations for real instead of being flagged after the fact.
    """
    vm_kb, rss_kb = _status_kb("VmSize"), _status_kb("VmRSS")
    allowance = cap_mb * _MB - rss_kb * 1024
    limit = vm_kb * 1024 + max(allowance, 0)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return {"memory_cap_mb": cap_mb, "baseline_rss_mb": round(rss_kb / 1024, 1)}


# The module each backend imports at load, first found wins (as in sdk/backends): imported
# before the memory cap so its cost is measured on its own and said, not hidden in an
# allocation failure (executorch's Python runtime pulls in all of torch).
_RUNTIME_MODULES = {
    "onnxruntime": ("onnxruntime",),
    "litert": ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite"),
    "executorch": ("executorch.runtime",),
    "torch": ("torch",),
}


def _import_runtime(runtime: str) -> dict[str, Any]:
    """Import the runtime's module; its RSS cost and whether it pulled in torch."""
    import importlib
    import importlib.util

    had_torch = "torch" in sys.modules
    before = _status_kb("VmRSS")
    for name in _RUNTIME_MODULES.get(runtime, ()):
        if importlib.util.find_spec(name.split(".")[0]) is not None:
            importlib.import_module(name)
            break
    figures: dict[str, Any] = {
        "runtime_import_rss_mb": round((_status_kb("VmRSS") - before) / 1024, 1)
    }
    if runtime != "torch" and not had_torch and "torch" in sys.modules:
        figures["runtime_imports_torch"] = True
    return figures


def _runtime_cost(runtime: str, env: dict[str, Any]) -> str:
    """ "executorch's Python runtime imports torch: 363 MB RSS" (for check details)."""
    torch = " imports torch:" if env.get("runtime_imports_torch") else ":"
    return f"{runtime}'s Python runtime{torch} {env['runtime_import_rss_mb']} MB RSS at import"


def _check(name: str, status: str, detail: str = "", **figures: Any) -> dict[str, Any]:
    return {"name": name, "status": status, "detail": detail, "figures": figures}


def _is_memory_error(e: BaseException) -> bool:
    text = f"{type(e).__name__}: {e}".lower()
    return isinstance(e, MemoryError) or "bad_alloc" in text or "memory" in text and "alloc" in text


def _single(feed: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Row ``i`` of every golden input, as a batch of one."""
    return {k: v[i % len(v) : i % len(v) + 1] for k, v in feed.items()}


def _latency(model, cache, golden: dict[str, np.ndarray], spec: dict[str, Any]) -> dict[str, Any]:
    from edgefleet.sdk import EnergyMeter

    runs = int(spec.get("latency_runs", 50))
    budget = float(spec["budgets"]["p95_latency_ms"])
    times = []
    with EnergyMeter(spec.get("sysfs_root", "/")).measure() as energy:
        for i in range(runs):
            feed = _single(golden, i)
            cache.clear()  # time the model, not a cache hit (the lookup cost stays included)
            t0 = time.perf_counter()
            model.predict(feed)
            times.append((time.perf_counter() - t0) * 1000.0)
    p50, p95 = (round(float(np.percentile(times, q)), 3) for q in (50, 95))
    figures = {"latency_p50_ms": p50, "latency_p95_ms": p95, "latency_budget_ms": budget}
    # Joules per batch-1 inference where the board exposes power; never an estimate.
    joules = energy.reading.per_inference(runs)
    figures["energy_j_per_inference"] = None if joules is None else round(joules, 6)
    figures["energy_source"] = energy.reading.source
    if not spec.get("timing_meaningful", True):
        why = spec.get("timing_note") or "timing here does not represent the board"
        return _check("latency", "not run", why, **figures)
    ok = p95 <= budget
    detail = f"p95 {p95} ms {'<=' if ok else '>'} budget {budget} ms over {runs} batch-1 calls"
    if spec.get("timing_note"):
        detail += f" ({spec['timing_note']})"
    return _check("latency", "passed" if ok else "failed", detail, **figures)


def _cache(model, cache, golden: dict[str, np.ndarray]) -> dict[str, Any]:
    feed = _single(golden, 0)
    cache.clear()
    before = model.metrics.snapshot()
    first = model.predict(feed)
    mid = model.metrics.snapshot()
    second = model.predict(feed)
    after = model.metrics.snapshot()
    missed = mid.cache_misses - before.cache_misses == 1
    hit = after.cache_hits - mid.cache_hits == 1
    same = first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)
    figures = {"cache_repeat_hit": hit}
    if missed and hit and same:
        return _check(
            "cache", "passed", "first call missed, repeat hit with the same result", **figures
        )
    return _check(
        "cache", "failed",
        f"first call missed: {missed}, repeat hit: {hit}, same result: {same}", **figures,
    )  # fmt: skip


def _memory(spec: dict[str, Any], failed_alloc: str = "") -> dict[str, Any]:
    budget = int(spec["budgets"]["peak_rss_mb"])
    peak = peak_rss_mb()
    figures = {"peak_rss_mb": peak, "rss_budget_mb": budget}
    if failed_alloc:
        cap = spec.get("memory_cap_mb")
        what = failed_alloc if "memory cap" in failed_alloc else (
            f"allocation failed under the {cap} MB cap: {failed_alloc}")  # fmt: skip
        return _check("memory", "failed", what, **figures)
    if not spec.get("memory_meaningful", True):
        why = spec.get("memory_note") or "RSS here does not represent the board"
        return _check("memory", "not run", why, **figures)
    ok = peak <= budget
    return _check(
        "memory",
        "passed" if ok else "failed",
        f"peak RSS {peak} MB {'<=' if ok else '>'} budget {budget} MB",
        **figures,
    )


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the checks of one cell described by ``spec``; never raises."""
    from edgefleet.sdk import (
        BackendUnavailableError,
        LoadOptions,
        ResultCache,
        TrustPolicy,
        load,
    )
    from edgefleet.sdk.backends import get_backend

    wanted = set(spec.get("checks") or ("load", "parity", "latency", "memory", "cache"))
    env = {"machine": platform.machine(), "python": platform.python_version()}
    result: dict[str, Any] = {"checks": [], "environment": env, "not_run_reason": ""}
    checks = result["checks"]
    runtime = spec["runtime"]
    try:
        backend = get_backend(runtime)
        why = backend.available()
    except Exception as e:  # importing a runtime can fail in many ways on a foreign arch
        why = f"{type(e).__name__}: {e}"
    if why:
        result["not_run_reason"] = f"{runtime} not usable here: {why}"
        return result
    if spec.get("memory_cap_mb"):
        cap = int(spec["memory_cap_mb"])
        try:
            env.update(_import_runtime(runtime))
        except Exception as e:  # the load below reports it with the backend's wording
            log.debug("importing %s before the cap failed: %s", runtime, e)
        rss = _status_kb("VmRSS") / 1024
        if "runtime_import_rss_mb" in env and rss >= cap:
            why = (f"{_runtime_cost(runtime, env)} (process at {rss:.0f} MB): over the "
                   f"board's {cap} MB memory cap before any model is loaded")  # fmt: skip
            checks.append(_check("load", "failed", why))
            if "memory" in wanted:
                checks.append(_memory(spec, why))
            return result
        env.update(_cap_memory(cap))
    trust = TrustPolicy.workstation(*spec.get("trusted_keys", []))
    cache = ResultCache()
    options = LoadOptions(profile=spec["target"], trust=trust, cache=cache, warmup=1)
    t0 = time.perf_counter()
    try:
        model = load(spec["package"], backend=runtime, options=options)
    except BackendUnavailableError as e:
        result["not_run_reason"] = str(e)
        return result
    except BaseException as e:
        detail = f"{type(e).__name__}: {e}"
        checks.append(_check("load", "failed", detail))
        if "memory" in wanted:
            checks.append(_memory(spec, detail if _is_memory_error(e) else ""))
        return result
    load_ms = round((time.perf_counter() - t0) * 1000.0, 1)
    used = list(getattr(model._session, "providers", []) or [])
    env["providers"] = used
    info = model.info
    detail = f"{info.artifact.name} on {info.backend}"
    if used:
        # A Jetson profile asks for TensorRT/CUDA; say so when this host could not give them.
        from edgefleet.hardware.profiles import get_profile

        choice = get_profile(spec["target"]).runtime(runtime)
        missing = [
            x for x in (choice.options.get("providers", ()) if choice else ()) if x not in used
        ]
        if missing:
            detail += f" with {used} ({', '.join(missing)} not available here)"
    if "runtime_import_rss_mb" in env:
        detail += f" ({_runtime_cost(runtime, env)}, before the cap)"
    checks.append(_check("load", "passed", detail, load_ms=load_ms, artifact=info.artifact.name))
    alloc_failure = ""
    try:
        golden = model.package.golden_inputs()
        if "parity" in wanted:  # for a generative package: greedy continuations
            smoke = model.smoke_test()
            checks.append(_check("parity", "passed" if smoke.passed else "failed", smoke.detail,
                                 max_abs_error=smoke.max_abs_error))  # fmt: skip
        if hasattr(model, "generate"):  # a generative package: TTFT, tokens/s, result cache
            from ._gen_cell import generation_checks

            checks.extend(generation_checks(model, spec, wanted, _check))
        else:
            if "latency" in wanted:
                checks.append(_latency(model, cache, golden, spec))
            if "cache" in wanted:
                checks.append(_cache(model, cache, golden))
    except BaseException as e:
        if _is_memory_error(e):
            alloc_failure = f"{type(e).__name__}: {e}"
        ran = {c["name"] for c in checks}
        missing = [n for n in ("parity", "latency", "cache") if n in wanted and n not in ran]
        checks.append(
            _check(missing[0] if missing else "load", "error", f"{type(e).__name__}: {e}")
        )
    finally:
        model.close()
    if "memory" in wanted:
        checks.append(_memory(spec, alloc_failure))
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m edgefleet.hardware.hil._cell SPEC.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    spec = json.loads(Path(argv[0]).read_text())
    if spec.get("cpus"):
        # Before any runtime starts its thread pools, so they size themselves to the board.
        os.sched_setaffinity(0, spec["cpus"])
    try:
        out = run_cell(spec)
    except BaseException as e:  # the parent must always get JSON back
        out = {"checks": [_check("load", "error", f"{type(e).__name__}: {e}")]}
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
