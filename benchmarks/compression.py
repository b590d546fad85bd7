"""Compression benchmark: fp32 vs the trainer's compressed package, side by side in one run.

    .venv/bin/python benchmarks/compression.py --json

Latency/size: a MobileNetV2-class model (width 1.0, 3x96x96 by default, 1000 classes, batch
1), ONNX Runtime CPU, one intra-op thread, ORT_ENABLE_ALL (the SDK default), every model
timed interleaved (medians). Accuracy: the digits CNN on held-out scikit-learn digits, fp32
torch vs the int8 ONNX artifacts run by ONNX Runtime.

``speedup`` / ``int8_ms`` are the shipped compressed package: the compression steps of the
built-in ``mobilenet_v2`` recipe (structured channel pruning of block, residual-stream and
head channels, fine-tuned by distillation from the unpruned model), then the trainer's
static QDQ int8, i.e. what ``edgefleet train mobilenet_v2`` produces. ``acc_drop_pts`` is
the same steps and ratios applied to the digits CNN. ``quant_only_*`` is quantization
alone on the unpruned network; ``quant_variants_speedup`` times other ORT quantization
settings in the same rounds; ``ort_settings_speedup`` the graph optimisation levels. The
MobileNetV2 weights are random (seeded): latency and size do not depend on weight values,
and nothing may be downloaded. The last stdout line is one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _harness import host_line, interleaved_medians, parser  # the script's folder is on sys.path

_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC"}


def _sessions(paths: dict[str, Path | tuple[Path, str]]):
    """One single-threaded CPU session per entry; a (path, level) entry overrides the graph
    optimisation level (default "all", what the SDK's onnxruntime backend uses)."""
    import onnxruntime as ort

    out = {}
    for k, p in paths.items():
        path, level = p if isinstance(p, tuple) else (p, "all")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[level])
        out[k] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return out


def _interleaved(paths: dict[str, Path | tuple[Path, str]], x: np.ndarray, runs: int):
    """Median wall ms and median thread-CPU ms per model (see ``interleaved_medians``)."""
    return interleaved_medians(_sessions(paths), {"input": x}, runs, warmup=10)


def _recipe_steps(finetune_epochs: int | None) -> tuple:
    """The compression steps of the built-in MobileNetV2 recipe (what ``edgefleet train``
    ships), with the fine-tuning epochs overridden when given."""
    from edgefleet.trainer import load_recipe

    steps = load_recipe("mobilenet_v2").compress
    if finetune_epochs is None:
        return tuple(steps)
    out = []
    for st in steps:
        key = "epochs" if st.step == "distill" else "finetune_epochs"
        out.append(st.model_copy(update={key: finetune_epochs}))
    return tuple(out)


def _digits(steps: tuple) -> dict:
    """Held-out digits accuracy: fp32 torch, quantization alone, and the recipe pipeline
    (same steps and ratios) applied to the digits CNN, each int8 artifact run by ORT."""
    from edgefleet.trainer import (
        CompressOptions,
        ExportSpec,
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
    for key, st in (("quant", ()), ("pipeline", steps)):
        opts = CompressOptions(
            name=f"digits-bench-{key}",
            steps=st,
            train=recipe.train,
            quantize=QuantizeSpec(calibration_samples=128),
            export=ExportSpec(formats=["onnx"], precisions=["fp32", "int8"]),
            verify=VerifySpec(latency_runs=3),
            input_names=("input",),
            output_names=("logits",),
        )
        with tempfile.TemporaryDirectory() as tmp:
            res = compress(model, calib, options=opts, train_data=(ds.x_train, ds.y_train),
                           heldout=(ds.x_test, ds.y_test), out=tmp)  # fmt: skip
        out[key] = res.export("model.int8.onnx").metrics.accuracy
        out[f"{key}_fp32"] = res.export("model.fp32.onnx").metrics.accuracy
        out[f"{key}_params"] = [res.params_before, res.params_after]
        out["fp32_acc"] = res.baseline_accuracy
        out["heldout_samples"] = res.export("model.int8.onnx").metrics.samples
    return out


def _variants(base, pre: Path, calib: np.ndarray, work: Path) -> dict[str, Path]:
    """Other ORT static quantization settings, from the same pre-processed fp32 graph."""
    import copy

    from edgefleet.trainer._export import export_onnx
    from edgefleet.trainer._onnx_quant import _Reader, quantize_static_qdq
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from torch import nn

    def q(name: str, src: Path = pre, fmt=QuantFormat.QDQ, act=QuantType.QUInt8,
          rr: bool = True, **extra) -> Path:  # fmt: skip
        reader = type("Reader", (_Reader, CalibrationDataReader), {})(batches, len(calib), None)
        quantize_static(str(src), str(work / f"{name}.onnx"), reader, quant_format=fmt,
                        per_channel=True, reduce_range=rr, activation_type=act,
                        weight_type=QuantType.QInt8, extra_options=extra)  # fmt: skip
        return work / f"{name}.onnx"

    batches = [{"input": calib[i : i + 1]} for i in range(len(calib))]
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
        "qdq_u8_relu_not_relu6": quantize_static_qdq(relu_fp32, work / "relu.onnx", batches),
        "fp32_relu_not_relu6": relu_fp32,  # not int8: what ReLU alone gives
    }


def _mobilenet(steps: tuple, runs: int, size: int, width: float, variants: bool) -> dict:
    import torch
    from edgefleet.sdk import MetricSpec, TrustPolicy, open_package
    from edgefleet.trainer import (
        CompressOptions,
        ExportSpec,
        MobileNetV2Like,
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
        extra: dict[str, Path] = {}
        if variants:
            pre = work / "fp32.pre.onnx"
            quant_pre_process(str(fp32), str(pre))
            extra = _variants(base, pre, calib, work)
        packages, int8 = {}, {}
        for key, st in (("quant", ()), ("pipeline", steps)):
            opts = CompressOptions(
                name=f"mobilenet-v2-bench-{key}",
                steps=st,
                quantize=QuantizeSpec(calibration_samples=len(calib)),
                export=ExportSpec(formats=["onnx"], precisions=["int8"]),
                verify=VerifySpec(samples=8, latency_runs=3, golden_samples=1),
                # Random weights, timed for latency only: no accuracy floor to gate on.
                metric=MetricSpec(name="cosine"),
                input_names=("input",),  # the names the timing loop feeds
                output_names=("logits",),
            )
            res = compress(base, calib, options=opts, out=work / f"pkg-{key}")
            packages[key] = res.package
            with open_package(res.package, TrustPolicy.workstation()) as pkg:
                int8[key] = work / f"int8-{key}.onnx"
                int8[key].write_bytes(pkg.artifact_path("model.int8.onnx").read_bytes())
            if key == "pipeline":
                params = [res.params_before, res.params_after]
                pruned_fp32 = export_onnx(res.model, x, work / "pruned_fp32.onnx")
        paths: dict[str, Path | tuple[Path, str]] = {
            "fp32": fp32,
            "quant_only_int8": int8["quant"],
            "pipeline_int8": int8["pipeline"],
            "pipeline_fp32": pruned_fp32,
            # Session settings a device could use for the same files (the SDK uses "all").
            "fp32@extended": (fp32, "extended"),
            "pipeline_int8@extended": (int8["pipeline"], "extended"),
            "pipeline_int8@basic": (int8["pipeline"], "basic"),
            "pipeline_fp32@extended": (pruned_fp32, "extended"),
            **extra,
        }
        ms, cpu_ms = _interleaved(paths, x, runs)
        sizes = {k: p.stat().st_size for k, p in paths.items() if isinstance(p, Path)}
        sizes.update({f"pkg_{k}": p.stat().st_size for k, p in packages.items()})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"ms": ms, "cpu_ms": cpu_ms, "sizes": sizes, "params": params,
            "variants": sorted(extra)}  # fmt: skip


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


def _describe(steps: tuple) -> str:
    return "; ".join(
        st.step + " " + ", ".join(f"{k}={v}" for k, v in st.model_dump().items() if k != "step")
        for st in steps
    )


def main() -> int:
    ap = parser(__doc__, runs=60, size=(96, "MobileNetV2 input side"),
                width=(1.0, "MobileNetV2 width multiplier"),
                no_variants=(False, "skip the quantization variants"))  # fmt: skip
    ap.add_argument("--digits-finetune", type=int, default=None,
                    help="override the recipe's fine-tuning epochs on digits")  # fmt: skip
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    digits_steps = _recipe_steps(args.digits_finetune)
    digits_epochs = getattr(digits_steps[0], "finetune_epochs", None)
    # Random weights and no data for the latency model: timing does not depend on weight
    # values, and pruning picks the same channel counts, so fine-tuning is skipped there.
    mb_steps = _recipe_steps(0)
    acc = _digits(digits_steps)
    mb = _mobilenet(mb_steps, args.runs, args.size, args.width, not args.no_variants)
    gemm = _gemm_ceiling(args.runs)
    ms, cpu, sz = mb["ms"], mb["cpu_ms"], mb["sizes"]

    def ratio(a: float, b: float) -> float:
        return round(a / b, 3)

    def drop(a: float) -> float:
        return round(100 * (acc["fp32_acc"] - a), 2)

    result = {
        "fp32_ms": round(ms["fp32"], 3),
        "int8_ms": round(ms["pipeline_int8"], 3),
        "speedup": ratio(ms["fp32"], ms["pipeline_int8"]),
        "speedup_definition": "fp32_ms / int8_ms, where int8_ms is the shipped compressed "
        "package's int8 ONNX artifact (the built-in mobilenet_v2 recipe's steps: structured "
        "channel pruning + distillation fine-tune, then static QDQ int8), i.e. what "
        "`edgefleet train` produces and a device runs; fp32_ms is the unpruned fp32 original. "
        "Quantization alone is quant_only_speedup. Wall-clock medians; speedup_cpu is the "
        "same from thread CPU time. When host_loaded is true, wall-clock medians favour the "
        "short run (a 5 ms run is preempted more often than a 1.5 ms one): quote speedup_cpu",
        # Wall well above CPU time for the same single-threaded run = other jobs preempted
        # us; wall ratios are then inflated (long runs are hit more) and speedup_cpu holds.
        "host_loaded": ms["fp32"] > 1.15 * cpu["fp32"],
        "fp32_cpu_ms": round(cpu["fp32"], 3),
        "int8_cpu_ms": round(cpu["pipeline_int8"], 3),
        "speedup_cpu": ratio(cpu["fp32"], cpu["pipeline_int8"]),
        "fp32_bytes": sz["fp32"],
        "int8_bytes": sz["pipeline_int8"],
        "size_ratio": ratio(sz["fp32"], sz["pipeline_int8"]),
        "int8_package_bytes": sz["pkg_pipeline"],
        "package_wire_ratio": ratio(sz["fp32"], sz["pkg_pipeline"]),
        "fp32_acc": round(acc["fp32_acc"], 4),
        "int8_acc": round(acc["pipeline"], 4),
        "acc_drop_pts": drop(acc["pipeline"]),
        "heldout_samples": acc["heldout_samples"],
        "pipeline_int8_ms": round(ms["pipeline_int8"], 3),
        "pipeline_speedup": ratio(ms["fp32"], ms["pipeline_int8"]),
        "pipeline_int8_bytes": sz["pipeline_int8"],
        "pipeline_package_bytes": sz["pkg_pipeline"],
        "pipeline_int8_acc": round(acc["pipeline"], 4),
        "pipeline_acc_drop_pts": drop(acc["pipeline"]),
        "pipeline_fp32_ms": round(ms["pipeline_fp32"], 3),
        "pipeline_fp32_speedup": ratio(ms["fp32"], ms["pipeline_fp32"]),
        "pipeline_fp32_speedup_cpu": ratio(cpu["fp32"], cpu["pipeline_fp32"]),
        "pipeline_fp32_acc": round(acc["pipeline_fp32"], 4),
        "pipeline": _describe(_recipe_steps(None)) + "; then static QDQ int8",
        "pipeline_note": "steps read from trainer/recipes/mobilenet_v2.toml (as shown, for "
        f"edgefleet train); here they fine-tune {digits_epochs} epochs on digits "
        "(distilled from the unpruned CNN) and none on the random-weight latency MobileNetV2 "
        "(latency does not depend on weight values; the pruned shapes are the same)",
        "digits_params": acc["pipeline_params"],
        "mobilenet_params": mb["params"],
        "quant_only_int8_ms": round(ms["quant_only_int8"], 3),
        "quant_only_speedup": ratio(ms["fp32"], ms["quant_only_int8"]),
        "quant_only_speedup_cpu": ratio(cpu["fp32"], cpu["quant_only_int8"]),
        "quant_only_int8_bytes": sz["quant_only_int8"],
        "quant_only_package_wire_ratio": ratio(sz["fp32"], sz["pkg_quant"]),
        "quant_only_int8_acc": round(acc["quant"], 4),
        "quant_only_acc_drop_pts": drop(acc["quant"]),
        "int8_quantizer": "quant_pre_process (shape inference, ORT basic optimisation, BN "
        "folded), static QDQ int8: per-channel symmetric int8 weights with reduce_range "
        "(7-bit), uint8 activations, ReLU6/Clip removed into the quantized range, calibrated",
        "quant_variants_speedup": {k: ratio(ms["fp32"], ms[k]) for k in mb["variants"]},
        "int8_gemm_kernel_speedup": gemm,
        "ort_settings_speedup": {
            k: ratio(ms["fp32"], ms[k])
            for k in (
                "fp32@extended",
                "pipeline_int8",
                "pipeline_int8@extended",
                "pipeline_int8@basic",
                "pipeline_fp32",
                "pipeline_fp32@extended",
            )
        },  # fmt: skip
        "ort_settings_note": "all = ORT_ENABLE_ALL (the SDK default, shipped): layout "
        "transforms, NCHWc for fp32 Conv and NHWC for QLinearConv; extended = no layout "
        "transforms (QDQ still fused to QLinearConv); basic = QDQ not fused. Ratios are over "
        "fp32_ms (fp32 at all)",
        "notes": "This host has AVX2 but no VNNI/AVX-512: MLAS u8s8 GEMM is only "
        "int8_gemm_kernel_speedup over fp32, so int8 alone gives quant_only_speedup; the "
        "pipeline's speed-up comes from the smaller network. On this host the pipeline's "
        "fp32 artifact (pipeline_fp32_ms, same package) is faster still than its int8 one; "
        "int8 pays on VNNI x86 and ARM dot-product cores",
        "setup": f"onnxruntime CPU, 1 intra-op thread, ORT_ENABLE_ALL unless named, batch 1, "
        f"MobileNetV2 width {args.width} 3x{args.size}x{args.size} 1000 classes, random "
        f"seeded weights, {args.runs} interleaved rounds after 10 warm-up runs, medians",
    }
    return emit(result, args.json)


def emit(result: dict, as_json: bool) -> int:
    """Add the host line and load, print the figures (aligned on stderr unless ``as_json``)
    and the JSON object as the last stdout line; the exit code."""
    result = {**result, "host": host_line(), "load_avg_1min": round(os.getloadavg()[0], 2)}
    if not as_json:
        for k, v in result.items():
            print(f"{k:>30}: {v}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
