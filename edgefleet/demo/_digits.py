"""The demo's classifier: the trainer's built-in digits recipe, shortened so the whole
demo fits in a few minutes on two cores (fewer epochs, fewer latency runs)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from ._packages import TrainedPackage

__all__ = ["train_digits"]

log = logging.getLogger(__name__)


def train_digits(
    out: Path,
    signing_key: Path,
    *,
    epochs: int = 3,
    formats: Sequence[str] = ("onnx", "tflite"),
    version: str = "1.0.0",
    quiet: bool = True,
) -> TrainedPackage:
    """Train, compress, export, verify, package and sign the digits model into ``out``."""
    from edgefleet.trainer import load_recipe, run_recipe

    recipe = load_recipe("digits")
    steps = []
    for s in recipe.compress:
        # Keep every compression step, with at most one fine-tuning epoch each.
        if getattr(s, "finetune_epochs", 0) > 1:
            s = s.model_copy(update={"finetune_epochs": 1})
        steps.append(s)
    recipe = recipe.model_copy(
        update={
            "version": version,
            "train": recipe.train.model_copy(update={"epochs": epochs}),
            "compress": steps,
            "export": recipe.export.model_copy(update={"formats": list(formats)}),
            "verify": recipe.verify.model_copy(update={"latency_runs": 10}),
        }
    )
    t0 = time.perf_counter()
    result = run_recipe(recipe, out, signing_key=signing_key, quiet=quiet)
    seconds = time.perf_counter() - t0
    ok, failed = [], []
    for r in result.exports:
        if r.error:
            failed.append(f"{r.name}: {r.error}")
        else:
            acc = r.metrics.accuracy if r.metrics else None
            acc_s = f" acc {acc:.3f}" if acc is not None else ""
            ok.append(f"{r.name} {max(1, r.size // 1024)} KiB{acc_s}")
    if result.package is None:
        from edgefleet.sdk import PackageError

        raise PackageError("the trainer produced no package")
    return TrainedPackage(
        result.package,
        seconds,
        result.compressed_accuracy,
        tuple(ok),
        tuple(failed),
    )
