"""Work behind commands that is not part of the deployment state machine."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from edgefleet.sdk import EdgefleetError
from edgefleet.sdk.protocol import BenchmarkCommand

from ._store import ModelStore

if TYPE_CHECKING:
    from edgefleet.sdk import TrustPolicy

__all__ = ["run_benchmark"]

log = logging.getLogger(__name__)


def _rss_mb() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 2)


def run_benchmark(
    store: ModelStore,
    slot: str | None,
    cmd: BenchmarkCommand,
    policy: TrustPolicy,
    backend: str | None,
) -> dict:
    """Load the slot's package and time ``cmd.iterations`` calls on its golden inputs
    (batch 1), as the SDK benchmark does; report p50/p95 latency and RSS."""
    import numpy as np
    from edgefleet.sdk import LoadOptions, load

    if slot is None or not store.has_package(slot):
        raise EdgefleetError(f"slot {slot} holds no package to benchmark")
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    model = load(store.slot_dir(slot), cmd.backend or backend, LoadOptions(trust=policy, warmup=0))
    load_s = time.perf_counter() - t0
    try:
        golden = model.package.golden_inputs()
        x = {k: v[:1] for k, v in golden.items()}
        for _ in range(cmd.warmup):
            model.predict(x)
        times = []
        for _ in range(cmd.iterations):
            t = time.perf_counter()
            model.predict(x)
            times.append((time.perf_counter() - t) * 1000.0)
        return {
            "package": f"{model.info.name}@{model.info.version}",
            "backend": model.info.backend,
            "artifact": model.info.artifact.name,
            "iterations": cmd.iterations,
            "load_s": round(load_s, 4),
            "p50_ms": round(float(np.percentile(times, 50)), 4),
            "p95_ms": round(float(np.percentile(times, 95)), 4),
            "rss_mb": _rss_mb(),
            "rss_delta_mb": round(_rss_mb() - rss0, 2),
        }
    finally:
        model.close()
