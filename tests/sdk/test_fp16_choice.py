"""fp16 artifacts are picked only where a GPU provider (TensorRT/CUDA) is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgefleet.sdk import LoadOptions, PackageBuilder, TensorSpec, load, open_package
from edgefleet.sdk._select import choose

from tests.support.packages import IN_FEATURES, tiny_inputs, tiny_onnx, tiny_reference

ort = pytest.importorskip("onnxruntime")


def _fp16_and_fp32(out: Path, tmp: Path) -> Path:
    """Two ONNX artifacts; the one labelled fp16 keeps fp32 I/O (as the exporter would), so
    both run here and the choice is all that differs."""
    x = tiny_inputs(2)
    want = {"logits": tiny_reference(x).astype(np.float32)}
    with PackageBuilder(
        "mixed", "1.0.0",
        inputs=[TensorSpec(name="input", dtype="float32", shape=["batch", IN_FEATURES])],
        outputs=[TensorSpec(name="logits", dtype="float32", shape=["batch", 10])],
    ) as b:  # fmt: skip
        b.set_golden_inputs({"input": x})
        for precision in ("fp16", "fp32"):
            path = tiny_onnx(tmp / f"{precision}.onnx")
            b.add_artifact(path, format="onnx", precision=precision, golden_outputs=want)
        return b.build(out)


def test_cpu_only_host_runs_fp32_unless_fp16_is_asked_for(tmp_path):
    assert not {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(
        ort.get_available_providers()
    )  # this host: CPU only
    pkg = _fp16_and_fp32(tmp_path / "mixed.efpkg", tmp_path)
    with load(pkg, "onnxruntime", LoadOptions(profile="x86_64-cpu")) as m:
        assert m.info.artifact.precision == "fp32"
    opts = LoadOptions(profile="x86_64-cpu", precision="fp16")
    with load(pkg, "onnxruntime", opts) as m:
        assert m.info.artifact.precision == "fp16"


def test_gpu_provider_makes_fp16_the_choice(tmp_path, monkeypatch):
    """Logic only (no GPU here): with CUDA reported available, a Jetson profile picks fp16."""
    from edgefleet.hardware.profiles import get_profile

    pkg = _fp16_and_fp32(tmp_path / "mixed.efpkg", tmp_path)
    with open_package(pkg) as opened:
        manifest = opened.manifest
    kw = dict(backend="onnxruntime", artifact=None, precision=None, options={})
    jetson = get_profile("jetson-orin-nano")
    assert choose(manifest, profile=jetson, **kw).artifact.precision == "fp32"
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert choose(manifest, profile=jetson, **kw).artifact.precision == "fp16"
    # A profile that asks for the CPU provider only keeps fp32 even on a GPU host.
    assert choose(manifest, profile=get_profile("x86_64-cpu"), **kw).artifact.precision == "fp32"


def test_tensorrt_gets_fp16_and_an_engine_cache_from_the_jetson_profile(tmp_path):
    from edgefleet.hardware.profiles import get_profile
    from edgefleet.sdk.backends import OnnxRuntimeOptions
    from edgefleet.sdk.backends._onnxruntime import provider_entries

    raw = dict(get_profile("jetson-orin-nano").runtime("onnxruntime").options)
    assert raw["tensorrt_fp16"] is True and raw["tensorrt_cache_dir"].endswith("tensorrt-cache")
    opts = OnnxRuntimeOptions(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in raw.items()})  # fmt: skip
    trt, *rest = provider_entries(list(opts.providers), opts)
    assert trt == ("TensorrtExecutionProvider", {
        "trt_fp16_enable": "True", "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": raw["tensorrt_cache_dir"], "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": raw["tensorrt_cache_dir"],
    })  # fmt: skip
    assert rest == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert provider_entries(["CPUExecutionProvider"], opts) == ["CPUExecutionProvider"]
    # On this CPU-only host the Jetson profile still loads: TensorRT/CUDA are dropped, fp32
    # is chosen and no engine cache directory is created.
    pkg = _fp16_and_fp32(tmp_path / "mixed.efpkg", tmp_path)
    with load(pkg, "onnxruntime", LoadOptions(profile="jetson-orin-nano")) as m:
        assert m.info.artifact.precision == "fp32"
        assert m._session.providers == ["CPUExecutionProvider"]
