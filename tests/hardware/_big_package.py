"""An oversized ONNX package for the memory-cap tests: the tiny MLP plus a large weight
that the graph really uses (so no runtime can prune it away)."""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from tests.support.packages import CLASSES, IN_FEATURES, tiny_inputs

__all__ = ["make_big_package"]


def make_big_package(out: Path, megabytes: int = 64) -> Path:
    """logits = sum(x @ W_big, axis=1) * ones[10]: W_big is ``megabytes`` of float32, all
    zeros but one column of ones (so float32 sums stay exact and parity holds)."""
    from edgefleet.sdk import PackageBuilder, TensorSpec
    from onnx import TensorProto, helper, numpy_helper

    cols = megabytes * (1 << 20) // (4 * IN_FEATURES)
    w = np.zeros((IN_FEATURES, cols), dtype=np.float32)
    w[:, 0] = 1.0
    ones = np.ones((1, CLASSES), dtype=np.float32)
    nodes = [
        helper.make_node("MatMul", ["input", "W_big"], ["h"]),
        helper.make_node("ReduceSum", ["h", "axes"], ["s"], keepdims=1),
        helper.make_node("Mul", ["s", "ones"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "big",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", IN_FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=[
            numpy_helper.from_array(w, "W_big"),
            numpy_helper.from_array(ones, "ones"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = tiny_inputs(2)
    expected = x.sum(axis=1, keepdims=True) * ones
    with (
        TemporaryDirectory() as tmp,
        PackageBuilder(
            "big",
            "1.0.0",
            inputs=[TensorSpec(name="input", dtype="float32", shape=["batch", IN_FEATURES])],
            outputs=[TensorSpec(name="logits", dtype="float32", shape=["batch", CLASSES])],
        ) as builder,
    ):
        path = Path(tmp) / "big.onnx"
        path.write_bytes(model.SerializeToString())
        builder.set_golden_inputs({"input": x})
        builder.add_artifact(
            path, format="onnx", precision="fp32", golden_outputs={"logits": expected}
        )
        return builder.build(Path(out))
