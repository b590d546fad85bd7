"""Sampling parameters (validated) and the numpy sampler used when a request is not greedy.

Greedy requests use the runtime's own argmax step; sampling happens here so that every
runtime draws the same way from the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._errors import InputError

__all__ = ["SamplingParams", "sample"]


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @classmethod
    def build(cls, **kw) -> SamplingParams:
        p = cls(**kw)
        if not isinstance(p.max_new_tokens, int) or p.max_new_tokens < 1:
            raise InputError(f"expected max_new_tokens >= 1, got {p.max_new_tokens!r}")
        if not math.isfinite(p.temperature) or p.temperature < 0:
            raise InputError(f"expected temperature >= 0, got {p.temperature!r}")
        if not 0.0 < p.top_p <= 1.0:
            raise InputError(f"expected 0 < top_p <= 1, got {p.top_p!r}")
        if not isinstance(p.top_k, int) or p.top_k < 0:
            raise InputError(f"expected top_k >= 0 (0 = off), got {p.top_k!r}")
        if any(not isinstance(s, str) or not s for s in p.stop):
            raise InputError(f"expected stop as non-empty strings, got {p.stop!r}")
        if p.seed is not None and (not isinstance(p.seed, int) or p.seed < 0):
            raise InputError(f"expected seed as an int >= 0, got {p.seed!r}")
        return p

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    @property
    def deterministic(self) -> bool:
        """Same request, same answer: what the result cache may serve."""
        return self.greedy or self.seed is not None

    def key(self) -> dict:
        if self.greedy:
            return {"n": self.max_new_tokens, "stop": list(self.stop), "greedy": True}
        return {
            "n": self.max_new_tokens,
            "stop": list(self.stop),
            "t": self.temperature,
            "p": self.top_p,
            "k": self.top_k,
            "seed": self.seed,
        }


def sample(logits: np.ndarray, p: SamplingParams, rng: np.random.Generator) -> int:
    """Draw one token id from ``logits`` (vocab,) with temperature, top-k and top-p."""
    x = logits.astype(np.float64) / p.temperature
    if p.top_k and p.top_k < x.size:
        kth = np.partition(x, -p.top_k)[-p.top_k]
        x = np.where(x < kth, -np.inf, x)
    x = np.exp(x - x.max())
    probs = x / x.sum()
    if p.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        keep = np.cumsum(probs[order]) - probs[order] < p.top_p  # always keeps the first
        mask = np.zeros_like(probs, dtype=bool)
        mask[order[keep]] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))
