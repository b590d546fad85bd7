"""Export candidates, verify each on its runtime, and let the accuracy gate choose.

A candidate is one file: a format x precision x quantization method (x shape bucket for
formats without dynamic dims). Every candidate is scored with the user's metric on
held-out inputs through the SDK backend; one that misses the gate is rejected with its
figure, and of several passing candidates for the same format, precision and shape the
best-scoring one ships (the others are listed as superseded).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from edgefleet.sdk import ArtifactMetrics, MetricSpec, TensorSpec

from . import _export
from ._evaluation import Evaluator, Predict, builtin_scores
from ._onnx_quant import FP16_METHOD, OnnxQuantOptions, convert_fp16, quantize_onnx_each
from ._robustness import RobustnessProbe
from ._signature import ModelIO, NamedIO
from ._verify import fit_to_shape, host_name, latency_ms, open_session, session_predict

__all__ = ["Candidate", "plan_buckets", "export_candidates", "verify_candidate", "choose"]

log = logging.getLogger(__name__)

_EXT = {"onnx": "onnx", "tflite": "tflite", "pte": "pte"}
# fp16 serves GPU boards, which run ONNX (TensorRT/CUDA providers); LiteRT and ExecuTorch
# targets here are CPUs, where fp16 is no gain (sdk ranks it last there).
_FP16_HOST = "; fp16 run by ONNX Runtime's CPU provider, GPU fp16 arithmetic not measured here"
_FP16_ONNX_ONLY = "fp16 is exported as ONNX only (for ONNX Runtime's TensorRT/CUDA providers)"


@dataclass
class Candidate:
    name: str
    format: str
    precision: str
    quantization: str | None = None
    path: Path | None = None
    input_shapes: dict[str, list[int | str]] | None = None
    bucket_group: str | None = None
    seconds: float = 0.0
    error: str | None = None
    metrics: ArtifactMetrics | None = None
    passed: bool = False
    status: str = "pending"  # shipped | rejected | failed
    reason: str | None = None
    parity_error: float = 0.0  # max abs error vs the exported torch model on held-out data
    extra: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path and self.path.exists() else 0


def plan_buckets(io: ModelIO, buckets: Mapping[str, tuple[int, ...]] | None,
                 example: Mapping[str, np.ndarray]) -> list[dict[str, int]]:  # fmt: skip
    """Shape buckets for fixed-shape formats: every combination of the sizes named for each
    non-batch symbol (a symbol with none gets the example's size). [{}] when only batch."""
    symbols = [s for s in io.symbols() if s != "batch"]
    if not symbols:
        return [{}]
    buckets = buckets or {}
    unknown = sorted(set(buckets) - set(symbols))
    if unknown:
        from edgefleet.sdk import ConfigError

        raise ConfigError(f"buckets name unknown symbolic dims {unknown}; the model has {symbols}")
    sizes = []
    for s in symbols:
        seen = [example[k].shape[ax] for k, d in io.input_dims.items() for ax, v in d.items()
                if v == s]  # fmt: skip
        sizes.append(sorted(set(buckets.get(s) or (seen[0],))))
    return [dict(zip(symbols, combo, strict=True)) for combo in itertools.product(*sizes)]


def bucket_shapes(io: ModelIO, bucket: Mapping[str, int]) -> dict[str, list[int | str]]:
    """Concrete per-input shapes of a bucket at batch 1."""
    out = {}
    for spec in io.inputs:
        out[spec.name] = [1 if d == "batch" else bucket.get(d, d) if isinstance(d, str) else d
                          for d in spec.shape]  # fmt: skip
    return out


def export_candidates(
    wrapper: NamedIO, io: ModelIO, feeds: dict[str, np.ndarray], work: Path, *,
    formats: list[str], precisions: list[str], onnx_methods: list[str] | None,
    quant: OnnxQuantOptions, opset: int, buckets: Mapping[str, tuple[int, ...]] | None,
    pad_values: Mapping[str, float], calib_n: int, family: str,
    on_done: Callable[[Candidate], None],
) -> None:  # fmt: skip
    """Export every candidate into ``work``; ``on_done`` gets each (with path or error)."""
    import time

    names = io.input_names
    one = {k: v[:1] for k, v in feeds.items()}
    for fmt in formats:
        if fmt == "onnx":
            _onnx(wrapper, io, feeds, work, precisions, onnx_methods, quant, opset, on_done)
            continue
        for bucket in plan_buckets(io, buckets, feeds):
            shapes = bucket_shapes(io, bucket) if bucket else None
            tag = "".join(f".{s}{n}" for s, n in bucket.items())
            sample = fit_to_shape(one, shapes, pad_values)
            calib = _export.calib_args(fit_to_shape(feeds, shapes, pad_values), names, calib_n)
            for prec in precisions:
                group = f"model.{prec}.{_EXT[fmt]}" if bucket else None
                method = (
                    None if prec in ("fp32", "fp16") else _export.quant_method(fmt, family, prec)
                )
                c = Candidate(f"model.{prec}{tag}.{_EXT[fmt]}", fmt, prec, method,
                              input_shapes=shapes, bucket_group=group)  # fmt: skip
                t0 = time.perf_counter()
                try:
                    if prec == "fp16":
                        raise ValueError(_FP16_ONNX_ONLY)
                    c.path = _export.EXPORTERS[fmt](
                        wrapper, tuple(sample[n] for n in names), work / c.name,
                        int8=prec == "int8", int4=prec == "int4", calib=calib, family=family,
                    ) if prec != "fp32" else _export.EXPORTERS[fmt](
                        wrapper, tuple(sample[n] for n in names), work / c.name
                    )  # fmt: skip
                except Exception as e:
                    c.error = _short(e)
                    log.warning("export %s failed: %s", c.name, c.error, exc_info=True)
                c.seconds = time.perf_counter() - t0
                on_done(c)


def _onnx(wrapper, io, feeds, work, precisions, methods, quant, opset, on_done) -> None:
    import time

    fp32 = work / "model.fp32.onnx"
    base = Candidate("model.fp32.onnx", "onnx", "fp32", None)
    t0 = time.perf_counter()
    try:
        dims = {**io.input_dims, **io.output_dims}
        _export.export_onnx(wrapper, tuple(torch.from_numpy(feeds[n][:1]) for n in io.input_names),
                            fp32, opset, input_names=io.input_names,
                            output_names=io.output_names, dims=dims)  # fmt: skip
        base.path = fp32
    except Exception as e:
        base.error = _short(e)
    base.seconds = time.perf_counter() - t0
    if "fp32" in precisions or base.error:
        on_done(base)
    if base.error:
        return
    if "fp16" in precisions:
        half = Candidate("model.fp16.onnx", "onnx", "fp16", FP16_METHOD)
        t0 = time.perf_counter()
        try:
            half.path = convert_fp16(fp32, work / half.name)
        except Exception as e:
            half.error = _short(e)
        half.seconds = time.perf_counter() - t0
        on_done(half)
    if not {"int8", "int4"} & set(precisions):
        return
    if "int8" not in precisions:
        m8: tuple | None = ()
    else:
        alias = {"static": "static-qdq"}
        m8 = None if methods is None else tuple(alias.get(m, m) for m in methods if m != "int4")
    opts = OnnxQuantOptions(
        family=quant.family, methods=m8, per_channel=quant.per_channel,
        reduce_range=quant.reduce_range, int4="int4" in precisions,
        calibration_samples=quant.calibration_samples,
    )  # fmt: skip
    n = len(next(iter(feeds.values())))
    calib = [{k: v[i : i + 1] for k, v in feeds.items()} for i in range(n)]
    t0 = time.perf_counter()
    try:
        results = quantize_onnx_each(fp32, work / "onnx-q", calib, opts)
    except Exception as e:  # e.g. static QDQ asked without calibration data
        on_done(Candidate("model.int8.onnx", "onnx", "int8", None, error=_short(e)))
        return
    for cand, err in results:
        if cand.precision not in precisions:
            continue
        on_done(Candidate(cand.path.name, "onnx", cand.precision, cand.method,
                          path=None if err else cand.path, error=err,
                          seconds=time.perf_counter() - t0))  # fmt: skip


def _short(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
    return text if len(text) <= 400 else text[:397] + "..."


def verify_candidate(
    c: Candidate,
    io: ModelIO,
    evaluator: Evaluator,
    parity_ref: dict[str, np.ndarray],
    reference_value: float,
    *,
    latency_runs: int,
    pad_values: Mapping[str, float],
    robustness: tuple[RobustnessProbe, list[float]] | None = None,
) -> None:
    """Score ``c`` on its runtime; fills metrics, passed and parity_error. ``robustness``:
    the probe and the reference model's figures under its perturbations (then the
    artifact's figures are measured, recorded and gated too)."""
    inputs, outputs = io.inputs, io.outputs
    if c.input_shapes:
        inputs = [TensorSpec(name=s.name, dtype=s.dtype, shape=c.input_shapes[s.name])
                  for s in io.inputs]  # fmt: skip
    with open_session(c.path, c.format, c.precision, inputs, outputs) as session:
        raw = session_predict(session, None if c.format == "onnx" else 1)

        def predict(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return raw(fit_to_shape(feeds, c.input_shapes, pad_values))

        value, scores, outs = evaluator.score(predict)
        probe, robust_ref = robustness or (None, [])
        robust = probe.scores(probe.measure(predict, evaluator), robust_ref) if probe else []
        one = {k: v[:1] for k, v in fit_to_shape(evaluator.feeds, c.input_shapes,
                                                  pad_values).items()}  # fmt: skip
        lat = latency_ms(session, one, latency_runs)
    c.parity_error = max(float(np.abs(outs[k].astype(np.float64) - parity_ref[k]).max())
                         for k in parity_ref if outs[k].size)  # fmt: skip
    # Against the exported torch model (what the smoke test checks), besides the gate's
    # figures against the uncompressed reference; the schema-1 fields keep this meaning.
    parity = builtin_scores(outs[evaluator.primary], parity_ref[evaluator.primary], None,
                            evaluator.classifier)  # fmt: skip
    scores.update({f"export_{k}": v for k, v in parity.items()})
    spec = evaluator.metric
    c.passed = spec.passes(value, reference_value)
    c.metrics = ArtifactMetrics(
        samples=len(next(iter(evaluator.feeds.values()))),
        accuracy=scores.get("accuracy"),
        reference_accuracy=reference_value if spec.name == "accuracy" else None,
        top1_agreement=parity.get("top1_agreement"),
        max_abs_error=parity["max_abs_error"],
        latency_ms_p50=lat, host=host_name() + (_FP16_HOST if c.precision == "fp16" else ""),
        metric=spec.name, value=value,
        reference_value=reference_value, scores=scores, robustness=robust,
    )  # fmt: skip
    reasons = [] if c.passed else [_gate_reason(spec, value, reference_value)]
    miss = probe.failure(robust) if probe else None
    if miss is not None:
        c.passed = False
        reasons.append(probe.reason(miss))
        c.extra["rejected_figure"] = (f"{spec.name} under {miss.name}", miss.value,
                                      miss.reference_value)  # fmt: skip
    c.reason = "; ".join(reasons) or None


def _gate_reason(spec: MetricSpec, value: float, ref: float) -> str:
    parts = []
    if spec.floor is not None:
        parts.append(f"floor {spec.floor:g}")
    if spec.max_drop is not None:
        parts.append(f"max drop {spec.max_drop:g} from the reference {ref:.4g}")
    return f"{spec.name} {value:.4g} misses the gate ({', '.join(parts) or 'NaN'})"


def choose(cands: list[Candidate], spec: MetricSpec) -> None:
    """Mark each verified candidate shipped or rejected: the best-scoring passing one per
    (format, precision, input shapes) ships."""
    groups: dict[tuple, list[Candidate]] = {}
    for c in cands:
        if c.error is not None:
            c.status = "failed"
            continue
        if not c.passed:
            c.status = "rejected"
            continue
        key = (c.format, c.precision, repr(c.input_shapes))
        groups.setdefault(key, []).append(c)
    for group in groups.values():
        best = group[0]
        for c in group[1:]:
            if spec.better(c.metrics.value, best.metrics.value):
                best = c
        for c in group:
            c.status = "shipped" if c is best else "rejected"
            if c is not best:
                c.reason = (f"passed ({spec.name} {c.metrics.value:.4g}) but {best.name} "
                            f"scored better ({best.metrics.value:.4g})")  # fmt: skip


def torch_predict(wrapper: NamedIO, chunk: int = 64) -> Predict:
    @torch.no_grad()
    def predict(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        parts = [wrapper.named(*(torch.from_numpy(np.ascontiguousarray(feeds[k][i : i + chunk]))
                                 for k in wrapper.input_names))
                 for i in range(0, n, chunk)]  # fmt: skip
        return {k: np.concatenate([p[k].numpy() for p in parts]) for k in parts[0]}

    return predict
