"""Exporters: ONNX (+ ONNX Runtime static QDQ / dynamic int8), LiteRT .tflite and
ExecuTorch .pte (XNNPACK), fp32 and int8. Each returns the written path or raises.

Third-party exporters emit deprecation warnings we cannot fix; they are silenced around
each call only, so the caller's warning filters (errors in tests) stay intact.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "export_onnx",
    "quantize_onnx_static",
    "quantize_onnx_dynamic",
    "export_tflite",
    "export_pte",
    "EXPORTERS",
    "Exporter",
]

log = logging.getLogger(__name__)

# (model, sample batch-1 input, calibration inputs, out path, options) -> path
Exporter = Callable[..., Path]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def export_onnx(model: nn.Module, sample: np.ndarray, out: Path, opset: int = 17) -> Path:
    """Classic TorchScript-based exporter (``dynamo=False``): its graphs go through ORT's
    quantizer shape inference, the dynamo exporter's did not (measured)."""
    model = model.eval()
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            model,
            (torch.from_numpy(sample),),
            str(out),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return out


class _Reader:
    """ORT CalibrationDataReader over a numpy array, one sample per call."""

    def __init__(self, calib: np.ndarray, on_item: Callable[[], None] | None = None) -> None:
        self._items = iter(calib[i : i + 1] for i in range(len(calib)))
        self._on_item = on_item

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._items, None)
        if item is None:
            return None
        if self._on_item:
            self._on_item()
        return {"input": item}

    def rewind(self) -> None:  # some ORT versions call it
        pass


def quantize_onnx_static(
    fp32_onnx: Path,
    calib: np.ndarray,
    out: Path,
    *,
    per_channel: bool = True,
    reduce_range: bool = True,
    on_item: Callable[[], None] | None = None,
) -> Path:
    """Static QDQ int8: quant_pre_process (shape inference + ORT graph optimisation,
    BN folded), then per-channel symmetric int8 weights, uint8 activations calibrated on
    ``calib``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    pre = out.with_suffix(".pre.onnx")
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(calib, on_item)
    with _quiet():
        quant_pre_process(str(fp32_onnx), str(pre))
        quantize_static(
            str(pre),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
    pre.unlink(missing_ok=True)
    return out


def quantize_onnx_dynamic(fp32_onnx: Path, out: Path, reduce_range: bool = True) -> Path:
    """Dynamic int8: weights int8 ahead of time, activation ranges computed per call."""
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    pre = out.with_suffix(".pre.onnx")
    with _quiet():
        quant_pre_process(str(fp32_onnx), str(pre))
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, reduce_range=reduce_range)
    pre.unlink(missing_ok=True)
    return out


def _calibrate(prepared: nn.Module, calib: np.ndarray, on_item: Callable[[], None] | None):
    with torch.no_grad():
        for i in range(len(calib)):
            prepared(torch.from_numpy(calib[i : i + 1]))
            if on_item:
                on_item()


def export_tflite(
    model: nn.Module,
    sample: np.ndarray,
    out: Path,
    *,
    int8: bool = False,
    calib: np.ndarray | None = None,
    on_item: Callable[[], None] | None = None,
) -> Path:
    """LiteRT via litert-torch (no TensorFlow). int8: litert-torch's PT2E quantizer,
    per-channel symmetric, static activations calibrated on ``calib``."""
    args = (torch.from_numpy(sample),)
    model = copy.deepcopy(model).eval()
    with _quiet():
        import litert_torch

        litert_torch.config.show_progress = False
        if not int8:
            edge = litert_torch.convert(model, args)
        else:
            from litert_torch.quantize.pt2e_quantizer import (
                PT2EQuantizer,
                get_symmetric_quantization_config,
            )
            from litert_torch.quantize.quant_config import QuantConfig
            from torchao.quantization.pt2e import move_exported_model_to_eval
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            q = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            prepared = prepare_pt2e(torch.export.export(model, args).module(), q)
            _calibrate(prepared, calib if calib is not None else sample, on_item)
            converted = convert_pt2e(prepared, fold_quantize=False)
            # Exported graphs ignore .eval(); this rewrites dropout/BN ops to eval form.
            move_exported_model_to_eval(converted)
            converted.training = False
            edge = litert_torch.convert(converted, args, quant_config=QuantConfig(pt2e_quantizer=q))
        edge.export(str(out))
    return out


def export_pte(
    model: nn.Module,
    sample: np.ndarray,
    out: Path,
    *,
    int8: bool = False,
    calib: np.ndarray | None = None,
    on_item: Callable[[], None] | None = None,
) -> Path:
    """ExecuTorch .pte lowered to XNNPACK; int8 through PT2E with the XNNPACK quantizer."""
    args = (torch.from_numpy(sample),)
    model = copy.deepcopy(model).eval()
    with _quiet():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        if int8:
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            q = XNNPACKQuantizer().set_global(
                get_symmetric_quantization_config(is_per_channel=True)
            )
            prepared = prepare_pt2e(torch.export.export(model, args).module(), q)
            _calibrate(prepared, calib if calib is not None else sample, on_item)
            model = convert_pt2e(prepared)
        program = torch.export.export(model, args)
        et = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        out.write_bytes(et.to_executorch().buffer)
    return out


# Format -> exporter used by the pipeline; tests swap an entry to force a failure.
EXPORTERS: dict[str, Exporter] = {"tflite": export_tflite, "pte": export_pte}
