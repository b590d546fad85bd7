"""Import an existing ``.onnx`` or ``.tflite`` model (no PyTorch needed): read its named,
typed inputs and outputs from the file, quantize it where the format allows (ONNX, with the
torch-free ``_onnx_quant`` candidates), verify every candidate against the original file on
the user's held-out data with the named metric, gate, and write a signed package.

The original file is the reference: its outputs on the eval data are what every candidate
is scored against, and the golden outputs of the device smoke test come from it, with each
artifact's tolerance taken from its measured parity (so a broken artifact cannot pass its
own smoke test). A ``.tflite`` is verified and signed as is (quantizing an existing
``.tflite`` is not offered: ai-edge-quantizer wants the float model it came from).
Imports nothing of torch, directly or through ``edgefleet.trainer``'s lazy ``__init__``.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import edgefleet.sdk as ef
import numpy as np

from ._evaluation import Evaluator, default_metric
from ._onnx_quant import OnnxQuantOptions, quantize_onnx_each

__all__ = ["ImportOptions", "ImportResult", "ImportGateError", "import_model", "read_signature"]

log = logging.getLogger(__name__)

_ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 2: "uint8", 3: "int8", 5: "int16",
                6: "int32", 7: "int64", 9: "bool"}  # fmt: skip


class ImportGateError(ef.EdgefleetError):
    """No candidate of the imported model passes the accuracy gate."""


@dataclass(frozen=True)
class ImportOptions:
    """``metric``: the gate (default: accuracy within 5 points with labels in the eval
    data and a classifier output, else cosine >= 0.99 to the original). ``labels``: the
    key of the labels array in the eval ``.npz``. ``golden_samples``: smoke-test inputs."""

    name: str | None = None
    version: str = "1.0.0"
    task: str = "other"
    metric: ef.MetricSpec | None = None
    labels: str = "labels"
    quantize: OnnxQuantOptions = field(default_factory=OnnxQuantOptions)
    golden_samples: int = 4
    description: str = ""


@dataclass(frozen=True)
class ImportResult:
    package: Path
    metric: ef.MetricSpec
    shipped: dict[str, float]  # artifact name -> metric value
    rejected: dict[str, float | None]


def _symbol(name: str, axis: int) -> str:
    return "batch" if axis == 0 else f"{re.sub(r'[^A-Za-z0-9_]', '_', name)}_dim{axis}"


def _onnx_specs(path: Path) -> tuple[list[ef.TensorSpec], list[ef.TensorSpec]]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}

    def spec(v) -> ef.TensorSpec:
        t = v.type.tensor_type
        dtype = _ONNX_DTYPES.get(t.elem_type)
        if dtype is None:
            raise ef.ConfigError(f"{path.name}: {v.name!r} has ONNX element type {t.elem_type}, "
                              f"which edgefleet runtimes do not take")  # fmt: skip
        shape: list[int | str] = []
        for i, d in enumerate(t.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            else:
                sym = re.sub(r"[^A-Za-z0-9_]", "_", d.dim_param) if d.dim_param else ""
                shape.append(sym if re.match(r"^[A-Za-z_]", sym) else _symbol(v.name, i))
        return ef.TensorSpec(name=v.name, dtype=dtype, shape=shape)

    return [spec(v) for v in graph.input if v.name not in inits], [spec(v) for v in graph.output]


def _tflite_specs(path: Path) -> tuple[list[ef.TensorSpec], list[ef.TensorSpec]]:
    from edgefleet.sdk.backends._litert import import_interpreter

    _, interpreter, _ = import_interpreter()
    it = interpreter(model_path=str(path))

    def specs(details) -> list[ef.TensorSpec]:
        out = []
        for d in details:
            sig = list(d.get("shape_signature", d["shape"]))
            shape = [int(n) if n > 0 else _symbol(d["name"], i) for i, n in enumerate(sig)]
            name = d["name"].split(":")[0].removeprefix("serving_default_")
            out.append(ef.TensorSpec(name=name, dtype=np.dtype(d["dtype"]).name, shape=shape))
        return out

    return specs(it.get_input_details()), specs(it.get_output_details())


def read_signature(path: Path) -> tuple[list[ef.TensorSpec], list[ef.TensorSpec], int | None]:
    """(inputs, outputs, fixed batch) of a model file. A leading dim of 1 on every input is
    a fixed batch: the spec says ``batch`` and the SDK runs larger batches in chunks."""
    fmt = path.suffix.lower()
    if fmt == ".onnx":
        inputs, outputs = _onnx_specs(path)
    elif fmt == ".tflite":
        inputs, outputs = _tflite_specs(path)
    else:
        raise ef.ConfigError(f"expected a .onnx or .tflite model, got {path.name}")
    fixed = None
    if all(s.shape and s.shape[0] == 1 for s in inputs + outputs):
        fixed = 1
        inputs = [s.model_copy(update={"shape": ["batch", *s.shape[1:]]}) for s in inputs]
        outputs = [s.model_copy(update={"shape": ["batch", *s.shape[1:]]}) for s in outputs]
    return inputs, outputs, fixed


def _npz(path: Path | None, what: str) -> dict[str, np.ndarray]:
    if path is None:
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ef.ConfigError(f"{what} {path}: not a readable .npz ({e})") from e


def _batches(data: dict[str, np.ndarray], size: int):
    n = len(next(iter(data.values())))
    for i in range(0, n, size):
        yield {k: v[i : i + size] for k, v in data.items()}


def import_model(
    model: str | Path,
    *,
    eval_data: str | Path,
    out: str | Path,
    calib: str | Path | None = None,
    signing_key=None,
    options: ImportOptions | None = None,
) -> ImportResult:
    """Import ``model`` (.onnx/.tflite) into a verified, gated, signed package at ``out``
    (a directory, or an archive when it ends with ``.efpkg``).

    ``eval_data``/``calib``: ``.npz`` files with one array per model input (named as the
    model names them; ``options.labels`` optional in ``eval_data``), samples on axis 0.
    """
    opts = options or ImportOptions()
    src = Path(model)
    if not src.is_file():
        raise ef.ConfigError(f"no model file at {src}")
    fmt = src.suffix.lower().lstrip(".")
    inputs, outputs, fixed = read_signature(src)
    ev = _npz(Path(eval_data), "eval data")
    labels = ev.pop(opts.labels, None)
    want = {s.name for s in inputs}
    if set(ev) != want:
        got = sorted(ev) + ([opts.labels] if labels is not None else [])
        raise ef.ConfigError(
            f"eval data must hold the inputs {sorted(want)} (and optionally labels under "
            f"{opts.labels!r}), got {got}"
        )
    cal = _npz(Path(calib), "calibration data") if calib is not None else {}
    if cal and set(cal) != want:
        raise ef.ConfigError(
            f"calibration data must hold the inputs {sorted(want)}, got {sorted(cal)}"
        )
    name = opts.name or re.sub(r"[^A-Za-z0-9._-]", "-", src.stem)[:64]
    primary = outputs[0]
    classifier = len(primary.shape) == 2 and primary.dtype.startswith("float")
    metric = opts.metric or default_metric(labels is not None, classifier)
    with tempfile.TemporaryDirectory(prefix="edgefleet-import-") as tmp:
        work = Path(tmp)
        orig = work / f"model.fp32.{fmt}"
        shutil.copyfile(src, orig)
        cands = [(orig, "fp32", None)]
        if fmt == "onnx":
            batch = 1 if fixed else 16
            for c, err in quantize_onnx_each(orig, work / "q", list(_batches(cal or ev, batch)),
                                             opts.quantize) if (cal or ev) else []:  # fmt: skip
                if err is None:
                    cands.append((c.path, c.precision, c.method))
                else:
                    log.warning("quantization %s failed: %s", c.method, err)
        probe = _build(name, opts, inputs, outputs, cands, fixed, fmt, work / "probe")
        scores = {}
        evaluator = None
        for path, _, _ in cands:
            with ef.load(probe, options=ef.LoadOptions(artifact=path.name, warmup=0)) as m:
                if evaluator is None:  # the original file's outputs are the reference
                    ref = m.predict(ev)
                    evaluator = Evaluator(ev, ref, metric, primary.name, labels, classifier)
                value, figures, outs = evaluator.score(m.predict)
                err = max(float(np.max(np.abs(outs[k].astype(np.float64) - ref[k])))
                          for k in ref if ref[k].dtype.kind == "f") if ref else 0.0  # fmt: skip
            scores[path.name] = (value, figures, err)
        ref_value = scores[orig.name][0]
        passing = [c for c in cands if metric.passes(scores[c[0].name][0], ref_value)]
        if not passing:
            figures = ", ".join(f"{k}={v[0]:.4g}" for k, v in scores.items())
            raise ImportGateError(
                f"no candidate of {src.name} passes the gate {metric.name} "
                f"(floor {metric.floor}, max drop {metric.max_drop}): {figures}"
            )
        golden = {k: v[: opts.golden_samples] for k, v in ev.items()}
        with ef.load(probe, options=ef.LoadOptions(artifact=orig.name, warmup=0)) as m:
            golden_out = m.predict(golden)
        rejected = [
            ef.RejectedArtifact(name=p.name, format=fmt, precision=prec, metric=metric.name,
                             value=scores[p.name][0], reference_value=ref_value,
                             reason=f"{metric.name} {scores[p.name][0]:.4g} fails the gate")
            for p, prec, _ in cands if (p, prec, _) not in passing
        ]  # fmt: skip
        extra = {"metrics": {p.name: ef.ArtifactMetrics(
            samples=len(next(iter(ev.values()))), metric=metric.name, value=scores[p.name][0],
            reference_value=ref_value, scores=scores[p.name][1],
            max_abs_error=scores[p.name][2]) for p, _, _ in passing},
            "golden": golden_out, "atol": {p.name: 1.5 * scores[p.name][2] + 1e-5
                                            for p, _, _ in passing}}  # fmt: skip
        path = _build(name, opts, inputs, outputs, passing, fixed, fmt, Path(out),
                      golden_in=golden, extra=extra, metric=metric, rejected=rejected,
                      signing_key=signing_key)  # fmt: skip
    shipped = {p.name: scores[p.name][0] for p, _, _ in passing}
    log.info("imported %s: shipped %s, rejected %s", src.name, shipped, [r.name for r in rejected])
    return ImportResult(path, metric, shipped, {r.name: r.value for r in rejected})


def _build(name, opts, inputs, outputs, cands, fixed, fmt, out: Path, *, golden_in=None,
           extra=None, metric=None, rejected=(), signing_key=None) -> Path:  # fmt: skip
    with ef.PackageBuilder(name, opts.version, inputs=inputs, outputs=outputs, task=opts.task,
                        description=opts.description) as b:  # fmt: skip
        if golden_in is not None:
            b.set_golden_inputs(golden_in)
        if metric is not None:
            b.set_gate(metric)
        for r in rejected:
            b.reject(r)
        for path, precision, method in cands:
            kw = {}
            if extra is not None:
                kw = dict(metrics=extra["metrics"][path.name], golden_outputs=extra["golden"],
                          golden_atol=extra["atol"][path.name], golden_rtol=0.0)  # fmt: skip
            b.add_artifact(path, format=fmt, precision=precision, name=path.name,
                           fixed_batch=fixed, quantization=method, **kw)  # fmt: skip
        return b.build(out, signing_key=signing_key)
