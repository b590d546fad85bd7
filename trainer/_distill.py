"""Losses for fine-tuning and knowledge distillation, with or without labels.

``LossPlan`` knows a model's named outputs, which one is primary, whether it is a
classifier and whether labels exist, and the user's loss if any. From it:
- fine-tuning: the user's loss; else cross-entropy on labels; else matching the pre-step
  (teacher) model's outputs;
- distillation: ``alpha`` x teacher matching + (1 - ``alpha``) x (the user's loss or
  cross-entropy on labels); with neither, teacher matching alone.
Teacher matching covers every float output by name: KL divergence on softened logits
(times T^2, Hinton et al.) for a classifier's primary output, and mean squared error
normalised by the teacher output's mean square for the others (so outputs of different
scales weigh alike).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ._progress import Reporter
from ._recipe import TrainSpec
from ._signature import NamedIO
from ._train import LossFn, fit

__all__ = ["distill", "LossPlan", "UserLoss", "match_teacher"]

log = logging.getLogger(__name__)

# user loss: (outputs {name: tensor}, labels or None) -> scalar tensor
UserLoss = Callable[[dict[str, torch.Tensor], torch.Tensor | None], torch.Tensor]
Named = Callable[[nn.Module, Any], dict[str, torch.Tensor]]


def match_teacher(
    out: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], *,
    classifier_output: str | None, temperature: float = 1.0,
) -> torch.Tensor:  # fmt: skip
    """Sum over the float outputs: KL on softened logits for ``classifier_output``,
    normalised MSE for the others."""
    t = temperature
    losses = []
    for k, o in out.items():
        if not o.is_floating_point():
            continue
        tgt = target[k].detach()
        if k == classifier_output:
            log_p = nn.functional.log_softmax(o / t, dim=-1)
            log_q = nn.functional.log_softmax(tgt / t, dim=-1)
            kl = nn.functional.kl_div(log_p, log_q, reduction="batchmean", log_target=True)
            losses.append(kl * t * t)
        else:
            losses.append(nn.functional.mse_loss(o, tgt) / (tgt.pow(2).mean() + 1e-8))
    return torch.stack(losses).sum()


@dataclass(frozen=True)
class LossPlan:
    named: Named  # (model, inputs) -> outputs by name
    primary: str
    classifier: bool
    has_labels: bool
    user: UserLoss | None = None

    @classmethod
    def for_io(cls, input_names: Sequence[str], output_names: Sequence[str] | None, *,
               primary: str, classifier: bool, has_labels: bool,
               user: UserLoss | None = None) -> LossPlan:  # fmt: skip
        def named(m: nn.Module, xb: Any) -> dict[str, torch.Tensor]:
            w = NamedIO(m, list(input_names), output_names)
            args = [xb[k] for k in w.input_names] if isinstance(xb, Mapping) else [xb]
            return w.named(*args)

        return cls(named, primary, classifier, has_labels, user)

    @classmethod
    def logits(cls, has_labels: bool) -> LossPlan:
        """A single-input classifier returning logits (the built-in models)."""
        return cls(lambda m, xb: {"logits": m(xb)}, "logits", True, has_labels)

    def _hard(self, out: dict[str, torch.Tensor], yb: torch.Tensor | None) -> torch.Tensor | None:
        if self.user is not None:
            return self.user(out, yb)
        if self.has_labels and yb is not None:
            return nn.functional.cross_entropy(out[self.primary], yb)
        return None

    def _soft(self, m: nn.Module, teacher: nn.Module, xb: Any, out, t: float) -> torch.Tensor:
        with torch.no_grad():
            target = self.named(teacher, xb)
        cls_out = self.primary if self.classifier else None
        return match_teacher(out, target, classifier_output=cls_out, temperature=t)

    def finetune(self, teacher: nn.Module) -> LossFn:
        def loss(m: nn.Module, xb: Any, yb: torch.Tensor | None) -> torch.Tensor:
            out = self.named(m, xb)
            hard = self._hard(out, yb)
            return hard if hard is not None else self._soft(m, teacher, xb, out, 1.0)

        return loss

    def distill(self, teacher: nn.Module, temperature: float, alpha: float) -> LossFn:
        teacher.eval()

        def loss(m: nn.Module, xb: Any, yb: torch.Tensor | None) -> torch.Tensor:
            out = self.named(m, xb)
            soft = self._soft(m, teacher, xb, out, temperature)
            hard = self._hard(out, yb)
            return soft if hard is None else alpha * soft + (1 - alpha) * hard

        return loss

    def describe(self, temperature: float, alpha: float) -> str:
        soft = (f"KL on softened {self.primary!r} (T={temperature:g}) + normalised MSE on "
                "the other float outputs" if self.classifier
                else "normalised MSE on every float output")  # fmt: skip
        hard = ("the user's loss" if self.user is not None
                else "cross-entropy on labels" if self.has_labels else None)  # fmt: skip
        if hard is None:
            return f"teacher-output matching (no labels): {soft}"
        return f"{alpha:g} x teacher matching ({soft}) + {1 - alpha:g} x {hard}"


def distill(
    teacher: nn.Module,
    student: nn.Module,
    x: np.ndarray | Mapping[str, np.ndarray],
    y: np.ndarray | None,
    spec: TrainSpec,
    *,
    epochs: int,
    temperature: float = 4.0,
    alpha: float = 0.7,
    reporter: Reporter | None = None,
    seed: int = 0,
    plan: LossPlan | None = None,
) -> nn.Module:
    """Train ``student`` on the teacher's outputs (``plan``; default: a logits classifier,
    Hinton et al. with cross-entropy when ``y`` is given, teacher matching alone when not)."""
    plan = plan or LossPlan.logits(y is not None)
    return fit(student, x, y, spec, epochs=epochs, loss_fn=plan.distill(teacher, temperature,
               alpha), reporter=reporter, description="distill", seed=seed)  # fmt: skip
