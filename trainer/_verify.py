"""Verify exported artifacts with the SDK's own runtime backends against the torch
fp32 reference: accuracy, top-1 agreement, max abs error, host latency, golden outputs."""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgefleet.sdk import Artifact, ArtifactMetrics, TensorSpec, sha256_file
from edgefleet.sdk.backends import OnnxRuntimeOptions, get_backend

__all__ = ["Verified", "verify_artifact", "golden_tolerance", "BACKEND_FOR", "host_name"]

log = logging.getLogger(__name__)

BACKEND_FOR = {"onnx": "onnxruntime", "tflite": "litert", "pte": "executorch"}


def host_name() -> str:
    return f"{platform.machine()} {platform.system()} python{platform.python_version()}"


@dataclass(frozen=True)
class Verified:
    metrics: ArtifactMetrics
    golden_outputs: dict[str, np.ndarray]
    fixed_batch: int | None
    latency_ms: float


def _run_all(session, x: np.ndarray, fixed_batch: int | None, chunk: int = 256) -> np.ndarray:
    step = fixed_batch or chunk
    outs = [session.run({"input": x[i : i + step]})["logits"] for i in range(0, len(x), step)]
    return np.concatenate(outs).astype(np.float32)


def golden_tolerance(precision: str, golden: np.ndarray) -> tuple[float, float]:
    """(atol, rtol) the same runtime on a device meets: fp32 kernels differ by summation
    order; int8 kernels may round one or two quantisation steps differently (ARM vs x86)."""
    span = float(np.abs(golden).max()) if golden.size else 1.0
    if precision == "int8":
        return max(0.05, 0.03 * span), 0.02
    return max(1e-4, 1e-4 * span), 1e-3


def verify_artifact(
    path: Path,
    *,
    format: str,
    precision: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    x: np.ndarray,
    y: np.ndarray | None,
    reference_logits: np.ndarray,
    golden_x: np.ndarray,
    latency_runs: int = 30,
    eval_fn: Callable[[Callable[[np.ndarray], np.ndarray]], float] | None = None,
) -> Verified:
    """Load ``path`` on its SDK backend, run held-out ``x`` and compare with the reference."""
    fixed = None if format == "onnx" else 1  # .tflite/.pte are exported for batch 1
    art = Artifact(
        name=path.name, path=f"artifacts/{path.name}", format=format, precision=precision,
        sha256=sha256_file(path), size=path.stat().st_size, fixed_batch=fixed,
    )  # fmt: skip
    backend = get_backend(BACKEND_FOR[format])
    # One thread for latency so figures compare across artifacts and match small boards.
    opts = OnnxRuntimeOptions(intra_op_threads=1, inter_op_threads=1) if format == "onnx" else None
    session = backend.load(path, art, inputs, outputs, opts)
    try:
        logits = _run_all(session, x, fixed)
        scored = None
        if y is None and eval_fn is not None:
            scored = float(eval_fn(lambda xb: _run_all(session, xb, fixed)))
        golden = _run_all(session, golden_x, fixed)
        one = x[:1]
        for _ in range(3):
            session.run({"input": one})
        times = []
        for _ in range(latency_runs):
            t0 = time.perf_counter()
            session.run({"input": one})
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        session.close()
    pred, ref_pred = logits.argmax(1), reference_logits.argmax(1)
    metrics = ArtifactMetrics(
        samples=len(x),
        accuracy=float((pred == y).mean()) if y is not None else scored,
        reference_accuracy=float((ref_pred == y).mean()) if y is not None else None,
        top1_agreement=float((pred == ref_pred).mean()),
        max_abs_error=float(np.abs(logits - reference_logits).max()),
        latency_ms_p50=float(np.median(times)),
        host=host_name(),
    )
    log.info("verified %s: %s", path.name, metrics)
    return Verified(metrics, {"logits": golden}, fixed, metrics.latency_ms_p50 or 0.0)
