"""Exporters: ONNX (dynamic axes), LiteRT .tflite and ExecuTorch .pte (XNNPACK), fp32 and
quantized. Each takes a ``NamedIO``-style module (positional inputs, tuple of outputs) and
example args, and returns the written path or raises. ONNX quantization is torch-free and
lives in ``_onnx_quant``.

Quantization per family (``model_family``): CNNs keep static int8 (PT2E, calibrated);
transformers/MLPs get dynamic-activation int8 (or int4) weights on Linear layers: torchao
``Int8DynamicActivationIntxWeightConfig`` for ExecuTorch/XNNPACK (static PT2E fails at the
attention mask, shared FACTS) and ai-edge-quantizer dynamic-range int8 for LiteRT.

Third-party exporters emit deprecation warnings we cannot fix; they are silenced around
each call only, so the caller's warning filters (errors in tests) stay intact.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypedDict, Unpack

import numpy as np
import torch
from torch import nn

from ._signature import Dims

__all__ = [
    "export_onnx",
    "export_tflite",
    "export_pte",
    "model_family",
    "quant_method",
    "EXPORTERS",
    "Exporter",
    "TorchQuant",
]

log = logging.getLogger(__name__)

# (module, example args tuple, out path, **TorchQuant) -> path
Exporter = Callable[..., Path]
Args = tuple[torch.Tensor, ...]
Sample = np.ndarray | Sequence[np.ndarray] | Args


class TorchQuant(TypedDict, total=False):
    """Keyword options of the torch-side exporters (all optional)."""

    int8: bool
    int4: bool
    calib: Sequence[Args] | None  # batch-1 args tuples for static (PT2E) calibration
    on_item: Callable[[], None] | None  # called per calibration item (progress)
    family: str | None  # cnn / transformer; None: ``model_family(model)``


def _prepare(model: nn.Module, sample: Sample, q: TorchQuant
             ) -> tuple[nn.Module, Args, str, bool, bool]:  # fmt: skip
    """(a copy of the model in eval mode, example args, family, int8, int4)."""
    model = copy.deepcopy(model).eval()
    family = q.get("family") or model_family(model)
    return model, _args(sample), family, bool(q.get("int8")), bool(q.get("int4"))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def model_family(model: nn.Module) -> str:
    """cnn when Conv layers outnumber Linear layers, else transformer/mlp (same handling
    on the torch side: dynamic quantization of Linear layers)."""
    convs = sum(isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d) for m in model.modules())
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    return "cnn" if convs > linears else "transformer"


def quant_method(fmt: str, family: str, precision: str) -> str:
    """The method string recorded as ``Artifact.quantization`` for torch-side exports."""
    if precision == "int4":
        return "8da4w-g32" if fmt == "pte" else "dynamic-int4-weights"
    if family == "cnn":
        return "static-pt2e-per-channel"
    return "8da8w-per-channel" if fmt == "pte" else "dynamic-range-int8"


def _args(sample: Sample) -> Args:
    items = [sample] if isinstance(sample, np.ndarray | torch.Tensor) else list(sample)
    return tuple(torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in items)


def export_onnx(
    model: nn.Module, sample: Sample, out: Path, opset: int = 17, *,
    input_names: Sequence[str] = ("input",), output_names: Sequence[str] = ("logits",),
    dims: Dims | None = None,
) -> Path:  # fmt: skip
    """Classic TorchScript-based exporter (``dynamo=False``): its graphs go through ORT's
    quantizer; ``dims`` ({tensor name: {axis: symbol}}) become dynamic axes (default:
    axis 0 of every input and output is "batch")."""
    names = [*input_names, *output_names]
    dims = dims if dims is not None else {n: {0: "batch"} for n in names}
    model = model.eval()
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            model, _args(sample), str(out), input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes={n: dict(d) for n, d in dims.items() if d and n in names},
            opset_version=opset, dynamo=False,
        )  # fmt: skip
    return out


def _calibrate(prepared: nn.Module, calib: Sequence[Args], on_item: Callable[[], None] | None):
    with torch.no_grad():
        for args in calib:
            prepared(*args)
            if on_item:
                on_item()


def _torchao_dynamic(model: nn.Module, bits: int) -> nn.Module:
    """Dynamic int8 activations x int``bits`` weights on every Linear (8da8w per channel,
    8da4w in groups of 32): the linear-layer configs XNNPACK lowers."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup

    gran = PerAxis(0) if bits == 8 else PerGroup(32)

    def linear(m: nn.Module, fqn: str) -> bool:
        return isinstance(m, nn.Linear) and (bits == 8 or m.in_features % 32 == 0)

    cfg = Int8DynamicActivationIntxWeightConfig(
        weight_dtype=torch.int8 if bits == 8 else torch.int4, weight_granularity=gran
    )
    with torch.no_grad():
        quantize_(model, cfg, filter_fn=linear)
    return model


def export_tflite(model: nn.Module, sample: Sample, out: Path, **q: Unpack[TorchQuant]) -> Path:
    """LiteRT via litert-torch (no TensorFlow), 64-bit I/O kept (int64 ids stay int64).
    CNN int8: litert-torch's PT2E quantizer, per-channel symmetric, static activations
    calibrated on ``calib``. Others: ai-edge-quantizer dynamic-range int8 (int4) weights
    on the fp32 flatbuffer."""
    model, args, family, int8, int4 = _prepare(model, sample, q)
    calib, on_item = q.get("calib"), q.get("on_item")
    quantized = int8 or int4
    with _quiet():
        import litert_torch

        litert_torch.config.show_progress = False
        if quantized and family == "cnn" and not int4:
            from litert_torch.quantize.pt2e_quantizer import (
                PT2EQuantizer,
                get_symmetric_quantization_config,
            )
            from litert_torch.quantize.quant_config import QuantConfig
            from torchao.quantization.pt2e import move_exported_model_to_eval
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            q = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            prepared = prepare_pt2e(torch.export.export(model, args).module(), q)
            _calibrate(prepared, calib or [args], on_item)
            converted = convert_pt2e(prepared, fold_quantize=False)
            # Exported graphs ignore .eval(); this rewrites dropout/BN ops to eval form.
            move_exported_model_to_eval(converted)
            converted.training = False
            edge = litert_torch.convert(converted, args, quant_config=QuantConfig(pt2e_quantizer=q),
                                        enable_x64=True)  # fmt: skip
            edge.export(str(out))
            return out
        edge = litert_torch.convert(model, args, enable_x64=True)
        if not quantized:
            edge.export(str(out))
            return out
        fp32 = out.with_suffix(".fp32.tflite")
        edge.export(str(fp32))
        from ai_edge_quantizer import quantizer, recipe

        qt = quantizer.Quantizer(str(fp32))
        qt.load_quantization_recipe(
            recipe.dynamic_wi4_afp32() if int4 else recipe.dynamic_wi8_afp32()
        )
        qt.quantize(enable_progress_report=False).export_model(str(out), overwrite=True)
        fp32.unlink(missing_ok=True)
    return out


def export_pte(model: nn.Module, sample: Sample, out: Path, **q: Unpack[TorchQuant]) -> Path:
    """ExecuTorch .pte lowered to XNNPACK. CNN int8: PT2E with the XNNPACK quantizer
    (calibrated). Others: torchao 8da8w / 8da4w on Linear layers."""
    model, args, family, int8, int4 = _prepare(model, sample, q)
    calib, on_item = q.get("calib"), q.get("on_item")
    with _quiet():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        if int4 or (int8 and family != "cnn"):
            model = _torchao_dynamic(model, 4 if int4 else 8)
        elif int8:
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            q = XNNPACKQuantizer().set_global(
                get_symmetric_quantization_config(is_per_channel=True)
            )
            prepared = prepare_pt2e(torch.export.export(model, args).module(), q)
            _calibrate(prepared, calib or [args], on_item)
            model = convert_pt2e(prepared)
        program = torch.export.export(model, args)
        et = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        out.write_bytes(et.to_executorch().buffer)
    return out


def calib_args(feeds: Mapping[str, np.ndarray], names: Sequence[str], n: int) -> list[Args]:
    """Batch-1 calibration args, in input order."""
    count = min(n, len(next(iter(feeds.values()))))
    return [tuple(torch.from_numpy(feeds[k][i : i + 1]) for k in names) for i in range(count)]


# Format -> exporter used by the pipeline; tests swap an entry to force a failure.
EXPORTERS: dict[str, Exporter] = {"tflite": export_tflite, "pte": export_pte}
