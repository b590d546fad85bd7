"""Distillation and fine-tuning without labels (issue 11): a student learns every named
output of an unlabelled multi-output teacher through ``compress`` and a recipe's steps."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from edgefleet.sdk import ConfigError, MetricSpec, TrustPolicy, open_package  # noqa: E402
from edgefleet.trainer import (  # noqa: E402
    CompressOptions,
    ExportSpec,
    VerifySpec,
    compress,
    parse_recipe,
)
from torch import nn  # noqa: E402

from . import byo_models as bm  # noqa: E402

RECIPE = """
name = "heads"
[train]
epochs = 1
batch_size = 32
lr = 0.003
[[compress]]
step = "distill"
epochs = 40
temperature = 2.0
[export]
formats = ["onnx"]
precisions = ["fp32"]
[verify]
latency_runs = 2
golden_samples = 2
metric = "cosine"
floor = 0.9
"""


class SmallHeads(nn.Module):
    """A quarter-width student with the teacher's inputs and outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.cls = nn.Linear(32, 5)
        self.box = nn.Linear(32, 4)

    def forward(self, features: torch.Tensor, scale: torch.Tensor):
        h = self.body(features * scale)
        return self.cls(h), self.box(h)


def _data(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"features": rng.standard_normal((n, 16)).astype(np.float32),
            "scale": rng.uniform(0.5, 1.5, (n, 16)).astype(np.float32)}  # fmt: skip


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    num = (a * b).sum(1)
    return float((num / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean())


def test_distill_an_unlabelled_two_output_model_through_a_recipe(tmp_path):
    torch.manual_seed(0)
    teacher = bm.TwoHeads().eval()
    recipe = parse_recipe(RECIPE)
    torch.manual_seed(1)
    student = SmallHeads()
    untrained = SmallHeads()
    untrained.load_state_dict(student.state_dict())
    opts = CompressOptions(
        name=recipe.name, steps=tuple(recipe.compress), train=recipe.train, export=recipe.export,
        verify=recipe.verify,
        metric=MetricSpec(name="cosine", floor=recipe.verify.floor), output_names=("logits", "box"),
        student=student,
    )  # fmt: skip
    train = _data(512, 0)  # inputs only: no labels anywhere
    res = compress(teacher, _data(64, 1), options=opts, train_data=train, heldout=_data(64, 2),
                   out=tmp_path)  # fmt: skip
    [step] = res.steps
    assert not step.skipped, step.detail
    assert "student SmallHeads" in step.detail
    assert "teacher-output matching (no labels)" in step.detail
    assert res.params_after < res.params_before / 3
    assert res.compressed_score >= 0.9  # cosine on the primary output ("logits")

    # both named outputs were learned, not only the primary one
    held = {k: torch.from_numpy(v) for k, v in _data(64, 3).items()}
    with torch.no_grad():
        want = [t.numpy() for t in teacher(**held)]
        got = [t.numpy() for t in res.model(**held)]
        before = [t.numpy() for t in untrained(**held)]
    for w, g, b in zip(want, got, before, strict=True):
        assert _cos(g, w) > 0.85 and _cos(g, w) > _cos(b, w) + 0.2
    # the compress input model is untouched and the student passed in was copied
    assert sum(p.numel() for p in student.parameters()) == res.params_after
    with open_package(res.package, TrustPolicy.workstation()) as pkg:
        assert [o.name for o in pkg.manifest.outputs] == ["logits", "box"]


def test_distill_with_a_users_loss_and_without_a_student_is_a_clear_error(tmp_path):
    teacher = bm.TwoHeads().eval()
    steps = tuple(parse_recipe(RECIPE).compress)
    base = CompressOptions(name="h", steps=steps, output_names=("logits", "box"),
                           export=ExportSpec(formats=["onnx"], precisions=["fp32"]),
                           verify=VerifySpec(latency_runs=2, golden_samples=2))  # fmt: skip
    with pytest.raises(ConfigError, match=r"compress\.0: a distill step needs a student"):
        compress(teacher, _data(16, 0), options=base, train_data=_data(64, 0), out=tmp_path)
    seen = []

    def loss(outputs, labels):  # the user's loss sees the student's outputs by name
        seen.append((sorted(outputs), labels))
        return outputs["box"].pow(2).mean()

    steps = (steps[0].model_copy(update={"epochs": 1}),)
    opts = CompressOptions(**{**base.__dict__, "steps": steps, "loss_fn": loss,
                              "student": SmallHeads(),
                              "metric": MetricSpec(name="cosine")})  # fmt: skip
    res = compress(teacher, _data(16, 0), options=opts, train_data=_data(64, 0), out=tmp_path)
    assert seen and all(s == (["box", "logits"], None) for s in seen)
    assert "0.3 x the user's loss" in res.steps[0].detail


def test_teacher_matching_is_kl_on_classifier_logits_and_scale_free_mse_elsewhere():
    from edgefleet.trainer._distill import match_teacher

    g = torch.Generator().manual_seed(0)
    t = {"logits": torch.randn(8, 5, generator=g), "box": 100 * torch.randn(8, 4, generator=g)}
    shifted = {"logits": t["logits"] + 3.0, "box": t["box"]}
    # softmax ignores a constant shift of the logits: KL sees no difference, MSE does
    assert float(match_teacher(shifted, t, classifier_output="logits")) < 1e-6
    assert float(match_teacher(shifted, t, classifier_output=None)) > 1.0
    # a 10% error weighs the same on an output of scale 100 as on one of scale 1
    big = match_teacher({"box": t["box"] * 1.1}, {"box": t["box"]}, classifier_output=None)
    small = match_teacher({"box": t["box"] / 100 * 1.1}, {"box": t["box"] / 100},
                          classifier_output=None)  # fmt: skip
    assert float(big) == pytest.approx(float(small), rel=1e-4)
    assert float(big) == pytest.approx(0.01, rel=1e-3)
