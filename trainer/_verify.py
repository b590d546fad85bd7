"""Run exported artifacts with the SDK's own runtime backends: predictors over named
inputs (chunked to the artifact's batch, fitted to its shape bucket), host latency, and
the smoke-test tolerance derived from measured parity."""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from edgefleet.sdk import Artifact, TensorSpec, sha256_file
from edgefleet.sdk.backends import OnnxRuntimeOptions, get_backend

from ._evaluation import Predict
from ._signature import resize_axis

__all__ = [
    "BACKEND_FOR",
    "host_name",
    "open_session",
    "session_predict",
    "fit_to_shape",
    "latency_ms",
    "golden_tolerance",
]

log = logging.getLogger(__name__)

BACKEND_FOR = {"onnx": "onnxruntime", "tflite": "litert", "pte": "executorch"}


def host_name() -> str:
    return f"{platform.machine()} {platform.system()} python{platform.python_version()}"


@contextlib.contextmanager
def open_session(path: Path, fmt: str, precision: str, inputs: list[TensorSpec],
                 outputs: list[TensorSpec]) -> Iterator[object]:  # fmt: skip
    """A backend session on ``path``; ONNX Runtime with one thread, so latency figures
    compare across artifacts and match small boards."""
    art = Artifact(
        name=path.name, path=f"artifacts/{path.name}", format=fmt, precision=precision,
        sha256=sha256_file(path), size=path.stat().st_size,
        fixed_batch=None if fmt == "onnx" else 1,
    )  # fmt: skip
    opts = OnnxRuntimeOptions(intra_op_threads=1, inter_op_threads=1) if fmt == "onnx" else None
    session = get_backend(BACKEND_FOR[fmt]).load(path, art, inputs, outputs, opts)
    try:
        yield session
    finally:
        session.close()


def fit_to_shape(feeds: Mapping[str, np.ndarray], shapes: Mapping[str, list[int | str]] | None,
                 pad_values: Mapping[str, float]) -> dict[str, np.ndarray]:  # fmt: skip
    """Pad (with the input's pad value) or cut every non-batch axis to a bucket's shape."""
    if not shapes:
        return dict(feeds)
    out = {}
    for k, a in feeds.items():
        for ax, n in enumerate(shapes.get(k, [])):
            if ax > 0 and isinstance(n, int) and a.shape[ax] != n:
                a = resize_axis(a, ax, n, pad_values.get(k, 0))
        out[k] = a
    return out


def session_predict(session, fixed_batch: int | None, chunk: int = 64) -> Predict:
    def predict(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        step = fixed_batch or chunk
        parts = [session.run({k: np.ascontiguousarray(v[i : i + step]) for k, v in feeds.items()})
                 for i in range(0, n, step)]  # fmt: skip
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    return predict


def latency_ms(session, one: Mapping[str, np.ndarray], runs: int) -> float:
    """Median host latency of one batch-1 call, after 3 warm-up calls."""
    for _ in range(3):
        session.run(dict(one))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(dict(one))
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def golden_tolerance(precision: str, golden_ref: np.ndarray, measured_err: float
                     ) -> tuple[float, float]:  # fmt: skip
    """(atol, rtol) for the device smoke test against the *reference* model's outputs: twice
    the error this artifact showed on held-out data, plus room for another CPU's kernels
    (summation order for fp32; half-precision arithmetic for fp16; one or two quantisation
    steps for int8/int4). An artifact
    that drifts further than it was measured to cannot pass."""
    span = float(np.abs(golden_ref).max()) if golden_ref.size else 1.0
    # fp16: a GPU computes in half precision where the host's CPU provider cast to fp32.
    slack = {"int8": 0.01, "int4": 0.01, "fp16": 0.005}.get(precision, 1e-4) * span
    return max(2.0 * measured_err + slack, 1e-5), 1e-3
