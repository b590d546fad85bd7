"""Apply the recipe's compression steps, in order, to an fp32 torch model."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
from edgefleet.sdk import ConfigError
from torch import nn

from ._distill import distill
from ._lowrank import factorize_linears
from ._models import build_model
from ._progress import Reporter
from ._prune import count_params, magnitude_prune, prune_channels, sparsity
from ._recipe import CompressStep, Distill, LowRank, MagnitudePrune, PruneChannels, TrainSpec
from ._train import fit

__all__ = ["StepResult", "apply_steps"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepResult:
    step: str
    params_before: int
    params_after: int
    detail: str
    accuracy: float | None = None


def _need_data(step: str, train: tuple[np.ndarray, np.ndarray] | None, epochs: int) -> None:
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
    train: tuple[np.ndarray, np.ndarray] | None,
    accuracy_fn=None,
    reporter: Reporter | None = None,
    seed: int = 0,
) -> tuple[nn.Module, list[StepResult]]:
    """Return the compressed model (the input is not modified) and what each step did."""
    reporter = reporter or Reporter(quiet=True)
    model = copy.deepcopy(model).eval()
    results = []
    for i, step in enumerate(steps):
        before = count_params(model)
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
                        seed=seed)  # fmt: skip
            elif step.finetune_epochs:
                fit(model, *train, train_spec, epochs=step.finetune_epochs, reporter=reporter,
                    description="fine-tune (pruned)", seed=seed)  # fmt: skip
            detail = ", ".join(f"{p.producer} {p.before}->{p.after}" for p in plans)
            if teacher is not None:
                detail += f"; distilled from the unpruned model, {step.finetune_epochs} epochs"
        elif isinstance(step, MagnitudePrune):
            _need_data(step.step, train, step.finetune_epochs)
            s = magnitude_prune(model, step.amount)
            if step.finetune_epochs:
                # Fine-tuning would revive zeros, so re-apply the mask afterwards.
                fit(model, *train, train_spec, epochs=step.finetune_epochs, reporter=reporter,
                    description="fine-tune (sparse)", seed=seed)  # fmt: skip
                s = magnitude_prune(model, step.amount)
            detail = f"weight sparsity {s:.1%}"
        elif isinstance(step, LowRank):
            _need_data(step.step, train, step.finetune_epochs)
            choices = factorize_linears(model, step.energy, step.min_features)
            if step.finetune_epochs and any(c.factorized for c in choices):
                fit(model, *train, train_spec, epochs=step.finetune_epochs, reporter=reporter,
                    description="fine-tune (low-rank)", seed=seed)  # fmt: skip
            detail = (
                ", ".join(
                    f"{c.layer} {c.out_features}x{c.in_features} rank {c.rank}"
                    + ("" if c.factorized else " (kept dense)")
                    for c in choices
                )
                or "no Linear layer large enough"
            )
        elif isinstance(step, Distill):
            _need_data(step.step, train, step.epochs)
            student = build_model(step.student.name, **step.student.args)
            model = distill(model, student, *train, train_spec, epochs=step.epochs,
                            temperature=step.temperature, alpha=step.alpha,
                            reporter=reporter, seed=seed)  # fmt: skip
            detail = f"student {step.student.name} {dict(step.student.args)}"
        else:  # pragma: no cover - the recipe union is closed
            raise ConfigError(f"unknown compression step {step!r}")
        model.eval()
        acc = accuracy_fn(model) if accuracy_fn else None
        res = StepResult(step.step, before, count_params(model), detail, acc)
        reporter.note(f"{step.step}: params {before} -> {res.params_after}; {detail}"
                      + (f"; accuracy {acc:.4f}" if acc is not None else ""))  # fmt: skip
        results.append(res)
    log.debug("final weight sparsity %.3f", sparsity(model))
    return model, results
