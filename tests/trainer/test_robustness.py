"""Robustness in verification (issue 16, item 4): every artifact's metric under input
perturbations chosen per input kind, in the signed manifest and the report, and a gate on
it that rejects artifacts like the accuracy gate."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from edgefleet.sdk import TrustPolicy, open_package  # noqa: E402
from edgefleet.trainer import (  # noqa: E402
    AccuracyGateError,
    CompressOptions,
    ExportSpec,
    RobustnessSpec,
    VerifySpec,
    compress,
    parse_recipe,
)

from tests.support.torch_models import digits_like_inputs, make_model  # noqa: E402

from . import byo_models as bm  # noqa: E402

ONNX = ExportSpec(formats=["onnx"], precisions=["fp32", "int8"])
IMAGE = ["image_noise", "brightness", "contrast", "translate"]


def _verify(**robust) -> VerifySpec:
    return VerifySpec(latency_runs=2, golden_samples=2, robustness=RobustnessSpec(**robust))


def test_cnn_gets_image_perturbations_in_the_signed_manifest_and_report(tmp_path, signing_keys):
    priv, pub = signing_keys
    opts = CompressOptions(name="cnn", export=ONNX, verify=_verify(samples=16),
                           task="classification")  # fmt: skip
    res = compress(make_model(), digits_like_inputs(32, seed=1), options=opts, out=tmp_path,
                   signing_key=priv)  # fmt: skip
    with open_package(res.package, TrustPolicy.device(pub)) as pkg:  # signature covers it
        arts = {a.name: a for a in pkg.manifest.artifacts}
    assert set(arts) == {"model.fp32.onnx", "model.int8.onnx"}
    for a in arts.values():
        rob = {p.name: p for p in a.metrics.robustness}
        assert list(rob) == IMAGE
        for p in rob.values():
            assert p.kind == "image" and p.inputs == ["x"] and p.setting
            assert -1.0 <= p.value <= 1.0 and -1.0 <= p.reference_value <= 1.0
        # the perturbations move the reference model itself away from its clean outputs
        assert rob["image_noise"].reference_value < 0.99999
        assert rob["translate"].reference_value < 0.999
    # seeded: the fp32 artifact saw the same noise as the reference model
    for p in arts["model.fp32.onnx"].metrics.robustness:
        assert p.value == pytest.approx(p.reference_value, abs=1e-4)
    report = (tmp_path / "report.md").read_text()
    assert "## Robustness" in report and "translated 1 px" in report
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["robustness"]["perturbations"] == IMAGE
    figures = summary["artifacts"][0]["metrics"]["robustness"]
    assert [f["name"] for f in figures] == IMAGE


def test_two_input_encoder_gets_token_substitution_with_the_mask_left_alone(tmp_path):
    bert = bm.bert_folder(tmp_path / "bert")
    opts = CompressOptions(name="enc", pooling="mean", max_length=16, verify=_verify(samples=12),
                           export=ExportSpec(formats=["onnx"], precisions=["fp32"]))  # fmt: skip
    res = compress(bert, bm.texts(16, 0), options=opts, heldout=bm.texts(12, 1), out=tmp_path)
    [p] = res.export("model.fp32.onnx").metrics.robustness
    assert (p.name, p.kind, p.inputs) == ("token_substitution", "tokens", ["input_ids"])
    assert "5% of non-pad ids" in p.setting and "masks unperturbed" in p.setting
    assert p.reference_value < 0.99999 and p.value == pytest.approx(p.reference_value, abs=1e-4)


def test_float_inputs_get_noise_at_stated_snrs():
    from edgefleet.trainer._robustness import plan_perturbations
    from edgefleet.trainer._signature import NamedIO, describe_io

    model = bm.TwoHeads().eval()
    rng = np.random.default_rng(0)
    feeds = {"features": rng.standard_normal((64, 16)).astype(np.float32),
             "scale": np.ones((64, 16), np.float32)}  # fmt: skip
    io = describe_io(NamedIO(model, ["features", "scale"], None), feeds, None, {})
    plan = plan_perturbations(io.inputs, feeds, RobustnessSpec(), {})
    assert [p.name for p in plan] == ["snr_30db", "snr_20db", "snr_10db"]
    for p, db in zip(plan, (30, 20, 10), strict=True):
        noisy = p(feeds)["features"]
        snr = 10 * np.log10(
            (feeds["features"] ** 2).mean() / ((noisy - feeds["features"]) ** 2).mean()
        )
        assert snr == pytest.approx(db, abs=0.5)
        assert noisy.dtype == np.float32
        np.testing.assert_array_equal(p(feeds)["features"], noisy)  # seeded: the same noise


def test_token_substitution_keeps_pads_and_masks():
    from edgefleet.sdk import TensorSpec
    from edgefleet.trainer._robustness import plan_perturbations

    ids = np.zeros((40, 20), np.int64)
    ids[:, :12] = np.random.default_rng(0).integers(5, 60, (40, 12))
    mask = (ids != 0).astype(np.int64)
    specs = [TensorSpec(name=n, dtype="int64", shape=["batch", "sequence"])
             for n in ("input_ids", "attention_mask")]  # fmt: skip
    [p] = plan_perturbations(specs, {"input_ids": ids, "attention_mask": mask},
                             RobustnessSpec(token_rate=0.25), {"input_ids": 0})  # fmt: skip
    out = p({"input_ids": ids, "attention_mask": mask})
    np.testing.assert_array_equal(out["attention_mask"], mask)
    assert (out["input_ids"][:, 12:] == 0).all()  # pads untouched
    changed = (out["input_ids"] != ids).mean() / (12 / 20)
    assert 0.15 < changed < 0.3  # ~25% of real tokens (a draw may hit the same id)
    assert set(np.unique(out["input_ids"])) <= set(np.unique(ids))
    assert plan_perturbations(specs, {"input_ids": ids, "attention_mask": mask},
                              RobustnessSpec(token_rate=0.0), {}) == []  # fmt: skip


def test_robustness_gate_rejects_artifacts_with_their_figure(tmp_path):
    x = digits_like_inputs(32, seed=1)
    opts = CompressOptions(name="gated", export=ONNX, task="classification",
                           verify=_verify(samples=16))  # fmt: skip
    free = compress(make_model(), x, options=opts, out=tmp_path / "free")
    worst = {r.name: min(p.value for p in r.metrics.robustness) for r in free.exports}
    assert len(set(worst.values())) == 2  # fp32 and int8 differ under perturbation
    # a floor between the two worst figures: the weaker artifact is rejected, the other ships
    floor = sum(worst.values()) / 2
    weak, strong = sorted(worst, key=worst.get)
    gated = CompressOptions(**{**opts.__dict__, "verify": _verify(samples=16, floor=floor)})
    res = compress(make_model(), x, options=gated, out=tmp_path / "a")
    assert res.export(strong).status == "shipped"
    rejected = res.export(weak)
    assert rejected.status == "rejected"
    assert f"misses the robustness gate (floor {floor:g})" in rejected.reason
    assert res.export(weak).metrics.value > 0.99  # it passed the accuracy gate on clean data
    with open_package(res.package, TrustPolicy.workstation()) as pkg:
        [rej] = pkg.manifest.rejected
        assert rej.name == weak and rej.metric.startswith("cosine under ")
        assert rej.value == pytest.approx(worst[weak]) and "robustness" in rej.reason
        assert [a.name for a in pkg.manifest.artifacts] == [strong]
    assert "rejected: robustness: cosine" in (tmp_path / "a" / "report.md").read_text()

    # an impossible floor: nothing ships, and the error names the metric and the figures
    never = CompressOptions(**{**opts.__dict__, "verify": _verify(samples=16, floor=1.5)})
    with pytest.raises(AccuracyGateError) as err:
        compress(make_model(), x, options=never, out=tmp_path / "b")
    text = str(err.value)
    assert "and the robustness gate" in text
    for name in ("model.fp32.onnx", "model.int8.onnx"):
        assert f"{name}: robustness: cosine 0." in text
    assert "misses the robustness gate (floor 1.5)" in text


def test_recipe_sets_perturbations_and_the_gate():
    r = parse_recipe(
        'name = "r"\n[verify.robustness]\nperturbations = ["image_noise", "snr"]\n'
        "snr_db = [25.0]\nfloor = 0.9\nsamples = 8\n"
    )
    assert r.verify.robustness.perturbations == ["image_noise", "snr"]
    assert (r.verify.robustness.floor, r.verify.robustness.samples) == (0.9, 8)
    from edgefleet.trainer import RecipeError

    with pytest.raises(RecipeError, match=r"verify\.robustness\.perturbations\.0"):
        parse_recipe('name = "r"\n[verify.robustness]\nperturbations = ["blur"]\n')


def test_perturbations_can_be_turned_off(tmp_path):
    opts = CompressOptions(name="off", export=ExportSpec(formats=["onnx"], precisions=["fp32"]),
                           verify=_verify(perturbations=[]), task="classification")  # fmt: skip
    res = compress(make_model(), digits_like_inputs(8), options=opts, out=tmp_path)
    assert res.export("model.fp32.onnx").metrics.robustness == []
    assert "## Robustness" not in (tmp_path / "report.md").read_text()
    # a package without figures signs exactly as before (the field is signed only when set)
    assert "robustness" not in res.export("model.fp32.onnx").metrics.model_dump(
        exclude_defaults=True
    )
