"""Low-rank factorisation of Linear layers: W (out x in) ~ B (out x r) @ A (r x in)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["RankChoice", "choose_rank", "factorize_linears"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankChoice:
    """One Linear layer's rank: ``shape`` is its weight's (out, in); ``energy`` the fraction
    of sum(S^2) the kept singular values carry; ``factorized`` whether that saved weights."""

    layer: str
    shape: tuple[int, int]
    rank: int
    energy: float
    factorized: bool

    @property
    def out_features(self) -> int:
        return self.shape[0]

    @property
    def in_features(self) -> int:
        return self.shape[1]


def choose_rank(singular_values: torch.Tensor, energy: float) -> int:
    """Smallest r whose top-r singular values hold at least ``energy`` of sum(S^2)."""
    e = singular_values.double() ** 2
    cum = torch.cumsum(e, 0) / e.sum()
    return int(torch.searchsorted(cum, torch.tensor(energy, dtype=cum.dtype) - 1e-12)) + 1


@torch.no_grad()
def factorize_linears(model: nn.Module, energy: float, min_features: int = 32) -> list[RankChoice]:
    """Replace each large enough Linear with two thinner ones when that saves parameters."""
    choices = []
    targets = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and min(m.in_features, m.out_features) >= min_features
    ]
    for name, lin in targets:
        u, s, vh = torch.linalg.svd(lin.weight.data.double(), full_matrices=False)
        r = choose_rank(s, energy)
        kept = float((s[:r] ** 2).sum() / (s**2).sum())
        worth = r * (lin.in_features + lin.out_features) < lin.in_features * lin.out_features
        choices.append(RankChoice(name, (lin.out_features, lin.in_features), r, kept, worth))
        if not worth:
            continue
        root = s[:r].sqrt()
        first = nn.Linear(lin.in_features, r, bias=False)
        second = nn.Linear(r, lin.out_features, bias=lin.bias is not None)
        first.weight.data = (root[:, None] * vh[:r]).float()
        second.weight.data = (u[:, :r] * root[None, :]).float()
        if lin.bias is not None:
            second.bias.data = lin.bias.data.clone()
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        setattr(parent, name.rpartition(".")[2], nn.Sequential(first, second))
        log.info("low-rank %s: %dx%d -> rank %d (%.3f energy)", name, *lin.weight.shape, r, kept)
    return choices
