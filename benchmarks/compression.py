"""Compression benchmark: fp32 vs int8, measured side by side in one run.

    .venv/bin/python benchmarks/compression.py --json

Latency/size: a MobileNetV2-class model (width 1.0, 3x96x96 by default, batch 1), ONNX Runtime
CPU, one intra-op thread, ORT_ENABLE_ALL, every model timed interleaved (medians).
Accuracy: the digits CNN on held-out scikit-learn digits, fp32 torch vs the int8 ONNX
artifact run by ONNX Runtime.

``speedup`` is quantization alone: the same network, fp32 vs the trainer's int8 artifact
(``quant_pre_process`` + static QDQ int8, per-channel symmetric 7-bit weights, uint8
activations, calibrated). ``quant_variants`` times the other ORT quantization settings in
the same rounds (QOperator, int8 activations, symmetric activations, full-range weights,
ReLU6 -> ReLU, removable activations kept). ``pipeline_*`` adds the trainer's structured
channel pruning (``--prune``) and magnitude pruning (``--sparsity``, wire size only) in
front of the quantizer: its speed-up comes from the smaller network, not from int8 kernels,
and its MobileNetV2 accuracy is not measured (random weights), so it is kept apart.
The MobileNetV2 weights are random (seeded): latency and size do not depend on weight
values, and nothing may be downloaded. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _sessions(paths: dict[str, Path]):
    import onnxruntime as ort

    out = {}
    for k, p in paths.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        out[k] = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    return out


def _interleaved(paths: dict[str, Path], x: np.ndarray, runs: int) -> dict[str, float]:
    """Median ms per model; each round runs every model once so load drift hits all alike."""
    sessions = _sessions(paths)
    feed = {"input": x}
    for s in sessions.values():
        for _ in range(10):
            s.run(None, feed)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feed)
            times[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def _digits(prune: float) -> dict:
    from edgefleet.trainer import (
        CompressOptions,
        ExportSpec,
        PruneChannels,
        QuantizeSpec,
        VerifySpec,
        load_recipe,
        train_model,
    )  # fmt: skip
    from edgefleet.trainer._pipeline import compress

    recipe = load_recipe("digits")
    model, ds = train_model(recipe)
    rng = np.random.default_rng(0)
    calib = ds.x_train[rng.permutation(len(ds.x_train))]
    out = {}
    for key, steps in (
        ("quant", ()),
        ("pipeline", (PruneChannels(step="prune_channels", amount=prune, finetune_epochs=3),)),
    ):
        opts = CompressOptions(
            name=f"digits-bench-{key}",
            steps=steps,
            train=recipe.train,
            quantize=QuantizeSpec(calibration_samples=128),
            export=ExportSpec(formats=["onnx"], precisions=["int8"]),
            verify=VerifySpec(latency_runs=3),
        )
        with tempfile.TemporaryDirectory() as tmp:
            res = compress(model, calib, options=opts, train_data=(ds.x_train, ds.y_train),
                           heldout=(ds.x_test, ds.y_test), out=tmp)  # fmt: skip
        out[key] = res.export("model.int8.onnx").metrics.accuracy
        out["fp32_acc"] = res.baseline_accuracy
        out["heldout_samples"] = res.export("model.int8.onnx").metrics.samples
    return out


def _variants(base, pre: Path, calib: np.ndarray, work: Path) -> dict[str, Path]:
    """Other ORT static quantization settings, from the same pre-processed fp32 graph."""
    import copy

    from edgefleet.trainer._export import _Reader, export_onnx, quantize_onnx_static
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from torch import nn

    def q(name: str, src: Path = pre, fmt=QuantFormat.QDQ, act=QuantType.QUInt8,
          rr: bool = True, **extra) -> Path:  # fmt: skip
        reader = type("Reader", (_Reader, CalibrationDataReader), {})(calib)
        quantize_static(str(src), str(work / f"{name}.onnx"), reader, quant_format=fmt,
                        per_channel=True, reduce_range=rr, activation_type=act,
                        weight_type=QuantType.QInt8, extra_options=extra)  # fmt: skip
        return work / f"{name}.onnx"

    relu = copy.deepcopy(base)
    for mod in relu.modules():
        for n, c in mod.named_children():
            if isinstance(c, nn.ReLU6):
                setattr(mod, n, nn.ReLU(inplace=True))
    relu_fp32 = export_onnx(relu, calib[:1], work / "relu_fp32.onnx")
    sym = {"WeightSymmetric": True}
    return {
        "qdq_u8_full_range_w": q("qdq_u8_full", rr=False, **sym),
        "qdq_s8": q("qdq_s8", act=QuantType.QInt8, rr=False, **sym),
        "qdq_s8_symmetric_act": q(
            "qdq_s8s", act=QuantType.QInt8, rr=False, ActivationSymmetric=True, **sym
        ),
        "qdq_u8_keep_activations": q("qdq_keep", QDQKeepRemovableActivations=True, **sym),
        "qoperator_u8": q("qop_u8", fmt=QuantFormat.QOperator),
        "qoperator_s8": q("qop_s8", fmt=QuantFormat.QOperator, act=QuantType.QInt8),
        "qdq_u8_relu_not_relu6": quantize_onnx_static(relu_fp32, calib, work / "relu.onnx"),
        "fp32_relu_not_relu6": relu_fp32,  # not int8: what ReLU alone gives
    }


def _mobilenet(prune: float, sparsity: float, runs: int, size: int, width: float) -> dict:
    import torch
    from edgefleet.sdk import TrustPolicy, open_package
    from edgefleet.trainer import (
        CompressOptions,
        ExportSpec,
        MagnitudePrune,
        MobileNetV2Like,
        PruneChannels,
        QuantizeSpec,
        VerifySpec,
    )  # fmt: skip
    from edgefleet.trainer._export import export_onnx
    from edgefleet.trainer._pipeline import compress
    from onnxruntime.quantization import quant_pre_process

    torch.manual_seed(0)
    base = MobileNetV2Like(num_classes=1000, width=width).eval()
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((32, 3, size, size)).astype(np.float32)
    x = calib[:1]
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        fp32 = export_onnx(base, x, work / "fp32.onnx")
        pre = work / "fp32.pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        variants = _variants(base, pre, calib, work)
        packages, int8 = {}, {}
        for key, steps in (("quant", []), ("pipeline", [
            PruneChannels(step="prune_channels", amount=prune, finetune_epochs=0),
            *([MagnitudePrune(step="magnitude_prune", amount=sparsity)] if sparsity else []),
        ])):  # fmt: skip
            opts = CompressOptions(
                name=f"mobilenet-v2-bench-{key}",
                steps=tuple(steps),
                quantize=QuantizeSpec(calibration_samples=len(calib)),
                export=ExportSpec(formats=["onnx"], precisions=["int8"]),
                verify=VerifySpec(samples=8, latency_runs=3, golden_samples=1),
            )
            res = compress(base, calib, options=opts, out=work / f"pkg-{key}")
            packages[key] = res.package
            with open_package(res.package, TrustPolicy.workstation()) as pkg:
                int8[key] = work / f"int8-{key}.onnx"
                int8[key].write_bytes(pkg.artifact_path("model.int8.onnx").read_bytes())
            if key == "pipeline":
                params = [res.params_before, res.params_after]
                pruned_fp32 = export_onnx(res.model, x, work / "pruned_fp32.onnx")
        paths = {"fp32": fp32, "int8": int8["quant"], "pipeline": int8["pipeline"],
                 "pruned_fp32": pruned_fp32, **variants}  # fmt: skip
        ms = _interleaved(paths, x, runs)
        sizes = {k: p.stat().st_size for k, p in paths.items()}
        sizes.update({f"pkg_{k}": p.stat().st_size for k, p in packages.items()})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"ms": ms, "sizes": sizes, "params": params, "variants": sorted(variants)}


def _gemm_ceiling(runs: int) -> dict[str, float]:
    """fp32 MatMul vs uint8 x int8 MatMulInteger, same shapes, same ORT kernels (MLAS) the
    convolutions use: the most int8 can give on this host. Shapes: a large square GEMM and
    an expand 1x1 conv of the 96x96 MobileNetV2 (48x48 pixels, 16 -> 96 channels)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def model(m: int, k: int, n: int, int8: bool) -> tuple[Path, np.ndarray]:
        if int8:
            w = numpy_helper.from_array(rng.integers(-64, 64, (k, n)).astype(np.int8), "w")
            zp = numpy_helper.from_array(np.array(128, np.uint8), "zp")
            node, inits = helper.make_node("MatMulInteger", ["input", "w", "zp"], ["y"]), [w, zp]
            types, x = (TensorProto.UINT8, TensorProto.INT32), rng.integers(0, 255, (m, k))
        else:
            w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
            node, inits = helper.make_node("MatMul", ["input", "w"], ["y"]), [w]
            types, x = (TensorProto.FLOAT, TensorProto.FLOAT), rng.standard_normal((m, k))
        vi = helper.make_tensor_value_info
        g = helper.make_graph(
            [node], "g", [vi("input", types[0], [m, k])], [vi("y", types[1], [m, n])], inits
        )
        proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        proto.ir_version = 8
        path = Path(tempfile.mkdtemp(prefix="gemm-")) / f"{m}x{k}x{n}-{int8}.onnx"
        onnx.save(proto, str(path))
        return path, x.astype(np.uint8 if int8 else np.float32)

    out = {}
    for m, k, n in ((512, 512, 512), (2304, 16, 96)):
        (f, xf), (q, xq) = model(m, k, n, False), model(m, k, n, True)
        sessions = _sessions({"fp32": f, "int8": q})
        times: dict[str, list[float]] = {"fp32": [], "int8": []}
        for i in range(runs + 5):
            for key, x in (("fp32", xf), ("int8", xq)):
                t0 = time.perf_counter()
                sessions[key].run(None, {"input": x})
                if i >= 5:  # warm-up
                    times[key].append(time.perf_counter() - t0)
        out[f"{m}x{k}x{n}"] = round(
            statistics.median(times["fp32"]) / statistics.median(times["int8"]), 3
        )
        for p in (f, q):
            shutil.rmtree(p.parent, ignore_errors=True)
    return out


def _host() -> str:
    import platform

    import onnxruntime as ort

    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = set(next(ln for ln in text.splitlines() if ln.startswith("flags")).split())
        model = next(ln for ln in text.splitlines() if ln.startswith("model name"))
        model = model.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        flags, model = set(), platform.processor()
    simd = sorted(f for f in flags if f in {"avx2", "avx_vnni", "avx512f", "avx512_vnni",
                                              "amx_int8"})  # fmt: skip
    return f"{model}, {'+'.join(simd) or 'no avx2'}, onnxruntime {ort.__version__}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="only the JSON line on stdout")
    ap.add_argument("--prune", type=float, default=0.5, help="structured pruning amount")
    ap.add_argument("--sparsity", type=float, default=0.5, help="magnitude pruning amount")
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--size", type=int, default=96, help="MobileNetV2 input side")
    ap.add_argument("--width", type=float, default=1.0, help="MobileNetV2 width multiplier")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    acc = _digits(args.prune)
    mb = _mobilenet(args.prune, args.sparsity, args.runs, args.size, args.width)
    gemm = _gemm_ceiling(args.runs)
    ms, sz = mb["ms"], mb["sizes"]

    def ratio(a: float, b: float) -> float:
        return round(a / b, 3)

    result = {
        "fp32_ms": round(ms["fp32"], 3),
        "int8_ms": round(ms["int8"], 3),
        "speedup": ratio(ms["fp32"], ms["int8"]),
        "fp32_bytes": sz["fp32"],
        "int8_bytes": sz["int8"],
        "size_ratio": ratio(sz["fp32"], sz["int8"]),
        "int8_package_bytes": sz["pkg_quant"],
        "package_wire_ratio": ratio(sz["fp32"], sz["pkg_quant"]),
        "fp32_acc": round(acc["fp32_acc"], 4),
        "int8_acc": round(acc["quant"], 4),
        "acc_drop_pts": round(100 * (acc["fp32_acc"] - acc["quant"]), 2),
        "heldout_samples": acc["heldout_samples"],
        "int8_pipeline": "quant_pre_process (shape inference, ORT basic optimisation, BN "
        "folded), static QDQ int8: per-channel symmetric int8 weights with reduce_range "
        "(7-bit), uint8 activations, ReLU6/Clip removed into the quantized range, calibrated",
        "quant_variants_speedup": {k: ratio(ms["fp32"], ms[k]) for k in mb["variants"]},
        "int8_gemm_kernel_speedup": gemm,
        "pipeline_ms": round(ms["pipeline"], 3),
        "pipeline_speedup": ratio(ms["fp32"], ms["pipeline"]),
        "prune_only_speedup": ratio(ms["fp32"], ms["pruned_fp32"]),
        "pipeline_package_bytes": sz["pkg_pipeline"],
        "pipeline_package_wire_ratio": ratio(sz["fp32"], sz["pkg_pipeline"]),
        "pipeline_int8_acc": round(acc["pipeline"], 4),
        "pipeline_acc_drop_pts": round(100 * (acc["fp32_acc"] - acc["pipeline"]), 2),
        "pipeline": f"prune_channels {args.prune} (+3 epochs fine-tune on digits, none on "
        f"the random MobileNetV2), magnitude_prune {args.sparsity}, then the int8 pipeline",
        "mobilenet_params": mb["params"],
        "notes": "speedup is int8 kernels alone on the same network. This host has AVX2 "
        "but no VNNI/AVX-512: MLAS u8s8 GEMM (vpmaddubsw) is only int8_gemm_kernel_speedup "
        "over its fp32 FMA GEMM, int8 depthwise convs are slower than fp32 ones, and every "
        "quant_variant lands within a few percent of speedup or below it, so >= 2.5 from "
        "quantization is out of reach here; VNNI hosts (and ARM dot-product cores) are where "
        "int8 pays. pipeline_speedup adds channel pruning and is a smaller network",
        "host": _host(),
        "setup": f"onnxruntime CPU, 1 intra-op thread, ORT_ENABLE_ALL, batch 1, MobileNetV2 "
        f"width {args.width} 3x{args.size}x{args.size}, {args.runs} interleaved rounds after "
        "10 warm-up runs, medians",
    }
    if not args.json:
        for k, v in result.items():
            print(f"{k:>28}: {v}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
