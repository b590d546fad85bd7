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
    # every block with an expansion conv (16), the stem, and the two single-block stages
    # whose output feeds only the next conv (no skip connection joins them)
    assert len(plans) == 19
    assert {"features.0", "features.3.conv.3", "features.19.conv.6"} <= {p.producer for p in plans}
    assert model(x).shape == (2, 10)
    block = model.features[4]  # stem conv, bn, relu, the t=1 block, then this one
    dw = block.conv[3]
    assert dw.groups == dw.in_channels == dw.out_channels == block.conv[0].out_channels
    # residual streams and the head are kept unless asked for
    assert block.conv[6].out_channels == 16 and model.classifier[3].in_features == 1280
    assert count_params(model) < 0.7 * before


def _macs(model: nn.Module, x: torch.Tensor) -> int:
    total = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: total.append(m.weight.numel() * o[0, 0].numel()))
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    model(x)
    for h in hooks:
        h.remove()
    return sum(total)


@torch.no_grad()
def test_residual_and_head_pruning_removes_exactly_the_dead_channels():
    # Zero every other channel of each producer's BatchNorm: in the residual streams the
    # skip sums carry zeros there, the head's flatten reads zeros. Pruning those channels
    # (groups joined by skips shrink together) must leave the logits unchanged.
    torch.manual_seed(0)
    model = MobileNetV2Like(width=0.5, num_classes=10).eval()
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):  # depthwise BNs too: their channels go as well
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.1, 0.1)
            bn.weight[1::2] = 0.0
            bn.bias[1::2] = 0.0
    x = torch.randn(2, 3, 32, 32)
    want = model(x)
    plans = prune_channels(model, 0.5, residual_amount=0.5, head=True)
    assert {p.producer for p in plans} >= {"features.4.conv.6", "features.20"}
    assert all(p.after == p.before // 2 for p in plans)
    assert model.classifier[3].in_features == 640
    # the 24-channel stage (2 blocks, one skip) shrank as one, and so did its reader
    stream = model.features[4].conv[6].out_channels
    assert stream == model.features[5].conv[6].out_channels == model.features[6].conv[0].in_channels
    assert stream == 8
    assert torch.allclose(model(x), want, atol=1e-4)


def test_untraceable_model_falls_back_to_sequential_chains():
    class Dynamic(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 16, 3), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 8, 3))  # fmt: skip

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x if x.sum() > 0 else -x)

    from edgefleet.trainer._prune_graph import channel_groups

    model = Dynamic().eval()
    assert channel_groups(model) is None
    plans = prune_channels(model, 0.5, residual_amount=0.5, head=True)
    assert [(p.producer, p.before, p.after) for p in plans] == [("body.0", 16, 8)]
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 8, 4, 4)


def test_mobilenet_recipe_pipeline_removes_most_of_the_work():
    # The shipped MobileNetV2 recipe's pruning step, on the benchmark's network shape
    # (width 1.0, 1000 classes): a structural guard for the latency figure in
    # benchmarks/compression.py, which times it.
    from edgefleet.trainer import PruneChannels, load_recipe

    step = next(s for s in load_recipe("mobilenet_v2").compress if isinstance(s, PruneChannels))
    assert step.residual_amount > 0 and step.head and step.distill
    torch.manual_seed(0)
    model = MobileNetV2Like(num_classes=1000).eval()
    x = torch.randn(1, 3, 64, 64)
    before = _macs(model, x)
    pruned, _ = apply_steps(model, [step.model_copy(update={"finetune_epochs": 0})],
                            train_spec=FAST, train=None)  # fmt: skip
    assert pruned(x).shape == (1, 1000)
    assert _macs(pruned, x) < before / 4


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


def test_prune_with_distillation_recovers_accuracy(teacher, digits):
    from edgefleet.trainer import PruneChannels

    step = PruneChannels(step="prune_channels", amount=0.5, head=True, min_channels=8,
                         finetune_epochs=3, distill=True)  # fmt: skip
    pruned, results = apply_steps(teacher, [step], train_spec=FAST,
                                  train=(digits.x_train, digits.y_train))  # fmt: skip
    assert "distilled from the unpruned model" in results[0].detail
    assert [m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)] == [8, 16, 16]
    assert evaluate(pruned, digits.x_test, digits.y_test) >= 0.95


def test_steps_that_fine_tune_need_training_data(teacher):
    from edgefleet.sdk import ConfigError
    from edgefleet.trainer import PruneChannels

    with pytest.raises(ConfigError, match="needs training data"):
        apply_steps(teacher, [PruneChannels(step="prune_channels", amount=0.5)],
                    train_spec=FAST, train=None)  # fmt: skip
