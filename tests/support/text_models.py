"""A tiny text encoder with two int64 inputs and two outputs, built with onnx.helper (no
torch), and packages of it: one artifact with symbolic ``batch`` and ``sequence`` dims, or
fixed-shape buckets of one logical artifact.

    last_hidden_state = tanh(E[input_ids] @ W + b)                 float32[batch, sequence, H]
    pooled = sum(last_hidden_state * mask) / max(sum(mask), eps)  float32[batch, H]

Masked mean pooling ignores padded positions, so padding to a bucket must not change
``pooled`` and the sliced ``last_hidden_state`` must equal the unpadded one.
"""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from tests.support.packages import as_private_key

__all__ = [
    "VOCAB",
    "HIDDEN",
    "encoder_weights",
    "encoder_onnx",
    "encoder_reference",
    "encoder_inputs",
    "encoder_specs",
    "make_encoder_package",
    "make_gated_package",
    "GATE",
]

VOCAB, HIDDEN = 64, 16


def encoder_weights(seed: int = 0, vocab: int = VOCAB, hidden: int = HIDDEN) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "E": rng.standard_normal((vocab, hidden)).astype(np.float32),
        "W": (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32),
        "bias": (rng.standard_normal(hidden) * 0.1).astype(np.float32),
    }


def encoder_reference(ids: np.ndarray, mask: np.ndarray, seed: int = 0, **dims) -> dict:
    w = encoder_weights(seed, **dims)
    h = np.tanh(w["E"][ids] @ w["W"] + w["bias"])
    m = mask.astype(np.float32)[..., None]
    pooled = (h * m).sum(1) / np.maximum(m.sum(1), 1e-6)
    return {"last_hidden_state": h.astype(np.float32), "pooled": pooled.astype(np.float32)}


def encoder_inputs(lengths: list[int], seq: int | None = None, seed: int = 3, vocab: int = VOCAB):
    """A right-padded batch: one row per length, pad id 0, mask 1 on real tokens."""
    rng = np.random.default_rng(seed)
    seq = seq or max(lengths)
    ids = np.zeros((len(lengths), seq), np.int64)
    mask = np.zeros((len(lengths), seq), np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(1, vocab, n)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def encoder_onnx(
    path: Path, seed: int = 0, batch: int | str = "batch", seq: int | str = "sequence", **dims
) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = encoder_weights(seed, **dims)
    hidden = w["W"].shape[0]
    consts = {
        "axis1": np.array([1], np.int64),
        "axis2": np.array([2], np.int64),
        "eps": np.array(1e-6, np.float32),
    }
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["emb"]),
        helper.make_node("MatMul", ["emb", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "bias"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["last_hidden_state"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["m3"]),
        helper.make_node("Mul", ["last_hidden_state", "m3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["maskf", "axis1"], ["count0"], keepdims=1),
        helper.make_node("Max", ["count0", "eps"], ["count"]),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [batch, seq]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [batch, seq]),
        ],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, [batch, seq, hidden]
            ),
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [batch, hidden]),
        ],
        initializer=[numpy_helper.from_array(v, k) for k, v in {**w, **consts}.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def encoder_specs(hidden: int = HIDDEN):
    from edgefleet.sdk import TensorSpec

    inputs = [
        TensorSpec(name="input_ids", dtype="int64", shape=["batch", "sequence"]),
        TensorSpec(name="attention_mask", dtype="int64", shape=["batch", "sequence"]),
    ]
    outputs = [
        TensorSpec(name="last_hidden_state", dtype="float32", shape=["batch", "sequence", hidden]),
        TensorSpec(name="pooled", dtype="float32", shape=["batch", hidden]),
    ]
    return inputs, outputs


def make_encoder_package(
    out: str | Path,
    *,
    version: str = "1.0.0",
    signing_key=None,
    name: str = "encoder",
    seed: int = 0,
    buckets: tuple[int, ...] = (),
    bucket_batch: int | None = None,
    extra: tuple[tuple[str, str], ...] = (),
    vocab: int = VOCAB,
    hidden: int = HIDDEN,
) -> Path:
    """A signed (when ``signing_key`` is given) encoder package. ``buckets``: sequence sizes
    of fixed-shape artifacts in one bucket group (else one artifact with symbolic dims).
    ``extra``: more (format-compatible) ONNX artifacts as (name, precision) pairs: copies of
    the same graph, so a package can hold several artifacts a device must choose among."""
    from edgefleet.sdk import PackageBuilder

    key = as_private_key(signing_key)
    dims = {"vocab": vocab, "hidden": hidden}
    inputs, outputs = encoder_specs(hidden)
    golden = encoder_inputs([5, 3], seed=seed + 7, vocab=vocab)
    ref = encoder_reference(golden["input_ids"], golden["attention_mask"], seed, **dims)
    with (
        TemporaryDirectory() as tmp,
        PackageBuilder(name, version, inputs=inputs, outputs=outputs, task="embedding") as b,
    ):
        b.set_golden_inputs(golden)
        if buckets:
            b.set_gate(pad_values={"input_ids": 0.0})
            for n in buckets:
                f = encoder_onnx(
                    Path(tmp) / f"s{n}.onnx", seed, batch=bucket_batch or "batch", seq=n, **dims
                )
                b.add_artifact(
                    f,
                    format="onnx",
                    precision="fp32",
                    name=f"encoder.seq{n}.onnx",
                    golden_outputs=ref,
                    input_shapes={
                        "input_ids": [bucket_batch or "batch", n],
                        "attention_mask": [bucket_batch or "batch", n],
                    },
                    bucket_group="encoder",
                )
        else:
            f = encoder_onnx(Path(tmp) / "m.onnx", seed, **dims)
            b.add_artifact(f, format="onnx", precision="fp32", golden_outputs=ref)
        for art_name, precision in extra:
            f = encoder_onnx(Path(tmp) / f"{art_name}.onnx", seed, **dims)
            b.add_artifact(f, format="onnx", precision=precision, name=art_name, golden_outputs=ref)
        return b.build(out, signing_key=key)


def _gate():
    from edgefleet.sdk import MetricSpec

    return MetricSpec(name="cosine", direction="higher", floor=0.99)


GATE = _gate()


def make_gated_package(out: Path) -> Path:
    """Real ONNX artifacts under a cosine gate: 'broken.int4' has wrong weights (another
    seed) and a failing figure, 'good.int8' passes, 'ref.fp32' is the reference; one
    candidate is listed as rejected. (Precisions are labels: all files are fp32 graphs.)"""
    from edgefleet.sdk import ArtifactMetrics, PackageBuilder, RejectedArtifact

    inputs, outputs = encoder_specs()
    golden = encoder_inputs([4, 2])
    ref = encoder_reference(golden["input_ids"], golden["attention_mask"])
    with PackageBuilder("gated", "1.0.0", inputs=inputs, outputs=outputs, task="embedding") as b:
        b.set_golden_inputs(golden)
        rejected = RejectedArtifact(
            name="static.int8", format="onnx", precision="int8", metric="cosine", value=0.43,
            reference_value=1.0, reason="below the floor 0.99",
        )  # fmt: skip
        b.set_gate(GATE)
        b.reject(rejected)
        for name, precision, seed, value in [
            ("ref.fp32", "fp32", 0, 1.0),
            ("broken.int4", "int4", 9, 0.43),
            ("good.int8", "int8", 0, 0.999),
        ]:
            f = encoder_onnx(out / f"{name}.onnx", seed)
            b.add_artifact(
                f, format="onnx", precision=precision, name=name, golden_outputs=ref,
                metrics=ArtifactMetrics(samples=8, metric="cosine", value=value,
                                        reference_value=1.0),
            )  # fmt: skip
        return b.build(out / "pkg")
