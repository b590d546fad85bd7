"""compress -> export -> verify -> gate -> package -> sign -> report, for any model.

``compress`` is the bring-your-own entry point; ``run_recipe`` (``_run.py``) feeds it the
built-in data and models. Inputs are named and typed (``_signature``), the user's metric
gates every compression step and artifact (``_evaluation``, ``_candidates``), and golden
outputs for the device smoke test come from the reference torch model.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edgefleet.sdk import (
    ArtifactMetrics,
    ConfigError,
    MetricSpec,
    PackageBuilder,
    PackageError,
    Preprocessing,
    RejectedArtifact,
    load_private_key,
)
from torch import nn

from ._candidates import (
    Candidate,
    bucket_shapes,
    choose,
    export_candidates,
    plan_buckets,
    torch_predict,
    verify_candidate,
)
from ._distill import LossPlan, UserLoss
from ._evaluation import EvalFn, Evaluator, default_metric
from ._export import model_family
from ._hf import is_hf_model, load_hf
from ._onnx_quant import OnnxQuantOptions
from ._progress import Reporter
from ._prune import count_params
from ._recipe import CompressStep, ExportSpec, QuantizeSpec, TrainSpec, VerifySpec
from ._robustness import RobustnessProbe, plan_perturbations
from ._signature import NamedIO, as_feeds, describe_io, take_rows
from ._steps import StepGate, StepResult, apply_steps
from ._verify import fit_to_shape, golden_tolerance

__all__ = [
    "CompressOptions",
    "ExportRecord",
    "CompressResult",
    "compress",
    "EvalFn",
    "AccuracyGateError",
]

log = logging.getLogger(__name__)


class AccuracyGateError(PackageError):
    """No artifact passed the accuracy gate (each one's figure is in the message)."""


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
    # The accuracy gate; None: accuracy (max drop 0.05) with labels, else cosine >= 0.99
    # (or the eval_fn's figure, named "score", with no floor).
    metric: MetricSpec | None = None
    # Signature: names for a tuple/single example input and for the outputs; symbolic dims
    # beyond batch ({"input_ids": {0: "batch", 1: "sequence"}}); shape buckets for formats
    # without dynamic dims ({"sequence": (32, 64, 128)}); pad value per input for buckets.
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    dynamic_dims: Mapping[str, Mapping[int, str]] | None = None
    buckets: Mapping[str, tuple[int, ...]] | None = None
    pad_values: Mapping[str, float] | None = None
    task: str | None = None  # manifest task; None: classification with labels, else embedding
    primary_output: str | None = None  # the output built-in metrics read (default: first)
    # fine-tuning/distillation loss: (outputs {name: tensor}, labels or None) -> scalar;
    # None: cross-entropy with labels, else matching the teacher's outputs (``_distill``)
    loss_fn: UserLoss | None = None
    student: nn.Module | None = None  # the student of a Distill step (else the step's spec)
    # transformers models: tokenizer (object or local folder), max_length, pooling
    tokenizer: Any = None
    max_length: int | None = None
    pooling: Literal["none", "mean"] = "none"


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
    status: str = "pending"  # shipped | rejected | failed
    reason: str | None = None
    quantization: str | None = None
    input_shapes: dict | None = None
    bucket_group: str | None = None


@dataclass
class CompressResult:
    name: str
    version: str
    model: nn.Module
    steps: list[StepResult]
    exports: list[ExportRecord]
    metric: MetricSpec
    baseline_score: float | None
    compressed_score: float | None
    params_before: int
    params_after: int
    package: Path | None = None
    report: Path | None = None
    plot: Path | None = None
    robustness: dict | None = None  # perturbations measured, samples, the gate (or None)

    @property
    def baseline_accuracy(self) -> float | None:
        return self.baseline_score if self.metric.name == "accuracy" else None

    @property
    def compressed_accuracy(self) -> float | None:
        return self.compressed_score if self.metric.name == "accuracy" else None

    def export(self, name: str) -> ExportRecord:
        for r in self.exports:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def shipped(self) -> list[ExportRecord]:
        return [r for r in self.exports if r.status == "shipped"]

    def summary(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "metric": self.metric.model_dump(),
            "baseline_score": self.baseline_score,
            "compressed_score": self.compressed_score,
            "baseline_accuracy": self.baseline_accuracy,
            "compressed_accuracy": self.compressed_accuracy,
            "params": [self.params_before, self.params_after],
            "package": str(self.package) if self.package else None,
            "package_bytes": self.package.stat().st_size if self.package else None,
            "steps": [s.__dict__ for s in self.steps],
            "robustness": self.robustness,
            "artifacts": [
                {
                    "name": r.name,
                    "format": r.format,
                    "precision": r.precision,
                    "quantization": r.quantization,
                    "size": r.size,
                    "seconds": round(r.seconds, 2),
                    "status": r.status,
                    "reason": r.reason,
                    "error": r.error,
                    "input_shapes": r.input_shapes,
                    "metrics": r.metrics.model_dump() if r.metrics else None,
                }  # fmt: skip
                for r in self.exports
            ],
        }


def _labels(y: Any) -> np.ndarray | None:
    if y is None:
        return None
    return y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)


def _split(data: Any) -> tuple[Any, Any]:
    """``(inputs, labels or None)`` or inputs alone (several inputs: a dict, not a tuple)."""
    if isinstance(data, tuple) and len(data) == 2:
        return data
    return data, None


def compress(
    model: nn.Module | str | Path,
    calib_data: Any,
    eval_fn: EvalFn | None = None,
    options: CompressOptions | None = None,
    *,
    train_data: Any = None,
    heldout: Any = None,
    out: str | Path = "edgefleet-out",
    signing_key: Ed25519PrivateKey | str | Path | None = None,
    quiet: bool = True,
) -> CompressResult:
    """Compress ``model`` with ``options.steps``, export every format/precision/quantization
    candidate, verify each on its runtime with the metric, ship those that pass the gate,
    package, sign and report.

    ``model``: an ``nn.Module``, a ``transformers`` model or a local model folder.
    ``calib_data``: example inputs, {name: array} (any dtype), a tuple or one array (named
    from ``forward``), or a list of texts for a transformers model; used to calibrate and,
    without ``heldout``, to verify. ``heldout``: (inputs, labels or None) or inputs.
    ``eval_fn(predict) -> float`` computes a metric the trainer does not know, where
    ``predict`` maps {input: array} -> {output: array}. ``train_data``: (inputs, labels or
    None) for steps that fine-tune.
    """
    opts = options or CompressOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(signing_key, str | Path):
        signing_key = load_private_key(signing_key)
    hf = None
    files: list[Path] = []
    preprocessing = opts.preprocessing
    dynamic_dims, pad_values = opts.dynamic_dims, dict(opts.pad_values or {})
    task = opts.task
    try:
        if is_hf_model(model):
            hf = load_hf(model, calib_data, tokenizer=opts.tokenizer, max_length=opts.max_length,
                         pooling=opts.pooling, input_names=opts.input_names)  # fmt: skip
            module, feeds, names = hf.module, hf.feeds, hf.input_names
            dynamic_dims = dynamic_dims or hf.dynamic_dims
            pad_values = {**hf.pad_values, **pad_values}
            files, task = hf.tokenizer_files, task or hf.task
            preprocessing = (preprocessing or Preprocessing()).model_copy(update={"text": hf.text})
        else:
            if not isinstance(model, nn.Module):
                raise ConfigError(f"expected a torch nn.Module, a transformers model or a model "
                                  f"folder, got {type(model).__name__}")  # fmt: skip
            module = model
            feeds = as_feeds(module, calib_data, opts.input_names)
            names = list(feeds)
        return _compress(module, feeds, names, eval_fn, opts, train_data, heldout, out,
                         signing_key, quiet, dynamic_dims, pad_values, task, preprocessing,
                         files, hf)  # fmt: skip
    finally:
        if hf is not None:
            hf.close()


def _compress(
    module, feeds, names, eval_fn, opts, train_data, heldout, out, signing_key, quiet,
    dynamic_dims, pad_values, task, preprocessing, files, hf,
) -> CompressResult:  # fmt: skip
    module = module.eval()
    wrapper = NamedIO(module, names, opts.output_names)
    io = describe_io(wrapper, take_rows(feeds, slice(0, 2)), dynamic_dims, pad_values)
    if heldout is not None:
        x, y = _split(heldout)
        eval_feeds = hf.tokenize(x) if hf is not None else as_feeds(module, x, names)
        labels = _labels(y)
    else:
        eval_feeds, labels = feeds, None
    if opts.verify.samples:
        eval_feeds = take_rows(eval_feeds, slice(0, opts.verify.samples))
        labels = None if labels is None else labels[: opts.verify.samples]
    primary = opts.primary_output or io.output_names[0]
    if primary not in io.output_names:
        raise ConfigError(f"primary_output {primary!r} is not an output: {io.output_names}")
    pspec = next(s for s in io.outputs if s.name == primary)
    classifier = (labels is not None or task == "classification" or bool(opts.labels)) and \
        len(pspec.shape) == 2 and pspec.dtype.startswith("float")  # fmt: skip
    task = task or ("classification" if classifier else "embedding")
    metric = opts.metric or (MetricSpec(name="score") if eval_fn is not None and labels is None
                             else default_metric(labels is not None, classifier))  # fmt: skip
    reference = torch_predict(wrapper)(eval_feeds)
    evaluator = Evaluator(eval_feeds, reference, metric, primary, labels, classifier, eval_fn)

    def score(m: nn.Module) -> float:
        return evaluator.score(torch_predict(NamedIO(m, names, opts.output_names)))[0]

    with Reporter(quiet=quiet) as reporter:
        baseline = score(module)
        gate = StepGate(metric.name, score, lambda v: metric.passes(v, baseline),
                        lambda v: f"{metric.name} {v:.4g} misses the gate "
                                  f"(reference {baseline:.4g})")  # fmt: skip
        train = None
        if train_data is not None:
            tx, ty = _split(train_data)
            tf = hf.tokenize(tx) if hf is not None else as_feeds(module, tx, names)
            # One input: a plain array, which the recipe steps' own losses (distill) take.
            train = (tf[names[0]] if len(names) == 1 else tf, _labels(ty))
        has_labels = train is not None and train[1] is not None and classifier
        losses = LossPlan.for_io(names, opts.output_names, primary=primary,
                                 classifier=classifier, has_labels=has_labels,
                                 user=opts.loss_fn)  # fmt: skip
        compressed, steps = apply_steps(
            module, opts.steps, train_spec=opts.train, train=train, gate=gate, losses=losses,
            student=opts.student, reporter=reporter, seed=opts.seed,
        )  # fmt: skip
        cwrap = NamedIO(compressed, names, opts.output_names)
        result = CompressResult(
            opts.name, opts.version, compressed, steps, [], metric, baseline, score(compressed),
            count_params(module), count_params(compressed),
        )  # fmt: skip
        _export_and_package(result, cwrap, io, feeds, eval_feeds, evaluator, wrapper, opts,
                            out, signing_key, reporter, pad_values, task, preprocessing,
                            files, baseline)  # fmt: skip
    result.report, result.plot = _write_report(result, out)
    return result


def _export_and_package(result, cwrap, io, feeds, eval_feeds, evaluator, ref_wrapper, opts, out,
                        signing_key, reporter, pad_values, task, preprocessing, files,
                        baseline) -> None:  # fmt: skip
    fam = model_family(cwrap)
    exported_ref = torch_predict(cwrap)
    golden_x = take_rows(eval_feeds, slice(0, opts.verify.golden_samples))
    buckets = plan_buckets(io, opts.buckets, feeds)
    if buckets[0] and set(opts.export.formats) - {"onnx"}:
        # Golden inputs fit the smallest bucket, so every bucket can run them (padded).
        golden_x = fit_to_shape(golden_x, bucket_shapes(io, buckets[0]), pad_values)
    calib = take_rows(feeds, slice(0, opts.quantize.calibration_samples))
    quant = OnnxQuantOptions(per_channel=opts.quantize.per_channel,
                             reduce_range=opts.quantize.reduce_range,
                             calibration_samples=opts.quantize.calibration_samples)  # fmt: skip
    evaluators: dict[str, tuple[Evaluator, dict, float, list[float]]] = {}
    plan = plan_perturbations(io.inputs, evaluator.feeds, opts.verify.robustness, pad_values)
    probe = RobustnessProbe(plan, opts.verify.robustness, evaluator.metric) if plan else None
    gate = probe.gate if probe else None
    result.robustness = {"perturbations": [p.name for p in plan],
                         "samples": opts.verify.robustness.samples,
                         "gate": gate.model_dump() if gate else None}  # fmt: skip

    def for_shape(shapes) -> tuple[Evaluator, dict, float, list[float]]:
        """The evaluator, parity reference, reference metric and the reference's figures
        under each perturbation, for inputs fitted to a bucket (the reference model sees the
        same padded/cut inputs as the artifact)."""
        key = repr(shapes)
        if key not in evaluators:
            if not shapes:
                ev, ref_value = evaluator, baseline
            else:
                fx = fit_to_shape(evaluator.feeds, shapes, pad_values)
                ev = copy.copy(evaluator)
                ev.feeds, ev.reference = fx, torch_predict(ref_wrapper)(fx)
                ref_value = ev.score(torch_predict(ref_wrapper))[0]
            robust_ref = probe.measure(torch_predict(ref_wrapper), ev) if probe else []
            evaluators[key] = (ev, exported_ref(ev.feeds), ref_value, robust_ref)
        return evaluators[key]

    cands: list[Candidate] = []
    total = len(opts.export.formats) * len(opts.export.precisions) * len(buckets)
    with tempfile.TemporaryDirectory(prefix="edgefleet-export-") as tmp, \
            reporter.task("export + verify", total) as advance:  # fmt: skip

        def done(c: Candidate) -> None:
            cands.append(c)
            if c.error is None:
                ev, parity_ref, ref_value, robust_ref = for_shape(c.input_shapes)
                try:
                    verify_candidate(c, io, ev, parity_ref, ref_value,
                                     latency_runs=opts.verify.latency_runs,
                                     pad_values=pad_values,
                                     robustness=(probe, robust_ref) if probe else None)  # fmt: skip
                except Exception as e:
                    # Never a guessed figure: an artifact this host cannot run is not shipped.
                    what = ("not measured here: this host's ONNX Runtime CPU provider could "
                            "not run the fp16 graph" if c.precision == "fp16"
                            else "verification failed")  # fmt: skip
                    c.error = f"{what}: {type(e).__name__}: {e}"[:400]
                    log.warning("verifying %s failed", c.name, exc_info=True)
            figure = f"{c.metrics.metric} {c.metrics.value:.4f}" if c.metrics else c.error
            advance(info=f"{c.name}: {figure}")

        export_candidates(
            cwrap, io, calib, Path(tmp), formats=list(opts.export.formats),
            precisions=list(opts.export.precisions), onnx_methods=opts.quantize.onnx,
            quant=quant, opset=opts.export.opset, buckets=opts.buckets, pad_values=pad_values,
            calib_n=opts.quantize.calibration_samples, family=fam, on_done=done,
        )  # fmt: skip
        choose(cands, evaluator.metric)
        for c in cands:
            result.exports.append(ExportRecord(
                c.name, c.format, c.precision, c.path, c.size, c.seconds, c.metrics, c.error,
                c.status, c.reason, c.quantization, c.input_shapes, c.bucket_group,
            ))  # fmt: skip
        shipped = [c for c in cands if c.status == "shipped"]
        if not shipped:
            lines = [f"{c.name}: {c.reason or c.error}" for c in cands]
            robust = " and the robustness gate" if probe and probe.gate else ""
            raise AccuracyGateError(
                f"no artifact passed the accuracy gate{robust} ({evaluator.metric.name}, "
                f"reference {baseline:.4g}):\n  " + "\n  ".join(lines)
            )
        _package(result, shipped, cands, io, golden_x, exported_ref, opts, out, signing_key,
                 pad_values, task, preprocessing, files, evaluator.metric)  # fmt: skip


def _package(result, shipped, cands, io, golden_x, exported_ref, opts, out, signing_key,
             pad_values, task, preprocessing, files, metric) -> None:  # fmt: skip
    with PackageBuilder(
        opts.name, opts.version, inputs=io.inputs, outputs=io.outputs, task=task,
        labels=list(opts.labels), preprocessing=preprocessing, description=opts.description,
        recipe_digest=opts.recipe_digest,
    ) as builder:  # fmt: skip
        builder.set_golden_inputs(golden_x)
        symbols = [s for s in io.symbols() if s != "batch"]
        builder.set_gate(metric, {k: v for k, v in pad_values.items() if k in io.input_names}
                         if symbols or pad_values else None)  # fmt: skip
        for f in files:
            builder.add_file(f, role="tokenizer", path=f"tokenizer/{f.name}")
        for c in cands:
            if c.status == "failed":
                builder.add_failed_export(c.format, c.precision, c.error or "failed")
            elif c.status == "rejected":
                m = c.metrics
                # the figure that rejected it: the gate's, or the worst one under perturbation
                fig = c.extra.get("rejected_figure") or (
                    (m.metric, m.value, m.reference_value) if m else (None, None, None)
                )
                builder.reject(RejectedArtifact(
                    name=c.name, format=c.format, precision=c.precision, metric=fig[0],
                    value=fig[1], reference_value=fig[2], reason=c.reason or "",
                ))  # fmt: skip
        for c in shipped:
            # Golden outputs come from the reference torch model (the exported one), on the
            # golden inputs fitted to the artifact's bucket; the tolerance from its parity.
            gx = fit_to_shape(golden_x, c.input_shapes, pad_values)
            golden = exported_ref(gx)
            span = np.concatenate([np.abs(v).ravel().astype(np.float64) for v in golden.values()])
            atol, rtol = golden_tolerance(c.precision, span, c.parity_error)
            builder.add_artifact(
                c.path, format=c.format, precision=c.precision, name=c.name,
                targets=list(opts.targets), fixed_batch=None if c.format == "onnx" else 1,
                metrics=c.metrics, golden_outputs=golden, golden_atol=atol, golden_rtol=rtol,
                quantization=c.quantization, input_shapes=c.input_shapes,
                bucket_group=c.bucket_group,
            )  # fmt: skip
        result.package = builder.build(out / f"{opts.name}-{opts.version}.efpkg",
                                       signing_key=signing_key)  # fmt: skip


def _write_report(result: CompressResult, out: Path) -> tuple[Path, Path]:
    import json

    from ._report import write_report

    (out / "report.json").write_text(json.dumps(result.summary(), indent=2, default=str))
    return write_report(result, out)
