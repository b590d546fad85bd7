"""Each compression step does what it says, on real models and the real digits data."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from edgefleet.trainer import (  # noqa: E402
    DataSpec,
    DigitsCNN,
    Distill,
    MobileNetV2Like,
    ModelSpec,
    TrainSpec,
    choose_rank,
    count_params,
    factorize_linears,
    magnitude_prune,
    prune_channels,
)
from edgefleet.trainer._data import load_dataset  # noqa: E402
from edgefleet.trainer._steps import apply_steps  # noqa: E402
from edgefleet.trainer._train import evaluate, fit  # noqa: E402
from torch import nn  # noqa: E402

FAST = TrainSpec(epochs=6, batch_size=64, lr=5e-3)


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return load_dataset(DataSpec(dataset="digits"), seed=0)


@pytest.fixture(scope="module")
def teacher(digits):
    torch.manual_seed(0)
    return fit(DigitsCNN(), digits.x_train, digits.y_train, FAST)


def test_channel_pruning_really_shrinks_tensors_and_keeps_function(teacher, digits):
    model = DigitsCNN()
    model.load_state_dict(teacher.state_dict())
    before = count_params(model)
    convs_before = [m.weight.shape for m in model.modules() if isinstance(m, nn.Conv2d)]
    plans = prune_channels(model, 0.5)
    convs_after = [m.weight.shape for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert {p.producer for p in plans} == {"features.0", "features.3"}
    # producer outputs halve, consumer inputs follow, the last conv (feeds the head) is kept
    assert convs_after[0][0] == convs_before[0][0] // 2
    assert convs_after[1][1] == convs_after[0][0]
    assert convs_after[1][0] == convs_before[1][0] // 2
    assert convs_after[2][1] == convs_after[1][0]
    assert convs_after[2][0] == convs_before[2][0]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns[0].running_mean.shape[0] == convs_after[0][0]
    assert count_params(model) < 0.75 * before
    assert model(torch.from_numpy(digits.x_test[:4])).shape == (4, 10)


@torch.no_grad()
def test_channel_pruning_removes_exactly_the_dead_channels(teacher, digits):
    # Channels whose BatchNorm outputs 0 contribute nothing after ReLU: pruning them (and
    # only them) must leave the logits unchanged, which checks every index is aligned.
    model = DigitsCNN()
    model.load_state_dict(teacher.state_dict())
    model.eval()
    x = torch.from_numpy(digits.x_test[:32])
    for bn in (model.features[1], model.features[4]):
        dead = torch.arange(bn.num_features) % 2 == 1
        bn.weight[dead] = 0.0
        bn.bias[dead] = 0.0
    want = model(x)
    prune_channels(model, 0.5)
    assert model.features[0].out_channels == 8
    assert torch.allclose(model(x), want, atol=1e-5)


def test_channel_pruning_mobilenet_keeps_residuals_and_shrinks_latency_work():
    torch.manual_seed(0)
    model = MobileNetV2Like(width=0.5).eval()
    x = torch.randn(2, 3, 32, 32)
    before = count_params(model)
    plans = prune_channels(model, 0.5)
    assert len(plans) == 16  # every block with an expansion conv; the t=1 block has none
    assert model(x).shape == (2, 10)
    block = model.features[4]  # stem conv, bn, relu, the t=1 block, then this one
    dw = block.conv[3]
    assert dw.groups == dw.in_channels == dw.out_channels == block.conv[0].out_channels
    assert count_params(model) < 0.7 * before


def test_magnitude_pruning_zeroes_the_requested_fraction(teacher):
    model = DigitsCNN()
    model.load_state_dict(teacher.state_dict())
    s = magnitude_prune(model, 0.6)
    assert 0.59 < s < 0.61
    # masks are baked in: plain parameters, no pruning hooks left for the exporters
    assert not any(n.endswith("_orig") for n, _ in model.named_parameters())


def test_choose_rank_uses_the_energy_threshold():
    s = torch.tensor([3.0, 2.0, 1.0, 0.5])  # energies 9, 4, 1, 0.25 of 14.25
    assert choose_rank(s, 9 / 14.25) == 1
    assert choose_rank(s, 0.90) == 2
    assert choose_rank(s, 0.95) == 3
    assert choose_rank(s, 1.0) == 4


def test_lowrank_factorizes_a_truly_low_rank_layer():
    torch.manual_seed(0)
    lin = nn.Linear(64, 48)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(48, 5) @ torch.randn(5, 64))  # rank 5 exactly
    model = nn.Sequential(lin, nn.ReLU(), nn.Linear(48, 40))
    x = torch.randn(16, 64)
    want = model(x)
    choices = factorize_linears(model, energy=0.999, min_features=32)
    assert choices[0].rank == 5 and choices[0].factorized
    first, second = model[0]
    assert first.weight.shape == (5, 64) and second.weight.shape == (48, 5)
    assert torch.allclose(model(x), want, atol=1e-4)
    # a random dense layer is full rank at that energy: kept, not made bigger
    assert not choices[1].factorized and isinstance(model[2], nn.Linear)


def test_distilled_student_is_smaller_and_accurate(teacher, digits):
    step = Distill(step="distill", student=ModelSpec(args={"width": 8, "hidden": 32}), epochs=6)
    student, results = apply_steps(
        teacher, [step], train_spec=FAST, train=(digits.x_train, digits.y_train)
    )
    assert count_params(student) < count_params(teacher) / 3
    acc = evaluate(student, digits.x_test, digits.y_test)
    assert acc >= 0.9, acc
    assert results[0].params_after == count_params(student)
    # apply_steps worked on a copy: the teacher is untouched
    assert teacher.features[0].out_channels == 16 and isinstance(teacher.classifier[1], nn.Linear)


def test_steps_that_fine_tune_need_training_data(teacher):
    from edgefleet.sdk import ConfigError
    from edgefleet.trainer import PruneChannels

    with pytest.raises(ConfigError, match="needs training data"):
        apply_steps(teacher, [PruneChannels(step="prune_channels", amount=0.5)],
                    train_spec=FAST, train=None)  # fmt: skip
