"""Apply the recipe's compression steps, in order, to an fp32 torch model."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from edgefleet.sdk import ConfigError
from torch import nn

from ._distill import LossPlan, distill
from ._lowrank import factorize_linears
from ._models import build_model
from ._progress import Reporter
from ._prune import count_params, magnitude_prune, prune_channels, sparsity
from ._recipe import CompressStep, Distill, LowRank, MagnitudePrune, PruneChannels, TrainSpec
from ._train import fit

__all__ = ["StepResult", "StepGate", "apply_steps", "ENERGY_LADDER"]

# LowRank rank search: energies tried upward from the step's own until the gate holds.
ENERGY_LADDER = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepResult:
    """One compression step as applied: parameter counts before and after, what it did,
    and the gate's verdict (``skipped`` when the step broke the gate and was undone)."""

    step: str
    params_before: int
    params_after: int
    detail: str
    score: float | None = None  # the gate's metric after the step
    metric: str | None = None
    skipped: bool = False  # the step broke the gate and was undone


@dataclass(frozen=True)
class StepGate:
    """The accuracy gate for compression steps: ``score(model)`` -> metric value."""

    metric: str
    score: Callable[[nn.Module], float]
    passes: Callable[[float], bool]
    describe: Callable[[float], str]


def _need_data(step: str, train: tuple | None, epochs: int) -> None:
    if epochs > 0 and train is None:
        raise ConfigError(
            f"compression step {step!r} fine-tunes for {epochs} epochs and needs training data "
            "(pass train_data=(x, y), or set its epochs to 0)"
        )


def apply_steps(
    model: nn.Module,
    steps: list[CompressStep] | tuple[CompressStep, ...],
    *,
    train_spec: TrainSpec,
    train: tuple[np.ndarray | dict, np.ndarray | None] | None,
    accuracy_fn=None,
    gate: StepGate | None = None,
    losses: LossPlan | None = None,
    student: nn.Module | None = None,
    reporter: Reporter | None = None,
    seed: int = 0,
) -> tuple[nn.Module, list[StepResult]]:
    """Return the compressed model (the input is not modified) and what each step did.

    With a ``gate``, a step whose result misses it is undone and reported as skipped, and
    LowRank searches its rank until the gate holds. ``losses`` says how to fine-tune and
    distil (the user's loss, cross-entropy on labels, or matching the pre-step model's
    outputs when there are no labels); None: a logits classifier (the built-in models).
    ``student``: the model a Distill step trains (else the step's own ``student`` spec)."""
    reporter = reporter or Reporter(quiet=True)
    if losses is None:
        losses = LossPlan.logits(train is not None and train[1] is not None)
    model = copy.deepcopy(model).eval()
    results = []
    score_fn = gate.score if gate else accuracy_fn
    for i, step in enumerate(steps):
        before = count_params(model)
        prev = copy.deepcopy(model)
        loss = losses.finetune(prev)
        if isinstance(step, PruneChannels):
            _need_data(step.step, train, step.finetune_epochs)
            teacher = copy.deepcopy(model) if step.distill and step.finetune_epochs else None
            plans = prune_channels(model, step.amount, residual_amount=step.residual_amount,
                                   head=step.head, min_channels=step.min_channels)  # fmt: skip
            if not plans:
                raise ConfigError(f"compress.{i}: no prunable Conv2d->Conv2d chain in the model")
            if teacher is not None:
                distill(teacher, model, *train, train_spec, epochs=step.finetune_epochs,
                        temperature=step.temperature, alpha=step.alpha, reporter=reporter,
                        seed=seed, plan=losses)  # fmt: skip
            elif step.finetune_epochs:
                fit(model, *train, train_spec, epochs=step.finetune_epochs, reporter=reporter,
                    description="fine-tune (pruned)", seed=seed, loss_fn=loss)  # fmt: skip
            detail = ", ".join(f"{p.producer} {p.before}->{p.after}" for p in plans)
            if teacher is not None:
                detail += f"; distilled from the unpruned model, {step.finetune_epochs} epochs"
        elif isinstance(step, MagnitudePrune):
            _need_data(step.step, train, step.finetune_epochs)
            s = magnitude_prune(model, step.amount)
            if step.finetune_epochs:
                # Fine-tuning would revive zeros, so re-apply the mask afterwards.
                fit(model, *train, train_spec, epochs=step.finetune_epochs, reporter=reporter,
                    description="fine-tune (sparse)", seed=seed, loss_fn=loss)  # fmt: skip
                s = magnitude_prune(model, step.amount)
            detail = f"weight sparsity {s:.1%}"
        elif isinstance(step, LowRank):
            _need_data(step.step, train, step.finetune_epochs)
            model, detail = _lowrank(model, step, gate, train, train_spec, loss, reporter, seed)
        elif isinstance(step, Distill):
            _need_data(step.step, train, step.epochs)
            pupil, what = _student(i, step, student)
            model = distill(model, pupil, *train, train_spec, epochs=step.epochs,
                            temperature=step.temperature, alpha=step.alpha,
                            reporter=reporter, seed=seed, plan=losses)  # fmt: skip
            detail = (f"student {what}, {step.epochs} epochs; loss: "
                      f"{losses.describe(step.temperature, step.alpha)}")  # fmt: skip
        else:  # pragma: no cover - the recipe union is closed
            raise ConfigError(f"unknown compression step {step!r}")
        model.eval()
        value = score_fn(model) if score_fn else None
        skipped = gate is not None and value is not None and not gate.passes(value)
        if skipped:
            detail = f"skipped: {gate.describe(value)} (after {detail})"
            log.warning("compression step %s undone: %s", step.step, detail)
            model = prev
        name = gate.metric if gate else ("accuracy" if value is not None else None)
        res = StepResult(step.step, before, count_params(model), detail, value, name, skipped)
        reporter.note(f"{step.step}: params {before} -> {res.params_after}; {detail}"
                      + (f"; {name} {value:.4f}" if value is not None else ""))  # fmt: skip
        results.append(res)
    log.debug("final weight sparsity %.3f", sparsity(model))
    return model, results


def _student(i: int, step: Distill, given: nn.Module | None) -> tuple[nn.Module, str]:
    """(a fresh student, its description): the one passed to compress, else the step's."""
    if given is not None:
        return copy.deepcopy(given).train(), type(given).__name__
    if step.student is None:
        raise ConfigError(f"compress.{i}: a distill step needs a student: name a built-in "
                          "model in the step (student = {name = ...}) or pass "
                          "CompressOptions(student=<nn.Module>)")  # fmt: skip
    return build_model(step.student.name, **step.student.args), (
        f"{step.student.name} {dict(step.student.args)}"
    )


def _lowrank(model, step: LowRank, gate: StepGate | None, train, train_spec, loss, reporter,
             seed) -> tuple[nn.Module, str]:  # fmt: skip
    """Factorise at growing energies (ranks) until the gate holds; fine-tune when the step
    asks for it. Without a gate: the step's energy alone."""
    energies = [step.energy]
    if gate is not None:
        energies += [e for e in ENERGY_LADDER if e > step.energy]
    tried = []
    cand, choices = model, []
    for energy in energies:
        cand = copy.deepcopy(model)
        choices = factorize_linears(cand, energy, step.min_features)
        if not any(c.factorized for c in choices):
            break  # higher ranks no longer save parameters
        if step.finetune_epochs:
            fit(cand, *train, train_spec, epochs=step.finetune_epochs, reporter=reporter,
                description="fine-tune (low-rank)", seed=seed, loss_fn=loss)  # fmt: skip
        if gate is None:
            break
        value = gate.score(cand.eval())
        tried.append(f"energy {energy:g}: {gate.metric} {value:.4g}")
        if gate.passes(value):
            break
    ranks = (
        ", ".join(
            f"{c.layer} {c.out_features}x{c.in_features} rank {c.rank}"
            + ("" if c.factorized else " (kept dense)")
            for c in choices
        )
        or "no Linear layer large enough"
    )
    search = f"; rank search: {'; '.join(tried)}" if len(tried) > 1 else ""
    return cand, ranks + search
