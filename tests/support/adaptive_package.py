"""A package with a preferred (bigger) and a smaller artifact of the same format, for the
resource-adaptation tests."""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from tests.support.packages import IN_FEATURES, tiny_inputs, tiny_onnx, tiny_reference

__all__ = ["two_size_package"]


def _padded_onnx(path: Path, megabytes: int) -> Path:
    """The tiny MLP plus an input-dependent branch over ``megabytes`` of zero weights that
    adds 0: same outputs, a bigger artifact (no runtime can fold it away)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(tiny_onnx(path.with_suffix(".base.onnx"))))
    g = model.graph
    out = g.output[0].name
    cols = megabytes * (1 << 20) // (4 * IN_FEATURES)
    g.initializer.extend([
        numpy_helper.from_array(np.zeros((IN_FEATURES, cols), np.float32), "W_pad"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "pad_axes"),
    ])  # fmt: skip
    g.node[-1].output[0] = "core"
    g.node.extend([
        helper.make_node("MatMul", [g.input[0].name, "W_pad"], ["pad"]),
        helper.make_node("ReduceSum", ["pad", "pad_axes"], ["pad_sum"], keepdims=1),
        helper.make_node("Add", ["core", "pad_sum"], [out]),
    ])  # fmt: skip
    del g.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def two_size_package(out: Path) -> Path:
    """model.onnx (preferred: measured better, 2 MB) and model.small.onnx (same outputs)."""
    from edgefleet.sdk import ArtifactMetrics, MetricSpec, PackageBuilder, TensorSpec

    x = tiny_inputs(4)
    want = {"logits": tiny_reference(x).astype(np.float32)}
    with (
        TemporaryDirectory() as tmp,
        PackageBuilder(
            "adaptive", "1.0.0",
            inputs=[TensorSpec(name="input", dtype="float32", shape=["batch", IN_FEATURES])],
            outputs=[TensorSpec(name="logits", dtype="float32", shape=["batch", 10])],
        ) as b,
    ):  # fmt: skip
        b.set_golden_inputs({"input": x})
        # Both pass the gate; the big one measured better, so automatic choice prefers it.
        b.set_gate(MetricSpec(name="cosine", floor=0.9))
        big = _padded_onnx(Path(tmp) / "model.onnx", 2)
        b.add_artifact(
            big, format="onnx", precision="fp32", name="model.onnx", golden_outputs=want,
            metrics=ArtifactMetrics(samples=4, metric="cosine", value=1.0),
        )  # fmt: skip
        small = tiny_onnx(Path(tmp) / "model.small.onnx")
        b.add_artifact(
            small, format="onnx", precision="fp32", name="model.small.onnx", golden_outputs=want,
            metrics=ArtifactMetrics(samples=4, metric="cosine", value=0.99),
        )  # fmt: skip
        return b.build(out)
