"""Knowledge distillation: a smaller student learns from the teacher's softened logits."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from ._progress import Reporter
from ._recipe import TrainSpec
from ._train import fit

__all__ = ["distill"]

log = logging.getLogger(__name__)


def distill(
    teacher: nn.Module,
    student: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    spec: TrainSpec,
    *,
    epochs: int,
    temperature: float = 4.0,
    alpha: float = 0.7,
    reporter: Reporter | None = None,
    seed: int = 0,
) -> nn.Module:
    """Hinton et al. loss: alpha * T^2 * KL(student_T || teacher_T) + (1 - alpha) * CE."""
    teacher.eval()
    t = temperature

    def loss_fn(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            soft = nn.functional.log_softmax(teacher(xb) / t, dim=1)
        logits = model(xb)
        kd = nn.functional.kl_div(
            nn.functional.log_softmax(logits / t, dim=1), soft, reduction="batchmean",
            log_target=True,
        )  # fmt: skip
        return alpha * t * t * kd + (1 - alpha) * nn.functional.cross_entropy(logits, yb)

    return fit(student, x, y, spec, epochs=epochs, loss_fn=loss_fn, reporter=reporter,
               description="distill", seed=seed)  # fmt: skip
