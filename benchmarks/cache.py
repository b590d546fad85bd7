"""Result cache: a hit vs a miss (real inference) of ``Model.predict``, side by side.

Same MobileNetV2 as ``sdk_overhead.py`` (ONNX, onnxruntime, batch 1). Misses use a fresh
input each call (one value changed, prepared outside the timed region) so they run the
model, and include the digest and the store; hits repeat one input. The two are
interleaved in one run; we report medians. A persistent (SQLite) cache line comes first,
the in-memory cache line last.

    python benchmarks/cache.py --json

Goal (issue 2): speedup = miss_p50 / hit_p50 >= 50 (in-memory cache).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import emit, parser
from sdk_overhead import build_package


def measure(model, x: np.ndarray, iterations: int) -> tuple[list[float], list[float]]:
    model.predict(x)  # stores the entry every hit below reads
    hits, misses = [], []
    clock = time.perf_counter_ns
    for i in range(iterations):
        fresh = x.copy()
        fresh.flat[0] = 2.0 + i  # outside [0, 1): never equal to x or an earlier input
        t0 = clock()
        model.predict(fresh)
        t1 = clock()
        model.predict(x)
        t2 = clock()
        misses.append((t1 - t0) / 1e3)
        hits.append((t2 - t1) / 1e3)
    return hits, misses


def run(kind: str, cache, pkg: Path, x: np.ndarray, iterations: int) -> dict:
    from edgefleet.sdk import LoadOptions, load

    with load(pkg, backend="onnxruntime", options=LoadOptions(cache=cache)) as model:
        for _ in range(5):
            model.predict(x)
        hits, misses = measure(model, x, iterations)
        stats = cache.stats()
    hit, miss = statistics.median(hits), statistics.median(misses)
    return {
        "cache": kind,
        "backend": "onnxruntime",
        "hit_p50_us": round(hit, 1),
        "miss_p50_us": round(miss, 1),
        "speedup": round(miss / hit, 1),
        "hits": stats.hits,
        "misses": stats.misses,
        "iterations": iterations,
        "goal": 50,
        "goal_met": miss / hit >= 50,
    }


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, iterations=200, size=(224, "input height and width"))
    args = ap.parse_args(argv)

    from edgefleet.sdk import PersistentCache, ResultCache

    x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp:
        pkg = build_package(Path(tmp), args.size, ("onnx",))
        n = args.iterations + 16
        persistent = PersistentCache(Path(tmp) / "cache.sqlite", max_entries=n)
        results = [
            run("persistent", persistent, pkg, x, args.iterations),
            run("memory", ResultCache(max_entries=n, max_bytes=1 << 30), pkg, x, args.iterations),
        ]
        persistent.close()
    return emit(
        results,
        args.json,
        *(
            f"{r['cache']:>10}: hit p50 {r['hit_p50_us']:.0f} us, miss p50 "
            f"{r['miss_p50_us']:.0f} us, speedup {r['speedup']:.0f}x"
            for r in results
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
