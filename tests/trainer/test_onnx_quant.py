"""The torch-free ONNX quantizer: family detection, candidates per family, int4."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from edgefleet.trainer._onnx_quant import (  # noqa: E402
    OnnxQuantOptions,
    cpu_has_int8_dot,
    detect_family,
    quantize_onnx,
    quantize_onnx_each,
)
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(0)


def _save(nodes, inputs, outputs, inits, path: Path) -> Path:
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _w(name: str, *shape: int):
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.1).astype(np.float32), name)


def _mlp(path: Path) -> Path:
    vi = helper.make_tensor_value_info
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    return _save(nodes, [vi("x", TensorProto.FLOAT, ["batch", 64])],
                 [vi("y", TensorProto.FLOAT, ["batch", 32])],
                 [_w("w1", 64, 128), _w("w2", 128, 32)], path)  # fmt: skip


def _attention(path: Path) -> Path:
    """q = x Wq, k = x Wk; softmax(q k^T) v: a MatMul of two activations."""
    vi = helper.make_tensor_value_info
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k"]),
        helper.make_node("MatMul", ["x", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Softmax", ["s"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ]
    return _save(nodes, [vi("x", TensorProto.FLOAT, ["batch", "sequence", 64])],
                 [vi("y", TensorProto.FLOAT, ["batch", "sequence", 64])],
                 [_w("wq", 64, 64), _w("wk", 64, 64), _w("wv", 64, 64)], path)  # fmt: skip


def _cnn(path: Path) -> Path:
    vi = helper.make_tensor_value_info
    nodes = [
        helper.make_node("Conv", ["x", "c1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Conv", ["b", "c2"], ["y"], pads=[1, 1, 1, 1]),
    ]
    return _save(nodes, [vi("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                 [vi("y", TensorProto.FLOAT, ["batch", 8, 8, 8])],
                 [_w("c1", 8, 3, 3, 3), _w("c2", 8, 8, 3, 3)], path)  # fmt: skip


def test_imports_without_torch():
    code = (
        "import sys, edgefleet.trainer._onnx_quant as q; "
        "assert 'torch' not in sys.modules, 'torch was imported'; print(q.cpu_has_int8_dot())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("True", "False")


def test_family_is_read_from_the_graph(tmp_path):
    assert detect_family(_mlp(tmp_path / "mlp.onnx")) == "mlp"
    assert detect_family(_attention(tmp_path / "att.onnx")) == "transformer"
    assert detect_family(_cnn(tmp_path / "cnn.onnx")) == "cnn"


def test_int8_dot_detection_follows_the_cpu_flags():
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.split(":")[0].strip() in ("flags", "Features")), [])  # fmt: skip
    want = bool(set(flags) & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})
    assert cpu_has_int8_dot() == want


def _run(path: Path, feed: dict) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]


def test_transformer_gets_dynamic_int8_and_int4_that_stay_close(tmp_path):
    src = _attention(tmp_path / "att.onnx")
    cands = quantize_onnx(src, tmp_path / "q", options=OnnxQuantOptions(int4=True))
    assert [(c.precision, c.method.split("-per")[0]) for c in cands] == [
        ("int8", "dynamic"), ("int4", "weight-only-int4-g32")]  # fmt: skip
    ops = {c.precision: {n.op_type for n in onnx.load(str(c.path)).graph.node} for c in cands}
    assert "MatMulNBits" in ops["int4"]
    assert "Softmax" in ops["int8"]  # softmax and the activation x activation MatMuls stay float
    x = RNG.standard_normal((2, 5, 64)).astype(np.float32)
    ref = _run(src, {"x": x})
    for c in cands:
        got = _run(c.path, {"x": x})
        cos = (got * ref).sum() / np.linalg.norm(got) / np.linalg.norm(ref)
        # int4 on Gaussian random weights is the hard case for 4 bits
        floor = 0.99 if c.precision == "int8" else 0.97
        assert got.shape == ref.shape and cos > floor, (c.method, cos)


def test_cnn_gets_static_qdq_with_calibration_and_needs_it(tmp_path):
    src = _cnn(tmp_path / "cnn.onnx")
    calib = [{"x": RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(8)]
    [cand] = quantize_onnx(src, tmp_path / "q", calib)
    assert cand.method.startswith("static-qdq-per-channel") and cand.precision == "int8"
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(cand.path)).graph.node}
    with pytest.raises(ValueError, match="static QDQ quantization needs calibration data"):
        quantize_onnx(src, tmp_path / "q2", None, OnnxQuantOptions(methods=("static-qdq",)))


def test_a_failing_method_is_reported_not_fatal(tmp_path):
    src = _mlp(tmp_path / "mlp.onnx")
    # block size 7 is not a power of two >= 16: MatMulNBits refuses it
    opts = OnnxQuantOptions(int4=True, int4_block_size=7)
    res = quantize_onnx_each(src, tmp_path / "q", None, opts)
    status = {c.precision: err for c, err in res}
    assert status["int8"] is None and status["int4"] is not None
