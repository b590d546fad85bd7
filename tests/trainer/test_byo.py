"""Any model in: typed named inputs, several outputs, symbolic dims, the accuracy gate,
quantization by model family, transformers models with their tokenizer (issue 11)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from edgefleet.sdk import (  # noqa: E402
    ConfigError,
    LoadOptions,
    MetricSpec,
    TrustPolicy,
    load,
    open_package,
    sha256_file,
)
from edgefleet.trainer import (  # noqa: E402
    AccuracyGateError,
    CompressOptions,
    ExportSpec,
    LowRank,
    TrainSpec,
    VerifySpec,
    compress,
)
from torch import nn  # noqa: E402

from . import byo_models as bm  # noqa: E402

ONNX = ExportSpec(formats=["onnx"], precisions=["fp32", "int8", "int4"])
FAST = VerifySpec(latency_runs=2, golden_samples=3)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return bm.bert_folder(tmp_path_factory.mktemp("bert") / "model")


def _mean_pooled_reference(folder, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from transformers import AutoModel

    m = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        h = m(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        h = h.last_hidden_state
        w = torch.from_numpy(mask).unsqueeze(-1).float()
        return ((h * w).sum(1) / w.sum(1)).numpy()


@pytest.fixture(scope="module")
def bert_onnx(bert, tmp_path_factory, signing_keys):
    priv, _ = signing_keys
    out = tmp_path_factory.mktemp("bert-onnx")
    opts = CompressOptions(name="enc", pooling="mean", max_length=16, export=ONNX, verify=FAST)
    res = compress(bert, bm.texts(32, 0), options=opts, heldout=bm.texts(24, 1), out=out,
                   signing_key=priv)  # fmt: skip
    return res


def test_transformers_folder_goes_in_with_two_int64_inputs(bert_onnx, signing_keys):
    res = bert_onnx
    with open_package(res.package, TrustPolicy.device(signing_keys[1])) as pkg:
        m = pkg.manifest
        assert [s.describe() for s in m.inputs] == [
            "input_ids: int64[batch, sequence]",
            "attention_mask: int64[batch, sequence]",
        ]
        assert [s.describe() for s in m.outputs] == ["embedding: float32[batch, 32]"]
        assert m.task == "embedding"
        assert m.metric == MetricSpec(name="cosine", direction="higher", floor=0.99)
        # the tokenizer travels in the package, hashed and signed
        tok = {f.path: f for f in m.files}
        assert tok["tokenizer/tokenizer.json"].role == "tokenizer"
        assert (
            sha256_file(pkg.root / "tokenizer/tokenizer.json")
            == tok["tokenizer/tokenizer.json"].sha256
        )
        text = m.preprocessing.text
        assert text.tokenizer == "tokenizer/tokenizer.json"
        assert text.inputs == {"input_ids": "input_ids", "attention_mask": "attention_mask"}
        assert (text.max_length, text.pad_token_id) == (16, 0)
        quant = {a.name: a.quantization for a in m.artifacts}
        assert quant["model.fp32.onnx"] is None
        assert quant["model.int8.onnx"].startswith("dynamic-per-channel")
        assert quant["model.int4.onnx"] == "weight-only-int4-g32"
        for a in m.artifacts:
            assert a.metrics.metric == "cosine" and a.metrics.value > 0.99
            assert a.metrics.reference_value == pytest.approx(1.0)
            # no classifier figures on embeddings
            assert "top1_agreement" not in a.metrics.scores and a.metrics.accuracy is None
            assert a.metrics.top1_agreement is None
        # golden outputs come from the reference model, not from each artifact
        ref = pkg.golden_outputs("model.fp32.onnx")["embedding"]
        np.testing.assert_array_equal(pkg.golden_outputs("model.int8.onnx")["embedding"], ref)
        assert m.artifact("model.int8.onnx").golden_atol > m.artifact("model.fp32.onnx").golden_atol
    report = (res.package.parent / "report.md").read_text()
    assert "| cosine |" in report and "accuracy" not in report


@pytest.mark.parametrize("artifact", ["model.int8.onnx", "model.int4.onnx"])
def test_sdk_runs_the_quantized_encoder_at_another_sequence_length(bert, bert_onnx, signing_keys,
                                                                   artifact):  # fmt: skip
    rng = np.random.default_rng(3)
    ids = rng.integers(4, 64, (3, 11)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    opts = LoadOptions(artifact=artifact, trust=TrustPolicy.device(signing_keys[1]))
    with load(bert_onnx.package, backend="onnxruntime", options=opts) as model:
        assert model.smoke_test().passed, model.smoke_test().detail
        got = model.predict({"input_ids": ids, "attention_mask": mask})["embedding"]
    want = _mean_pooled_reference(bert, ids, mask)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert got.shape == (3, 32) and cos.min() > 0.99


def test_cli_inspect_shows_typed_symbolic_inputs(bert_onnx, signing_keys):
    from typer.testing import CliRunner

    from edgefleet._cli import _register, app

    _register("sdk")
    res = CliRunner().invoke(app, ["sdk", "inspect", str(bert_onnx.package), "--json",
                                   "--trusted-key", str(signing_keys[1])])  # fmt: skip
    assert res.exit_code == 0, res.output
    info = json.loads(res.output.strip().splitlines()[-1])
    assert info["inputs"] == ["input_ids: int64[batch, sequence]",
                              "attention_mask: int64[batch, sequence]"]  # fmt: skip
    assert {a["quantization"] for a in info["artifacts"]} >= {"weight-only-int4-g32"}


def _two_heads_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return {
        "features": rng.standard_normal((n, 16)).astype(np.float32),
        "keep": rng.random((n, 16)) > 0.2,  # bool input: never cast by the trainer
    }


class _TwoHeadsBool(bm.TwoHeads):
    def forward(self, features, keep):
        return super().forward(features, keep.to(features.dtype))


def test_two_outputs_bool_input_and_a_user_metric(tmp_path):
    torch.manual_seed(0)
    model = _TwoHeadsBool().eval()
    held = _two_heads_data(40, 1)
    with torch.no_grad():
        ref_box = model(torch.from_numpy(held["features"]), torch.from_numpy(held["keep"]))[1]
    calls = []

    def box_mae(predict):  # the user's metric: lower is better, on the second output
        calls.append(1)
        return float(np.abs(predict(held)["box"] - ref_box.numpy()).mean())

    opts = CompressOptions(
        name="heads", output_names=("logits", "box"), export=ExportSpec(formats=["onnx"]),
        metric=MetricSpec(name="box_mae", direction="lower", floor=0.05), verify=FAST,
    )  # fmt: skip
    res = compress(model, _two_heads_data(64, 0), box_mae, opts, heldout=held, out=tmp_path)
    with open_package(res.package, TrustPolicy.workstation()) as pkg:
        m = pkg.manifest
        assert [s.describe() for s in m.inputs] == ["features: float32[batch, 16]",
                                                    "keep: bool[batch, 16]"]  # fmt: skip
        assert [s.describe() for s in m.outputs] == ["logits: float32[batch, 5]",
                                                     "box: float32[batch, 4]"]  # fmt: skip
        for a in m.artifacts:
            assert a.metrics.metric == "box_mae" and a.metrics.value < 0.05
            assert a.metrics.reference_value == pytest.approx(0.0, abs=1e-6)
    assert len(calls) >= 1 + len(res.exports)  # the reference and every artifact
    with load(res.package, backend="onnxruntime") as sdk_model:
        out = sdk_model.predict(_two_heads_data(2, 5))
    assert set(out) == {"logits", "box"} and out["box"].shape == (2, 4)


def test_the_gate_rejects_artifacts_that_miss_it_and_fails_when_none_pass(tmp_path):
    torch.manual_seed(0)
    model = _TwoHeadsBool().eval()
    # fp32 reproduces the reference to ~1e-7; the int8 artifacts cannot
    opts = CompressOptions(
        name="strict", output_names=("logits", "box"), export=ExportSpec(formats=["onnx"]),
        metric=MetricSpec(name="max_abs_error", direction="lower", floor=1e-4), verify=FAST,
    )  # fmt: skip
    res = compress(model, _two_heads_data(48, 0), options=opts, out=tmp_path / "a")
    assert {r.name: r.status for r in res.exports} == {
        "model.fp32.onnx": "shipped", "model.int8.onnx": "rejected"}  # fmt: skip
    with open_package(res.package, TrustPolicy.workstation()) as pkg:
        assert [a.name for a in pkg.manifest.artifacts] == ["model.fp32.onnx"]
        [rej] = pkg.manifest.rejected
        assert (rej.name, rej.metric) == ("model.int8.onnx", "max_abs_error")
        assert rej.value > 1e-4 and "misses the gate" in rej.reason
    assert "rejected: max_abs_error" in (tmp_path / "a" / "report.md").read_text()

    never = CompressOptions(**{**opts.__dict__, "metric": MetricSpec(
        name="max_abs_error", direction="lower", floor=1e-12)})  # fmt: skip
    with pytest.raises(AccuracyGateError, match=r"model\.int8\.onnx: max_abs_error .* misses"):
        compress(model, _two_heads_data(48, 0), options=never, out=tmp_path / "b")


def _low_rank_mlp(seed: int = 0) -> nn.Module:
    """Weights of rank ~12 plus noise: a low rank keeps them, a very low one does not."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(96, 96), nn.Tanh(), nn.Linear(96, 8))
    with torch.no_grad():
        w = torch.randn(96, 12, generator=g) @ torch.randn(12, 96, generator=g) / 12
        model[0].weight.copy_(w + 0.01 * torch.randn(96, 96, generator=g))
    return model.eval()


def test_lowrank_searches_the_rank_until_the_gate_holds(tmp_path):
    x = np.random.default_rng(0).standard_normal((64, 96)).astype(np.float32)
    opts = CompressOptions(
        name="lr", steps=(LowRank(step="lowrank", energy=0.3, finetune_epochs=0),),
        export=ExportSpec(formats=["onnx"], precisions=["fp32"]), verify=FAST,
        metric=MetricSpec(name="cosine", floor=0.995),
    )  # fmt: skip
    res = compress(_low_rank_mlp(), x, options=opts, out=tmp_path / "a")
    [step] = res.steps
    assert not step.skipped and "rank search" in step.detail
    assert res.params_after < res.params_before and res.compressed_score >= 0.995
    # a gate no factorisation meets: the step is undone and reported, never shipped
    never = MetricSpec(name="cosine", floor=0.99999999)
    strict = CompressOptions(**{**opts.__dict__, "metric": never})
    res = compress(_low_rank_mlp(), x, options=strict, out=tmp_path / "b")
    [step] = res.steps
    assert step.skipped and "misses the gate" in step.detail
    assert res.params_after == res.params_before
    assert "(skipped)" in (tmp_path / "b" / "report.md").read_text()


def test_torchvision_style_cnn_gets_static_qdq(tmp_path):
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((24, 3, 16, 16)).astype(np.float32)
    opts = CompressOptions(name="resnet", export=ExportSpec(formats=["onnx"]), verify=FAST)
    res = compress(bm.TinyResNet(), x, options=opts, out=tmp_path)
    int8 = res.export("model.int8.onnx")
    assert int8.quantization.startswith("static-qdq-per-channel") and int8.status == "shipped"
    with open_package(res.package, TrustPolicy.workstation()) as pkg:
        assert [s.describe() for s in pkg.manifest.inputs] == ["images: float32[batch, 3, 16, 16]"]
        assert pkg.manifest.outputs[0].name == "output"


def test_bad_inputs_get_clear_errors(tmp_path):
    model = _TwoHeadsBool().eval()
    data = _two_heads_data(4, 0)
    with pytest.raises(ConfigError, match="dtype float64.*nothing is cast"):
        compress(model, {**data, "features": data["features"].astype(np.float64)}, out=tmp_path)
    with pytest.raises(ConfigError, match=r"dynamic_dims names unknown inputs \['ids'\]"):
        compress(model, data, options=CompressOptions(dynamic_dims={"ids": {1: "seq"}}),
                 out=tmp_path)  # fmt: skip
    with pytest.raises(ConfigError, match="output_names names 1 outputs, the model returns 2"):
        compress(model, data, options=CompressOptions(output_names=("y",)), out=tmp_path)
    with pytest.raises(ConfigError, match="'top1_agreement' is for classifiers"):
        top1 = CompressOptions(metric=MetricSpec(name="top1_agreement"), primary_output="output_1")
        compress(model, data, options=top1, out=tmp_path)


@pytest.mark.slow
def test_transformer_buckets_on_litert_and_executorch(bert, tmp_path):
    """.tflite/.pte take no dynamic sequence: one artifact per bucket, padded with the mask."""
    opts = CompressOptions(
        name="enc-edge", pooling="mean", max_length=16, buckets={"sequence": (8, 16)},
        export=ExportSpec(formats=["tflite", "pte"], precisions=["int8"]), verify=FAST,
    )  # fmt: skip
    res = compress(bert, bm.texts(16, 0, max_words=6), options=opts,
                   heldout=bm.texts(12, 1, max_words=6), out=tmp_path)  # fmt: skip
    assert all(r.status == "shipped" for r in res.exports), [(r.name, r.error, r.reason)
                                                             for r in res.exports]  # fmt: skip
    with open_package(res.package, TrustPolicy.workstation()) as pkg:
        m = pkg.manifest
        arts = {a.name: a for a in m.artifacts}
        assert set(arts) == {"model.int8.sequence8.tflite", "model.int8.sequence16.tflite",
                             "model.int8.sequence8.pte", "model.int8.sequence16.pte"}  # fmt: skip
        a8 = arts["model.int8.sequence8.tflite"]
        assert a8.input_shapes == {"input_ids": [1, 8], "attention_mask": [1, 8]}
        assert a8.bucket_group == "model.int8.tflite" and a8.quantization == "dynamic-range-int8"
        assert arts["model.int8.sequence16.pte"].quantization == "8da8w-per-channel"
        assert m.pad_values == {"input_ids": 0.0, "attention_mask": 0.0}
        assert all(a.metrics.value > 0.99 for a in m.artifacts)
        # a short sentence padded into the 16 bucket gives the unpadded reference embedding
        ids = np.array([[2, 10, 11, 12, 3]], np.int64)
        want = _mean_pooled_reference(bert, ids, np.ones_like(ids))
        for name, backend in (("model.int8.sequence16.tflite", "litert"),
                              ("model.int8.sequence16.pte", "executorch")):  # fmt: skip
            pid, pmask = np.zeros((1, 16), np.int64), np.zeros((1, 16), np.int64)
            pid[0, :5], pmask[0, :5] = ids[0], 1
            opts = LoadOptions(artifact=name, warmup=0)  # the SDK pads to buckets on its side
            with load(res.package, backend=backend, options=opts) as model:
                got = model.predict({"input_ids": pid, "attention_mask": pmask})["embedding"]
            cos = float((got * want).sum() / np.linalg.norm(got) / np.linalg.norm(want))
            assert cos > 0.99, (name, cos)


def test_a_transformers_model_object_with_its_tokenizer(tmp_path):
    from transformers import AutoModel

    folder = bm.bert_folder(tmp_path / "m", seed=1)
    model = AutoModel.from_pretrained(folder, local_files_only=True)
    opts = CompressOptions(name="obj", tokenizer=bm.tokenizer(), max_length=12, verify=FAST,
                           export=ExportSpec(formats=["onnx"], precisions=["fp32"]))  # fmt: skip
    res = compress(model, bm.texts(8, 0), options=opts, out=tmp_path / "out")
    with open_package(res.package, TrustPolicy.workstation()) as pkg:
        m = pkg.manifest
        # no pooling: the ModelOutput's own names, with the symbolic dims inferred
        assert [s.describe() for s in m.outputs] == [
            "last_hidden_state: float32[batch, sequence, 32]",
            "pooler_output: float32[batch, 32]",
        ]
        roles = {f.role for f in m.files}
        assert roles == {"tokenizer", "golden"}  # golden files are hashed for devices too


def test_fine_tuning_without_labels_matches_the_teacher_or_uses_the_users_loss(tmp_path):
    x = np.random.default_rng(0).standard_normal((64, 96)).astype(np.float32)
    step = LowRank(step="lowrank", energy=0.3, finetune_epochs=1)
    base = CompressOptions(name="ft", steps=(step,), verify=FAST, train=TrainSpec(lr=1e-4),
                           export=ExportSpec(formats=["onnx"], precisions=["fp32"]),
                           metric=MetricSpec(name="cosine", floor=0.97))  # fmt: skip
    res = compress(_low_rank_mlp(), x, options=base, train_data=x, out=tmp_path / "a")
    assert not res.steps[0].skipped and res.compressed_score >= 0.97
    seen = []

    def loss(outputs, labels):  # the user's loss: outputs by name, labels (none here)
        seen.append(labels)
        return outputs["output"].pow(2).mean()

    opts = CompressOptions(**{**base.__dict__, "loss_fn": loss})
    compress(_low_rank_mlp(), x, options=opts, train_data=x, out=tmp_path / "b")
    assert seen and all(lb is None for lb in seen)
