"""Backend logic that needs no exported model: name mapping, int8 handling, mock runtime."""

from __future__ import annotations

import numpy as np
import pytest
from edgefleet.sdk import Artifact, BackendError, InputError, TensorSpec
from edgefleet.sdk.backends import MockOptions, get_backend
from edgefleet.sdk.backends._common import match_names
from edgefleet.sdk.backends._litert import LiteRTSession

F = TensorSpec(name="x", dtype="float32", shape=["batch", 3])
OUT = TensorSpec(name="y", dtype="float32", shape=["batch", 2])
ART = Artifact(
    name="m.onnx", path="m.onnx", format="onnx", precision="fp32", sha256="0" * 64, size=1
)


def _spec(name):
    return TensorSpec(name=name, dtype="float32", shape=[1])


def test_match_names_by_name_then_decorated_name_then_position():
    specs = [_spec("a"), _spec("b")]
    assert match_names(["b", "a"], specs, "input", "m") == [1, 0]
    assert match_names(["serving_default_b:0", "serving_default_a:0"], specs, "input", "m") == [
        1,
        0,
    ]
    assert match_names(["args_0", "args_1"], specs, "input", "m") == [0, 1]
    with pytest.raises(BackendError, match=r"model has 1 inputs \['a'\], the manifest declares 2"):
        match_names(["a"], specs, "input", "m")


class FakeInterpreter:
    """Mimics the tflite tensor API of an int8-quantised model with a dynamic batch:
    y = dequant(x_q) summed pairwise, re-quantised."""

    def __init__(self, dynamic_batch=True):
        self.tensors = {}
        self.resized = []
        sig = [-1 if dynamic_batch else 1, 3]
        self.inp = dict(
            name="serving_default_x:0",
            index=0,
            shape=np.array([1, 3], np.int32),
            shape_signature=np.array(sig, np.int32),
            dtype=np.int8,
            quantization=(0.5, 10),
        )
        self.out = dict(
            name="StatefulPartitionedCall:0",
            index=1,
            shape=np.array([1, 2], np.int32),
            shape_signature=np.array(sig[:1] + [2], np.int32),
            dtype=np.int8,
            quantization=(0.25, -3),
        )

    def get_input_details(self):
        return [self.inp]

    def get_output_details(self):
        return [self.out]

    def resize_tensor_input(self, index, shape):
        self.resized.append((index, list(shape)))

    def allocate_tensors(self):
        pass

    def set_tensor(self, index, value):
        assert value.dtype == np.int8
        self.tensors[index] = value

    def invoke(self):
        x = (self.tensors[0].astype(np.float32) - 10) * 0.5
        y = np.stack([x[:, 0] + x[:, 1], x[:, 2]], axis=1)
        self.tensors[1] = np.clip(np.round(y / 0.25) - 3, -128, 127).astype(np.int8)

    def get_tensor(self, index):
        return self.tensors[index].copy()


def test_litert_int8_tensors_are_quantised_and_dequantised_for_float_specs():
    interp = FakeInterpreter()
    sess = LiteRTSession(interp, [F], [OUT], "fake.tflite")
    x = np.array([[1.0, 2.5, -3.0], [0.0, 0.5, 4.0]], np.float32)
    out = sess.run({"x": x})["y"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[3.5, -3.0], [0.5, 4.0]], atol=0.25)
    assert interp.resized == [(0, [2, 3])]  # batch 2 on a dynamic-batch model: resized once
    sess.run({"x": x})
    assert len(interp.resized) == 1


def test_litert_int8_saturates_instead_of_wrapping():
    sess = LiteRTSession(FakeInterpreter(), [F], [OUT], "fake.tflite")
    out = sess.run({"x": np.array([[1000.0, 0.0, 0.0]], np.float32)})["y"]
    assert out[0, 0] > 0  # clipped to int8 max, not wrapped around to a negative value


def test_litert_static_model_refuses_other_batch():
    sess = LiteRTSession(FakeInterpreter(dynamic_batch=False), [F], [OUT], "fake.tflite")
    with pytest.raises(InputError, match=r"fake.tflite: input 'x' expects shape \[1, 3\]"):
        sess.run({"x": np.zeros((2, 3), np.float32)})


def test_litert_runtime_exception_is_wrapped():
    interp = FakeInterpreter()
    interp.invoke = lambda: (_ for _ in ()).throw(RuntimeError("boom in kernel"))
    sess = LiteRTSession(interp, [F], [OUT], "fake.tflite")
    with pytest.raises(BackendError, match="litert failed running fake.tflite: boom in kernel"):
        sess.run({"x": np.zeros((1, 3), np.float32)})


def test_mock_default_outputs_are_zeros_shaped_by_batch():
    sess = get_backend("mock").load(None, ART, [F], [OUT], None)
    out = sess.run({"x": np.ones((5, 3), np.float32)})
    assert out["y"].shape == (5, 2) and out["y"].dtype == np.float32 and not out["y"].any()
    assert sess.calls == 1


def test_mock_handler_drives_outputs_and_its_errors_are_wrapped():
    sess = get_backend("mock").load(
        None, ART, [F], [OUT], MockOptions(handler=lambda i: {"y": i["x"][:, :2] * 2})
    )
    np.testing.assert_array_equal(sess.run({"x": np.ones((1, 3), np.float32)})["y"], [[2, 2]])
    bad = get_backend("mock").load(None, ART, [F], [OUT], MockOptions(handler=lambda i: {}))
    with pytest.raises(BackendError, match=r"missing outputs \['y'\]"):
        bad.run({"x": np.ones((1, 3), np.float32)})
    boom = get_backend("mock").load(None, ART, [F], [OUT], MockOptions(handler=lambda i: 1 / 0))
    with pytest.raises(BackendError, match="ZeroDivisionError"):
        boom.run({"x": np.ones((1, 3), np.float32)})
    boom.close()
    with pytest.raises(BackendError, match="closed"):
        boom.run({"x": np.ones((1, 3), np.float32)})


def test_backend_modules_and_cli_import_no_runtime():
    """Importing every backend adapter and the CLI pulls no runtime (a device has no torch)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import edgefleet.sdk._cli\n"
        "from edgefleet.sdk.backends import BACKENDS, get_backend\n"
        "for name in BACKENDS: get_backend(name).available()\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'ai_edge_litert', 'executorch')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
