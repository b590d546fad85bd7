"""What every benchmark shares: the host it measured on and how it prints its figures.

A benchmark puts ``benchmarks/`` on ``sys.path`` (it runs as a script) and imports
``from _harness import emit, host, parser``: ``parser`` declares its command line (always
with ``--json``), ``emit`` ends ``main``. The last stdout line is always a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["cpu", "emit", "host", "host_line", "interleaved_medians", "parser"]

# The SIMD features that change int8/fp32 inference speed (VNNI: int8 dot products).
_SIMD = {"avx2", "avx_vnni", "avx512f", "avx512_vnni", "amx_int8"}


def cpu() -> tuple[str, list[str]]:
    """(CPU model name, the SIMD flags above it has), read from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = set(next(ln for ln in text.splitlines() if ln.startswith("flags")).split())
        model = next(ln for ln in text.splitlines() if ln.startswith("model name"))
        model = model.split(":", 1)[1].strip()
    except (OSError, StopIteration):  # not x86 Linux: no flags line
        flags, model = set(), platform.processor()
    return model, sorted(flags & _SIMD)


def host() -> dict:
    """The host as a JSON object: CPU, SIMD flags, CPU count, load when measured, Python."""
    model, simd = cpu()
    return {
        "cpu": model,
        "simd": "+".join(simd) or "none",
        "cpus": os.cpu_count(),
        "load_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def host_line() -> str:
    """The host in one line for the inference benchmarks: CPU, SIMD flags, ONNX Runtime."""
    import onnxruntime as ort

    model, simd = cpu()
    return f"{model}, {'+'.join(simd) or 'no avx2'}, onnxruntime {ort.__version__}"


def interleaved_medians(
    sessions: Mapping[str, Any], feed: dict, runs: int, warmup: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall ms and median thread-CPU ms per ONNX Runtime session; each round runs
    every session once so load drift hits all alike. With one intra-op thread ORT runs in
    the calling thread, so its CPU time excludes what the shared host's other jobs took."""
    for s in sessions.values():
        for _ in range(warmup):
            s.run(None, feed)
    wall: dict[str, list[float]] = {k: [] for k in sessions}
    cpu_ms: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs):
        for k, s in sessions.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            s.run(None, feed)
            cpu_ms[k].append((time.thread_time() - c0) * 1000)
            wall[k].append((time.perf_counter() - t0) * 1000)
    med = statistics.median
    return {k: med(v) for k, v in wall.items()}, {k: med(v) for k, v in cpu_ms.items()}


def parser(doc: str, **options: Any) -> argparse.ArgumentParser:
    """The command line of the benchmark whose docstring is ``doc``: ``--json`` and one
    ``--some-name`` per keyword ``some_name``, typed by its default (``False``: a flag);
    a ``(default, help)`` pair adds a help line. Arguments that need more (choices,
    hidden ones, no default) are added to the parser this returns."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="only the JSON figures on stdout")
    for name, value in options.items():
        default, help_ = value if isinstance(value, tuple) else (value, None)
        flag = "--" + name.replace("_", "-")
        if default is False:
            ap.add_argument(flag, action="store_true", help=help_)
        else:
            ap.add_argument(flag, type=type(default), default=default, help=help_)
    return ap


def emit(result: dict | list[dict], quiet: bool, *summary: str) -> int:
    """Print the ``summary`` lines to stderr unless ``quiet`` (--json), then ``result`` as
    the last stdout line (a list: one JSON line per item, the last one last); exit code 0."""
    if not quiet:
        for line in summary:
            print(line, file=sys.stderr)
    for r in result if isinstance(result, list) else [result]:
        print(json.dumps(r))
    return 0
