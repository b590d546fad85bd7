"""ONNX Runtime quantization that suits the model, without torch (onnx + onnxruntime only).

``quantize_onnx(fp32.onnx, out_dir, calib, options)`` returns the candidate artifacts
(path, precision, method); the caller verifies each and its accuracy gate keeps the best.
Used by the trainer after its own ONNX export, and by ONNX import (no torch installed).

Per-family defaults, chosen by what the graph holds (``detect_family``):
- ``cnn`` (Conv layers dominate): static QDQ int8, per-channel symmetric int8 weights,
  uint8 activations calibrated on ``calib``.
- ``transformer`` / ``mlp`` (MatMul/Gemm with constant weights dominate): dynamic int8 on
  MatMul/Gemm only, per-channel; embeddings (Gather), LayerNorm and Softmax stay float.
  Static QDQ over attention gave cosine 0.43 on a BERT-like encoder, dynamic 0.97-0.9999
  (see shared FACTS). ``int4`` adds weight-only 4-bit MatMuls (``MatMulNBits``).

``convert_fp16`` writes the half-precision graph for GPU boards (TensorRT/CUDA), with
fp32 inputs and outputs kept (``keep_io_types``), so devices feed the same arrays.

``reduce_range`` (7-bit weights): x86 AVX2 without VNNI multiplies u8 x s8 with
``vpmaddubsw``, whose int16 sums saturate with full 8-bit weights (ORT docs); VNNI and
ARM dot-product instructions do not, so there full-range weights keep more precision.
``reduce_range=None`` decides from ``cpu_has_int8_dot()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "OnnxQuantOptions",
    "QuantCandidate",
    "cpu_has_int8_dot",
    "detect_family",
    "quantize_onnx",
    "quantize_onnx_each",
    "quantize_static_qdq",
    "quantize_dynamic_int8",
    "quantize_weight_only_int4",
    "convert_fp16",
    "FP16_METHOD",
]

log = logging.getLogger(__name__)

Family = Literal["cnn", "transformer", "mlp"]
Method = Literal["static-qdq", "dynamic", "int4"]


@dataclass(frozen=True)
class OnnxQuantOptions:
    """What to try. ``methods=None`` picks by family: cnn -> static QDQ (plus dynamic when
    no calibration data is given); transformer/mlp -> dynamic int8. ``int4=True`` adds the
    weight-only int4 candidate (``methods`` naming "int4" does too)."""

    family: Literal["auto", "cnn", "transformer", "mlp"] = "auto"
    methods: tuple[Method, ...] | None = None
    per_channel: bool = True
    reduce_range: bool | None = None  # None: False where the CPU has VNNI / ARM dot-product
    int4: bool = False
    int4_block_size: int = 32
    calibration_samples: int = 128


@dataclass(frozen=True)
class QuantCandidate:
    path: Path
    precision: Literal["int8", "int4"]
    method: str  # recorded as Artifact.quantization, e.g. "dynamic-per-channel"

    @property
    def name(self) -> str:
        return self.path.name


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # The quantizer warns about things we decided on purpose (opset, pre-processing).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@cache
def cpu_has_int8_dot() -> bool:
    """True when int8 dot-product instructions exist (x86 VNNI/AMX, ARM ``asimddp``/Apple)."""
    machine = platform.machine().lower()
    if platform.system() == "Darwin" and machine in ("arm64", "aarch64"):
        return True
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("flags", "features"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})
    return False


def detect_family(model_path: str | os.PathLike) -> Family:
    """cnn when Conv nodes outnumber MatMul/Gemm nodes with a constant weight; transformer
    when there is attention (Softmax between MatMuls); mlp otherwise."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    ops = Counter(n.op_type for n in graph.node)
    const_mm = sum(1 for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits)
    if ops["Conv"] + ops["ConvTranspose"] > const_mm:
        return "cnn"
    if ops["Softmax"] and ops["MatMul"] > const_mm:  # a MatMul of two activations: attention
        return "transformer"
    return "mlp"


class _Reader:
    """ORT CalibrationDataReader over an iterable of {input name: array} batches."""

    def __init__(self, data: Iterable[Mapping[str, np.ndarray]], limit: int,
                 on_item: Callable[[], None] | None) -> None:  # fmt: skip
        self._items = iter(_take(data, limit))
        self._on_item = on_item

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._items, None)
        if item is not None and self._on_item:
            self._on_item()
        return item

    def rewind(self) -> None:  # some ORT versions call it
        pass


def _take(data: Iterable[Mapping[str, np.ndarray]], limit: int) -> Iterator[dict]:
    for i, item in enumerate(data):
        if i >= limit:
            return
        yield {k: np.ascontiguousarray(v) for k, v in item.items()}


def quantize_static_qdq(
    fp32_onnx: Path, out: Path, calib: Iterable[Mapping[str, np.ndarray]], *,
    per_channel: bool = True, reduce_range: bool = True, limit: int = 128,
    on_item: Callable[[], None] | None = None,
) -> Path:  # fmt: skip
    """quant_pre_process (shape inference, ORT optimisation, BN folded), then QDQ with
    per-channel symmetric int8 weights and uint8 activations calibrated on ``calib``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    pre = out.with_suffix(".pre.onnx")
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(calib, limit, on_item)
    with _quiet():
        try:
            quant_pre_process(str(fp32_onnx), str(pre))
            src = pre
        except Exception as e:  # symbolic shape inference gives up on some graphs
            log.info("quant_pre_process failed (%s); quantizing without it", e)
            src = fp32_onnx
        quantize_static(
            str(src), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
            reduce_range=reduce_range, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )  # fmt: skip
    pre.unlink(missing_ok=True)
    return out


def quantize_dynamic_int8(
    fp32_onnx: Path, out: Path, *, per_channel: bool = True, reduce_range: bool = False,
    op_types: tuple[str, ...] = ("MatMul", "Gemm"), default_float: bool = False,
) -> Path:  # fmt: skip
    """Dynamic int8 on MatMul/Gemm with constant weights only: Gather (embeddings),
    LayerNorm, Softmax and activation x activation MatMuls (attention) stay float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(
            str(fp32_onnx), str(out), op_types_to_quantize=list(op_types),
            per_channel=per_channel, reduce_range=reduce_range, weight_type=QuantType.QInt8,
            extra_options={"MatMulConstBOnly": True,
                           # ORT's fused contrib ops (Attention, BiasGelu) have no shape
                           # inference in the quantizer: their outputs are float.
                           **({"DefaultTensorType": onnx.TensorProto.FLOAT} if default_float
                              else {})},
        )  # fmt: skip
    return out


def quantize_weight_only_int4(fp32_onnx: Path, out: Path, *, block_size: int = 32) -> Path:
    """4-bit weights in blocks of ``block_size`` (``MatMulNBits``, symmetric), activations
    float; accuracy_level 4 lets CPUs compute in int8 where it has kernels for it."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    with _quiet():
        q = MatMulNBitsQuantizer(
            onnx.load(str(fp32_onnx)), bits=4, block_size=block_size, is_symmetric=True,
            accuracy_level=4, op_types_to_quantize=("MatMul",),
        )  # fmt: skip
        q.process()
        q.model.save_model_to_file(str(out), use_external_data_format=False)
    return out


# Recorded as Artifact.quantization for the fp16 ONNX artifact.
FP16_METHOD = "float16-fp32-io"


def convert_fp16(fp32_onnx: Path, out: Path, *, keep_io_types: bool = True) -> Path:
    """fp16 weights and activations; with ``keep_io_types`` the graph casts its fp32 inputs
    and outputs at the edges. ONNX Runtime's copy of onnxconverter-common's converter (no
    extra dependency); ORT's CPU provider runs such a graph (ops without an fp16 CPU kernel
    get casts inserted), so its parity can be measured on a host without a GPU."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with _quiet():
        model = convert_float_to_float16(onnx.load(str(fp32_onnx)), keep_io_types=keep_io_types)
    onnx.save(model, str(out))
    return out


def _methods(family: Family, opts: OnnxQuantOptions, have_calib: bool) -> list[Method]:
    if opts.methods is not None:
        methods = list(opts.methods)
    elif family == "cnn":
        methods = ["static-qdq"] if have_calib else ["dynamic"]
    else:
        methods = ["dynamic"]
    if opts.int4 and "int4" not in methods:
        methods.append("int4")
    if "static-qdq" in methods and not have_calib:
        raise ValueError("static QDQ quantization needs calibration data (calib=...), got none")
    return methods


def quantize_onnx(fp32_onnx: str | os.PathLike, out_dir: str | os.PathLike, *args, **kw
                  ) -> list[QuantCandidate]:  # fmt: skip
    """Write every quantized candidate of ``fp32_onnx`` into ``out_dir``; the arguments of
    ``quantize_onnx_each`` (``calib``: batches as {input name: array}, which static QDQ
    needs; ``options``; ``on_item``). A method that fails raises."""
    return [c for c, _ in quantize_onnx_each(fp32_onnx, out_dir, *args, raise_errors=True, **kw)]


def quantize_onnx_each(
    fp32_onnx: str | os.PathLike,
    out_dir: str | os.PathLike,
    calib: Iterable[Mapping[str, np.ndarray]] | None = None,
    options: OnnxQuantOptions | None = None,
    *,
    on_item: Callable[[], None] | None = None,
    raise_errors: bool = False,
) -> list[tuple[QuantCandidate, str | None]]:
    """Like ``quantize_onnx`` but a failing method yields (candidate, error) instead of
    raising, so one broken quantizer does not hide the others."""
    opts = options or OnnxQuantOptions()
    src, out_dir = Path(fp32_onnx), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    family = detect_family(src) if opts.family == "auto" else opts.family
    calib_list = None if calib is None else list(_take(calib, opts.calibration_samples))
    methods = _methods(family, opts, bool(calib_list))
    fast_dot = cpu_has_int8_dot()
    reduce = (not fast_dot) if opts.reduce_range is None else opts.reduce_range
    pc = "per-channel" if opts.per_channel else "per-tensor"
    rr = "-reduce-range" if reduce else ""
    log.info("quantizing %s as %s: %s (int8 dot-product: %s)", src.name, family, methods, fast_dot)
    results: list[tuple[QuantCandidate, str | None]] = []
    for method in methods:
        if method == "static-qdq":
            cand = QuantCandidate(out_dir / "model.int8.onnx", "int8", f"static-qdq-{pc}{rr}")
        elif method == "dynamic":
            name = "model.int8.onnx" if "static-qdq" not in methods else "model.int8-dynamic.onnx"
            cand = QuantCandidate(out_dir / name, "int8", f"dynamic-{pc}{rr}")
        elif method == "int4":
            g = opts.int4_block_size
            cand = QuantCandidate(out_dir / "model.int4.onnx", "int4", f"weight-only-int4-g{g}")
        else:
            raise ValueError(f"unknown ONNX quantization method {method!r}; "
                             "expected static-qdq, dynamic or int4")  # fmt: skip
        try:
            if method == "static-qdq":
                quantize_static_qdq(src, cand.path, calib_list or [], per_channel=opts.per_channel,
                                    reduce_range=reduce, limit=opts.calibration_samples,
                                    on_item=on_item)  # fmt: skip
            elif method == "dynamic":
                quantize_dynamic_int8(src, cand.path, per_channel=opts.per_channel,
                                      reduce_range=reduce)  # fmt: skip
            else:
                quantize_weight_only_int4(src, cand.path, block_size=opts.int4_block_size)
            results.append((cand, None))
        except Exception as e:
            if raise_errors:
                raise
            log.warning("ONNX %s quantization failed: %s", method, e, exc_info=True)
            results.append((cand, f"{type(e).__name__}: {e}"))
    return results
