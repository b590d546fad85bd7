"""Training, fine-tuning and evaluation loops (CPU, plain PyTorch)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

from ._progress import Reporter
from ._recipe import TrainSpec

__all__ = ["fit", "evaluate", "predict_logits", "LossFn"]

log = logging.getLogger(__name__)

# (model, inputs, labels) -> loss; lets distillation reuse the same loop. Inputs are a
# tensor, or {name: tensor} for a model with named inputs; labels may be None.
LossFn = Callable[[nn.Module, torch.Tensor | dict, torch.Tensor | None], torch.Tensor]


def _ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


def fit(
    model: nn.Module,
    x: np.ndarray | Mapping[str, np.ndarray],
    y: np.ndarray | None,
    spec: TrainSpec,
    *,
    epochs: int | None = None,
    loss_fn: LossFn | None = None,
    reporter: Reporter | None = None,
    description: str = "train",
    seed: int = 0,
    sampler_rank: tuple[int, int] | None = None,
) -> nn.Module:
    """Adam + cosine schedule. ``sampler_rank=(rank, world)`` shards each epoch for DDP.
    ``x`` may be {name: array} (named inputs); ``y`` may be None when ``loss_fn`` needs no
    labels (e.g. matching a teacher's outputs)."""
    epochs = spec.epochs if epochs is None else epochs
    reporter = reporter or Reporter(quiet=True)
    if loss_fn is None and y is None:
        raise ValueError("fine-tuning without labels needs a loss_fn")
    loss_fn = loss_fn or _ce
    if epochs == 0:
        return model
    if spec.threads and spec.threads != torch.get_num_threads():
        # Scoped: a user's compress() call must not change their process-wide setting.
        before = torch.get_num_threads()
        torch.set_num_threads(spec.threads)
        try:
            return fit(model, x, y, spec, epochs=epochs, loss_fn=loss_fn, reporter=reporter,
                       description=description, seed=seed, sampler_rank=sampler_rank)  # fmt: skip
        finally:
            torch.set_num_threads(before)
    gen = torch.Generator().manual_seed(seed)
    named = isinstance(x, Mapping)
    xt = {k: torch.from_numpy(v) for k, v in x.items()} if named else torch.from_numpy(x)
    yt = None if y is None else torch.from_numpy(y)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    n = len(next(iter(xt.values()))) if named else len(xt)
    idx_all = torch.arange(n)
    if sampler_rank is not None:
        rank, world = sampler_rank
        # Equal shard sizes: DDP ranks must run the same number of steps or they hang.
        idx_all = idx_all[rank::world][: n // world]
    steps_per_epoch = max(1, (len(idx_all) + spec.batch_size - 1) // spec.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    model.train()
    with reporter.task(description, epochs * steps_per_epoch) as advance:
        for epoch in range(epochs):
            perm = idx_all[torch.randperm(len(idx_all), generator=gen)]
            total = 0.0
            for i in range(0, len(perm), spec.batch_size):
                b = perm[i : i + spec.batch_size]
                opt.zero_grad()
                xb = {k: v[b] for k, v in xt.items()} if named else xt[b]
                loss = loss_fn(model, xb, None if yt is None else yt[b])
                loss.backward()
                opt.step()
                sched.step()
                value = loss.item()
                total += value * len(b)
                advance(info=f"epoch {epoch + 1}/{epochs} loss {value:.3f}")
            log.debug("%s epoch %d loss %.4f", description, epoch, total / len(perm))
    model.eval()
    return model


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    outs = [model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(outs).astype(np.float32)


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy on (x, y)."""
    return float((predict_logits(model, x).argmax(1) == y).mean())
