"""fp16 ONNX artifacts for GPU boards (issue 16, item 1): exported with fp32 inputs and
outputs, measured against the reference on ONNX Runtime's CPU provider, gated like the
others, recorded as fp16 in the manifest, and left out of the SDK's automatic choice on a
CPU-only host unless asked for by name."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
from edgefleet.sdk import LoadOptions, MetricSpec, TrustPolicy, load, open_package  # noqa: E402
from edgefleet.trainer import CompressOptions, ExportSpec, VerifySpec, compress  # noqa: E402

from tests.support.torch_models import digits_like_inputs, make_model  # noqa: E402

from . import byo_models as bm  # noqa: E402

FAST = VerifySpec(latency_runs=2, golden_samples=2)
HALF = ExportSpec(formats=["onnx"], precisions=["fp32", "fp16"])


def _onnx_io(path) -> tuple[list[str], list[str]]:
    import onnx

    g = onnx.load(str(path)).graph
    name = onnx.TensorProto.DataType.Name
    return ([name(i.type.tensor_type.elem_type) for i in g.input],
            [name(o.type.tensor_type.elem_type) for o in g.output])  # fmt: skip


def _fp16_initializers(path) -> int:
    import onnx

    return sum(
        t.data_type == onnx.TensorProto.FLOAT16 for t in onnx.load(str(path)).graph.initializer
    )


def test_digits_cnn_fp16_is_measured_gated_and_chosen_only_by_name(tmp_path, signing_keys):
    priv, pub = signing_keys
    x = digits_like_inputs(48, seed=1)
    opts = CompressOptions(name="digits16", export=HALF, verify=FAST, task="classification")
    res = compress(make_model(), x, options=opts, out=tmp_path, signing_key=priv)
    half = res.export("model.fp16.onnx")
    assert half.status == "shipped" and half.precision == "fp16"
    assert half.quantization == "float16-fp32-io"
    # measured, not assumed: fp16 rounding shows (not bit-identical) but stays close
    assert 0 < half.metrics.max_abs_error < 0.05
    assert half.metrics.value > 0.999  # cosine to the fp32 reference
    assert half.size < 0.6 * res.export("model.fp32.onnx").size
    report = (tmp_path / "report.md").read_text()
    assert "model.fp16.onnx" in report and "not measured here" in report

    with open_package(res.package, TrustPolicy.device(pub)) as pkg:
        arts = {a.name: a for a in pkg.manifest.artifacts}
        assert arts["model.fp16.onnx"].precision == "fp16"
        assert arts["model.fp16.onnx"].metrics.metric == "cosine"
        # the signed manifest says where the figure comes from
        assert "GPU fp16 arithmetic not measured here" in arts["model.fp16.onnx"].metrics.host
        # fp32 inputs and outputs kept, fp16 weights inside
        assert _onnx_io(pkg.root / arts["model.fp16.onnx"].path) == (["FLOAT"], ["FLOAT"])
        assert _fp16_initializers(pkg.root / arts["model.fp16.onnx"].path) > 0

    with torch.no_grad():
        want = make_model()(torch.from_numpy(x[:4])).numpy()
    # a CPU-only host: the automatic choice is not the fp16 artifact
    with load(res.package, backend="onnxruntime") as m:
        assert m.info.artifact.precision == "fp32"
    with load(res.package, options=LoadOptions(artifact="model.fp16.onnx")) as m:
        assert m.info.artifact.name == "model.fp16.onnx"
        got = m.predict({"x": x[:4]})["output"]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=0.05)


def test_two_input_encoder_fp16_and_the_gate_applies(tmp_path):
    bert = bm.bert_folder(tmp_path / "bert")
    opts = CompressOptions(name="enc16", pooling="mean", max_length=16, export=HALF, verify=FAST)
    res = compress(bert, bm.texts(24, 0), options=opts, heldout=bm.texts(16, 1), out=tmp_path / "a")
    half = res.export("model.fp16.onnx")
    assert half.status == "shipped", (half.error, half.reason)
    assert 0.999 < half.metrics.value <= 1.0 + 1e-6
    with open_package(res.package, TrustPolicy.workstation()) as pkg:
        m = pkg.manifest
        assert [s.dtype for s in m.inputs] == ["int64", "int64"]
        path = pkg.root / m.artifact("model.fp16.onnx").path
        assert _onnx_io(path) == (["INT64", "INT64"], ["FLOAT"])
    # the gate applies to fp16 like to the others: a floor it cannot meet rejects it
    strict = CompressOptions(**{**opts.__dict__, "metric": MetricSpec(
        name="max_abs_error", direction="lower", floor=1e-5)})  # fmt: skip
    res = compress(bert, bm.texts(24, 0), options=strict, heldout=bm.texts(16, 1),
                   out=tmp_path / "b")  # fmt: skip
    half = res.export("model.fp16.onnx")
    assert half.status == "rejected" and "max_abs_error" in half.reason
    assert res.export("model.fp32.onnx").status == "shipped"
    with open_package(res.package, TrustPolicy.workstation()) as pkg:
        assert [r.name for r in pkg.manifest.rejected] == ["model.fp16.onnx"]


def test_fp16_for_formats_other_than_onnx_is_a_recorded_failure(tmp_path):
    opts = CompressOptions(name="tfl16", verify=FAST, task="classification",
                           export=ExportSpec(formats=["onnx", "tflite"],
                                             precisions=["fp32", "fp16"]))  # fmt: skip
    res = compress(make_model(), digits_like_inputs(16), options=opts, out=tmp_path)
    failed = res.export("model.fp16.tflite")
    assert failed.status == "failed" and "ONNX only" in failed.error
    with open_package(res.package, TrustPolicy.workstation()) as pkg:
        assert ("tflite", "fp16") in {(f.format, f.precision) for f in pkg.manifest.failed_exports}
