"""The emulator's bookkeeping without running qemu: probes, wheel choice, not-run reasons."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgefleet.hardware.hil import EmulatorRoot
from edgefleet.hardware.hil._emulator import emulated_wheels
from edgefleet.hardware.hil._executors import emulated_not_run
from edgefleet.hardware.hil._probe import PROBES, main, onnx_relu_model


@pytest.mark.parametrize("runtime", sorted(PROBES))
def test_probe_models_run_on_the_host(runtime, capsys):
    """The hand-built relu models are valid for the real runtimes (so a probe failing under
    qemu is the emulator's fault, not the model's)."""
    pytest.importorskip({"onnxruntime": "onnxruntime", "litert": "ai_edge_litert"}[runtime])
    assert main([runtime]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["runtime"] == runtime and out["correct"] is True


def test_onnx_probe_model_matches_the_onnx_library():
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(onnx_relu_model())
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Relu"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_value) == ("batch", 4)
    assert np.dtype("float32") == onnx.helper.tensor_dtype_to_np_dtype(
        model.graph.input[0].type.tensor_type.elem_type
    )


def test_probe_rejects_an_unknown_runtime(capsys):
    assert main(["tensorrt"]) == 2
    assert "usage:" in capsys.readouterr().err


def test_wheels_follow_the_qemu_version():
    assert "onnxruntime==1.32.0" in emulated_wheels(10)
    assert "onnxruntime==1.20.1" in emulated_wheels(7)  # the newest qemu 7.2 imports


def test_not_run_reasons_come_from_the_measured_probe(tmp_path):
    emu = EmulatorRoot(tmp_path)
    (tmp_path / "emulator.json").write_text(json.dumps({
        "runtimes": {"onnxruntime": "1.20.1"},
        "not_run": {"litert": "litert crashed with SIGSEGV under qemu-aarch64 7.2.22"},
    }))  # fmt: skip
    assert emulated_not_run("onnxruntime", emu) == ""
    assert emulated_not_run("litert", emu).startswith("litert crashed with SIGSEGV under qemu")
    assert "fleet executor" in emulated_not_run("litert", emu)
    assert "needs torch" in emulated_not_run("executorch", emu)
