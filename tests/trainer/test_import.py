"""``edgefleet package import``: an existing ONNX model (two int64 inputs, two outputs, no
labels) is quantized, verified against the original file, gated and signed with no torch
importable; a .tflite is verified and signed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from edgefleet.sdk import LoadOptions, TrustPolicy, load, open_package

from tests.support.text_models import encoder_inputs, encoder_onnx, encoder_reference

pytest.importorskip("onnxruntime")

DIMS = {"vocab": 500, "hidden": 64}

BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _NoTorch())
"""


def _run_cli(args: list[str]) -> subprocess.CompletedProcess:
    code = BLOCK_TORCH + textwrap.dedent(
        f"""
        sys.argv = ["edgefleet", *{args!r}]
        from edgefleet._cli import main
        try:
            main()
        finally:
            assert "torch" not in sys.modules, "torch was imported"
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("imp")
    model = encoder_onnx(d / "encoder.onnx", seed=4, **DIMS)
    lengths = list(np.random.default_rng(0).integers(3, 20, 48))
    ev = encoder_inputs(lengths, seq=20, seed=11, vocab=DIMS["vocab"])
    cal = encoder_inputs(lengths[:32], seq=20, seed=12, vocab=DIMS["vocab"])
    np.savez(d / "eval.npz", **ev)
    np.savez(d / "calib.npz", **cal)
    return d, model, ev


def test_onnx_import_without_torch_quantizes_verifies_gates_signs(onnx_model, signing_keys):
    d, model, ev = onnx_model
    priv, pub = signing_keys
    out = d / "imported.efpkg"
    r = _run_cli(["package", "import", str(model), "--calib", str(d / "calib.npz"),
                  "--eval", str(d / "eval.npz"), "--key", str(priv), "--out", str(out),
                  "--metric", "cosine", "--floor", "0.99", "--json"])  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["metric"]["name"] == "cosine"
    assert set(summary["shipped"]) == {"model.fp32.onnx", "model.int8.onnx"}
    assert summary["shipped"]["model.int8.onnx"] >= 0.99
    with open_package(out, TrustPolicy.device(pub)) as pkg:  # signed, every hash checked
        m = pkg.manifest
        assert [s.describe() for s in m.inputs] == [
            "input_ids: int64[batch, sequence]",
            "attention_mask: int64[batch, sequence]",
        ]
        assert [s.name for s in m.outputs] == ["last_hidden_state", "pooled"]
        assert m.metric.name == "cosine" and m.metric.floor == 0.99
        q = m.artifact("model.int8.onnx")
        assert q.precision == "int8" and q.quantization.startswith("dynamic")
        assert q.metrics.metric == "cosine" and q.metrics.reference_value == pytest.approx(1.0)
        # MatMul weights are int8; the embedding table stays float (by design)
        assert q.size < m.artifact("model.fp32.onnx").size
    # the shipped int8 runs through the SDK, passes its smoke test (golden outputs come
    # from the original file) and stays close to the numpy reference
    with load(out, options=LoadOptions(trust=TrustPolicy.device(pub))) as model_:
        assert model_.info.artifact.name == "model.int8.onnx"
        assert model_.smoke_test().passed
        feed = encoder_inputs([7, 3], vocab=DIMS["vocab"])
        want = encoder_reference(feed["input_ids"], feed["attention_mask"], seed=4, **DIMS)
        got = model_.predict(feed)["pooled"]
        cos = (
            (got * want["pooled"]).sum(1)
            / np.linalg.norm(got, axis=1)
            / np.linalg.norm(want["pooled"], axis=1)
        )
        assert cos.min() > 0.99


def test_gate_rejects_and_fails_clearly(onnx_model, tmp_path):
    d, model, _ = onnx_model
    # a gate only the original meets: int8 is rejected, listed with its figure
    r = _run_cli(["package", "import", str(model), "--eval", str(d / "eval.npz"),
                  "--out", str(tmp_path / "p"), "--metric", "max_abs_error",
                  "--direction", "lower", "--floor", "1e-9", "--json"])  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert list(summary["shipped"]) == ["model.fp32.onnx"]
    assert summary["rejected"]["model.int8.onnx"] > 1e-9
    with open_package(tmp_path / "p") as pkg:
        assert [a.name for a in pkg.manifest.artifacts] == ["model.fp32.onnx"]
        assert pkg.manifest.rejected[0].name == "model.int8.onnx"
    # a gate nothing meets: a clear error, no package
    r = _run_cli(
        [
            "package",
            "import",
            str(model),
            "--eval",
            str(d / "eval.npz"),
            "--out",
            str(tmp_path / "none"),
            "--metric",
            "cosine",
            "--floor",
            "1.5",
        ]
    )
    assert r.returncode == 1
    assert "no candidate of encoder.onnx passes the gate cosine" in r.stderr
    assert not (tmp_path / "none").exists()
    # eval data that does not name the inputs
    np.savez(tmp_path / "bad.npz", ids=np.zeros((2, 3), np.int64))
    r = _run_cli(["package", "import", str(model), "--eval", str(tmp_path / "bad.npz"),
                  "--out", str(tmp_path / "bad")])  # fmt: skip
    assert r.returncode == 1 and "eval data must hold the inputs" in r.stderr


def test_tflite_import_verifies_and_signs(tmp_path, signing_keys):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("litert_torch")
    from edgefleet.trainer import ImportOptions, import_model
    from edgefleet.trainer._import import read_signature

    from tests.support.torch_models import digits_like_inputs, export_artifact, make_model

    path = export_artifact(make_model(), "tflite", tmp_path / "cnn.tflite")
    inputs, outputs, fixed = read_signature(path)  # names as the file has them
    assert fixed == 1 and inputs[0].shape == ["batch", 1, 8, 8] and inputs[0].dtype == "float32"
    np.savez(tmp_path / "eval.npz", **{inputs[0].name: digits_like_inputs(12)})
    res = import_model(path, eval_data=tmp_path / "eval.npz", out=tmp_path / "pkg",
                       signing_key=__import__("edgefleet.sdk").sdk.load_private_key(
                           signing_keys[0]), options=ImportOptions(name="cnn"))  # fmt: skip
    assert list(res.shipped) == ["model.fp32.tflite"] and res.metric.name == "cosine"
    with load(res.package, options=LoadOptions(trust=TrustPolicy.device(signing_keys[1]))) as m:
        assert m.info.backend == "litert" and m.info.artifact.fixed_batch == 1
        assert m.smoke_test().passed
        assert m.predict(digits_like_inputs(5))[outputs[0].name].shape == (5, 10)
