"""The demo's language model: the trainer's built-in ``tiny_llama`` recipe as it ships (a
Llama-style LM trained on text the recipe generates, ONNX Runtime GenAI exports at fp32, int8
and int4, verified against torch, signed). Nothing downloads."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ._packages import TrainedPackage

__all__ = ["TINY_LM_RECIPE", "train_tiny_lm"]

log = logging.getLogger(__name__)

TINY_LM_RECIPE = "tiny_llama"


def train_tiny_lm(out: Path, signing_key: Path, *, quiet: bool = True) -> TrainedPackage:
    """Train, export, verify, package and sign the tiny LM into ``out``."""
    from edgefleet.sdk import PackageError
    from edgefleet.trainer import load_llm_recipe, run_llm_recipe

    t0 = time.perf_counter()
    result = run_llm_recipe(load_llm_recipe(TINY_LM_RECIPE), out, signing_key=signing_key,
                            quiet=quiet)  # fmt: skip
    shipped = [r for r in result.exports if r.shipped]
    if not shipped:
        raise PackageError(f"the {TINY_LM_RECIPE} recipe shipped no artifact: {result.exports}")
    agreement = min(r.scores["next_token_agreement"] for r in shipped)
    return TrainedPackage(
        result.package,
        time.perf_counter() - t0,
        agreement,
        tuple(
            f"{r.name} {max(1, (r.size or 0) // 1024)} KiB next-token agreement "
            f"{r.scores['next_token_agreement']:.3f}"
            for r in shipped
        ),
        tuple(f"{r.name}: {r.error}" for r in result.exports if r.error),
    )
