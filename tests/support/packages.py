"""Tiny real model packages for tests: an ONNX MLP built with onnx.helper (no torch).

The model is ``logits = relu(x @ W1 + b1) @ W2 + b2`` with x: float32[batch, 16] and
10 logits, so it loads in onnxruntime in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

__all__ = ["as_private_key", "make_package", "tiny_onnx", "tiny_inputs", "tiny_reference"]

IN_FEATURES, HIDDEN, CLASSES = 16, 32, 10


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.standard_normal((IN_FEATURES, HIDDEN)).astype(np.float32) * 0.5,
        "b1": rng.standard_normal(HIDDEN).astype(np.float32) * 0.1,
        "W2": rng.standard_normal((HIDDEN, CLASSES)).astype(np.float32) * 0.5,
        "b2": rng.standard_normal(CLASSES).astype(np.float32) * 0.1,
    }


def tiny_reference(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """The numpy reference of the tiny MLP."""
    w = _weights(seed)
    return np.maximum(x @ w["W1"] + w["b1"], 0) @ w["W2"] + w["b2"]


def tiny_inputs(batch: int = 4, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, IN_FEATURES)).astype(np.float32)


def tiny_onnx(path: Path, seed: int = 0, batch: int | str = "batch") -> Path:
    """Write the tiny MLP as an ONNX file (opset 17, IR 8 so older runtimes load it)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = _weights(seed)
    nodes = [
        helper.make_node("MatMul", ["input", "W1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "W2"], ["h3"]),
        helper.make_node("Add", ["h3", "b2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, IN_FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, CLASSES])],
        initializer=[numpy_helper.from_array(v, k) for k, v in w.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def as_private_key(key):
    """The test builders' ``signing_key``: an Ed25519 private key as given, or loaded from a
    key path; None (unsigned) stays None."""
    from edgefleet.sdk import load_private_key

    if key is None or hasattr(key, "sign"):
        return key
    return load_private_key(key)


def make_package(
    out: str | Path,
    *,
    version: str = "1.0.0",
    signing_key=None,
    name: str = "tiny",
    seed: int = 0,
    break_golden: bool = False,
    targets: tuple[str, ...] = (),
    golden_batch: int = 4,
    artifact_name: str | None = None,
) -> Path:
    """Build a signed (if ``signing_key`` is a key or a key path) tiny ONNX package.

    ``out`` ending in ``.efpkg`` gives an archive, else a directory. ``seed`` changes the
    weights (so v1 and v2 give different outputs). ``break_golden=True`` stores wrong
    expected outputs, so the on-device smoke test fails.
    """
    from edgefleet.sdk import PackageBuilder, TensorSpec

    out = Path(out)
    signing_key = as_private_key(signing_key)
    x = tiny_inputs(golden_batch)
    expected = tiny_reference(x, seed).astype(np.float32)
    if break_golden:
        expected = expected + 10.0
    with (
        TemporaryDirectory() as tmp,
        PackageBuilder(
            name,
            version,
            inputs=[TensorSpec(name="input", dtype="float32", shape=["batch", IN_FEATURES])],
            outputs=[TensorSpec(name="logits", dtype="float32", shape=["batch", CLASSES])],
            labels=[str(i) for i in range(CLASSES)],
        ) as builder,
    ):
        onnx_path = tiny_onnx(Path(tmp) / "model.onnx", seed)
        builder.set_golden_inputs({"input": x})
        builder.add_artifact(
            onnx_path,
            format="onnx",
            precision="fp32",
            targets=targets,
            golden_outputs={"logits": expected},
            name=artifact_name,
        )
        return builder.build(out, signing_key=signing_key)
