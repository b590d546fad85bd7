"""compress -> export -> verify -> package -> sign -> report, for any nn.Module.

``compress`` is the bring-your-own entry point; ``run_recipe`` (``_run.py``) feeds it the
built-in data and models.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edgefleet.sdk import (
    ArtifactMetrics,
    PackageBuilder,
    Preprocessing,
    TensorSpec,
    load_private_key,
)
from torch import nn

from . import _export
from ._progress import Reporter
from ._prune import count_params
from ._recipe import CompressStep, ExportSpec, QuantizeSpec, TrainSpec, VerifySpec
from ._steps import StepResult, apply_steps
from ._train import predict_logits
from ._verify import golden_tolerance, verify_artifact

__all__ = ["CompressOptions", "ExportRecord", "CompressResult", "compress", "EvalFn"]

log = logging.getLogger(__name__)

# eval_fn(predict) -> score, where predict maps an input batch to logits.
EvalFn = Callable[[Callable[[np.ndarray], np.ndarray]], float]
_EXT = {"onnx": "onnx", "tflite": "tflite", "pte": "pte"}


@dataclass(frozen=True)
class CompressOptions:
    name: str = "model"
    version: str = "1.0.0"
    description: str = ""
    labels: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    steps: tuple[CompressStep, ...] = ()
    train: TrainSpec = field(default_factory=TrainSpec)
    quantize: QuantizeSpec = field(default_factory=QuantizeSpec)
    export: ExportSpec = field(default_factory=ExportSpec)
    verify: VerifySpec = field(default_factory=VerifySpec)
    preprocessing: Preprocessing | None = None
    recipe_digest: str | None = None
    seed: int = 0


@dataclass
class ExportRecord:
    name: str
    format: str
    precision: str
    path: Path | None = None
    size: int = 0
    seconds: float = 0.0
    metrics: ArtifactMetrics | None = None
    error: str | None = None


@dataclass
class CompressResult:
    name: str
    version: str
    model: nn.Module
    steps: list[StepResult]
    exports: list[ExportRecord]
    baseline_accuracy: float | None
    compressed_accuracy: float | None
    params_before: int
    params_after: int
    package: Path | None = None
    report: Path | None = None
    plot: Path | None = None

    def export(self, name: str) -> ExportRecord:
        for r in self.exports:
            if r.name == name:
                return r
        raise KeyError(name)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "baseline_accuracy": self.baseline_accuracy,
            "compressed_accuracy": self.compressed_accuracy,
            "params": [self.params_before, self.params_after],
            "package": str(self.package) if self.package else None,
            "package_bytes": self.package.stat().st_size if self.package else None,
            "steps": [s.__dict__ for s in self.steps],
            "artifacts": [
                {
                    "name": r.name,
                    "format": r.format,
                    "precision": r.precision,
                    "size": r.size,
                    "seconds": round(r.seconds, 2),
                    "error": r.error,
                    "metrics": r.metrics.model_dump() if r.metrics else None,
                }  # fmt: skip
                for r in self.exports
            ],
        }


def _short(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
    return text if len(text) <= 400 else text[:397] + "..."


def _jobs(opts: CompressOptions) -> list[tuple[str, str, str]]:
    """(artifact name, format, precision) in export order."""
    jobs = []
    for fmt in opts.export.formats:
        for prec in opts.export.precisions:
            if fmt == "onnx" and prec == "int8":
                for mode in opts.quantize.onnx:
                    suffix = "" if mode == "static" else "-dynamic"
                    jobs.append((f"model.int8{suffix}.onnx", fmt, prec))
            else:
                jobs.append((f"model.{prec}.{_EXT[fmt]}", fmt, prec))
    return jobs


def _export_one(
    name: str, fmt: str, prec: str, model: nn.Module, sample: np.ndarray, calib: np.ndarray,
    work: Path, opts: CompressOptions, reporter: Reporter,
) -> Path:  # fmt: skip
    out = work / name
    fp32_onnx = work / "model.fp32.onnx"
    if fmt == "onnx":
        if not fp32_onnx.exists():
            _export.export_onnx(model, sample, fp32_onnx, opts.export.opset)
        if prec == "fp32":
            return fp32_onnx
        if "dynamic" in name:
            return _export.quantize_onnx_dynamic(fp32_onnx, out, opts.quantize.reduce_range)
        with reporter.task("calibrate onnx int8", len(calib)) as advance:
            return _export.quantize_onnx_static(
                fp32_onnx,
                calib,
                out,
                per_channel=opts.quantize.per_channel,
                reduce_range=opts.quantize.reduce_range,
                on_item=advance,
            )
    exporter = _export.EXPORTERS[fmt]
    if prec == "fp32":
        return exporter(model, sample, out)
    with reporter.task(f"calibrate {fmt} int8", len(calib)) as advance:
        return exporter(model, sample, out, int8=True, calib=calib, on_item=advance)


def compress(
    model: nn.Module,
    calib_data: np.ndarray,
    eval_fn: EvalFn | None = None,
    options: CompressOptions | None = None,
    *,
    train_data: tuple[np.ndarray, np.ndarray] | None = None,
    heldout: tuple[np.ndarray, np.ndarray | None] | None = None,
    out: str | Path = "edgefleet-out",
    signing_key: Ed25519PrivateKey | str | Path | None = None,
    quiet: bool = True,
) -> CompressResult:
    """Compress ``model`` with ``options.steps``, export every format/precision, verify
    each artifact against the compressed torch fp32 model, package, sign and report.

    ``calib_data``: float32 inputs (N, ...) for int8 calibration (and parity checks when
    no ``heldout`` is given). ``eval_fn(predict) -> float`` scores a predictor when there
    are no held-out labels. ``train_data=(x, y)`` is needed by steps that fine-tune.
    """
    opts = options or CompressOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(signing_key, str | Path):
        signing_key = load_private_key(signing_key)
    calib_data = np.ascontiguousarray(calib_data, dtype=np.float32)
    x_eval, y_eval = heldout if heldout is not None else (calib_data, None)
    x_eval = np.ascontiguousarray(x_eval, dtype=np.float32)
    if opts.verify.samples:
        x_eval = x_eval[: opts.verify.samples]
        y_eval = None if y_eval is None else y_eval[: opts.verify.samples]

    def accuracy(m: nn.Module) -> float | None:
        if y_eval is not None:
            return float((predict_logits(m, x_eval).argmax(1) == y_eval).mean())
        return eval_fn(lambda xb: predict_logits(m, xb)) if eval_fn else None

    model = model.eval()
    with Reporter(quiet=quiet) as reporter:
        baseline = accuracy(model)
        compressed, steps = apply_steps(
            model, opts.steps, train_spec=opts.train, train=train_data, accuracy_fn=accuracy,
            reporter=reporter, seed=opts.seed,
        )  # fmt: skip
        ref_logits = predict_logits(compressed, x_eval)
        result = CompressResult(
            opts.name, opts.version, compressed, steps, [], baseline, accuracy(compressed),
            count_params(model), count_params(compressed),
        )  # fmt: skip
        calib = calib_data[: opts.quantize.calibration_samples]
        sample = calib_data[:1]
        golden_x = x_eval[: opts.verify.golden_samples]
        inputs = [TensorSpec(name="input", dtype="float32", shape=["batch", *sample.shape[1:]])]
        outputs = [TensorSpec(name="logits", dtype="float32", shape=["batch", ref_logits.shape[1]])]
        with tempfile.TemporaryDirectory(prefix="edgefleet-export-") as tmp, PackageBuilder(
            opts.name, opts.version, inputs=inputs, outputs=outputs,
            labels=list(opts.labels), preprocessing=opts.preprocessing,
            description=opts.description, recipe_digest=opts.recipe_digest,
        ) as builder:  # fmt: skip
            work = Path(tmp)
            builder.set_golden_inputs({"input": golden_x})
            jobs = _jobs(opts)
            with reporter.task("export + verify", len(jobs)) as advance:
                for name, fmt, prec in jobs:
                    rec = ExportRecord(name, fmt, prec)
                    result.exports.append(rec)
                    t0 = time.perf_counter()
                    try:
                        rec.path = _export_one(name, fmt, prec, compressed, sample, calib,
                                               work, opts, reporter)  # fmt: skip
                        rec.seconds = time.perf_counter() - t0
                        rec.size = rec.path.stat().st_size
                        v = verify_artifact(
                            rec.path, format=fmt, precision=prec, inputs=inputs,
                            outputs=outputs, x=x_eval, y=y_eval, reference_logits=ref_logits,
                            golden_x=golden_x, latency_runs=opts.verify.latency_runs,
                            eval_fn=eval_fn,
                        )  # fmt: skip
                    except Exception as e:
                        rec.error = _short(e)
                        rec.seconds = time.perf_counter() - t0
                        log.warning("export %s failed: %s", name, rec.error, exc_info=True)
                        builder.add_failed_export(fmt, prec, rec.error)
                        reporter.note(f"[yellow]{name}: FAILED ({rec.error})")
                        advance(info=f"{name} failed")
                        continue
                    rec.metrics = v.metrics
                    atol, rtol = golden_tolerance(prec, v.golden_outputs["logits"])
                    builder.add_artifact(
                        rec.path, format=fmt, precision=prec, name=name,
                        targets=list(opts.targets), fixed_batch=v.fixed_batch,
                        metrics=v.metrics, golden_outputs=v.golden_outputs,
                        golden_atol=atol, golden_rtol=rtol,
                    )  # fmt: skip
                    advance(info=f"{name} {rec.size // 1024} KiB acc {v.metrics.accuracy}")
            if not any(r.metrics for r in result.exports):
                reasons = "; ".join(f"{r.name}: {r.error}" for r in result.exports)
                raise _export_error(f"every export failed: {reasons}")
            result.package = builder.build(
                out / f"{opts.name}-{opts.version}.efpkg", signing_key=signing_key
            )
    result.report, result.plot = _write_report(result, out)
    return result


def _export_error(msg: str) -> Exception:
    from edgefleet.sdk import PackageError

    return PackageError(msg)


def _write_report(result: CompressResult, out: Path) -> tuple[Path, Path]:
    import json

    from ._report import write_report

    (out / "report.json").write_text(json.dumps(result.summary(), indent=2, default=str))
    return write_report(result, out)
