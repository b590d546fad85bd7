"""Run a recipe end to end: data -> train (or load a checkpoint) -> ``compress``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from edgefleet.sdk import MetricSpec, Preprocessing

from ._data import load_dataset
from ._models import build_model
from ._pipeline import CompressOptions, CompressResult, compress
from ._progress import Reporter
from ._recipe import Recipe, recipe_digest
from ._train import evaluate, fit

__all__ = ["run_recipe", "train_model"]

log = logging.getLogger(__name__)


def train_model(recipe: Recipe, *, quiet: bool = True, checkpoint: str | Path | None = None):
    """(trained model, dataset) for the recipe; a checkpoint replaces training."""
    torch.manual_seed(recipe.seed)
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    ds = load_dataset(recipe.data, recipe.seed)
    model = build_model(recipe.model.name, **recipe.model.args)
    ckpt = checkpoint or recipe.model.checkpoint
    if ckpt:
        state = torch.load(str(ckpt), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        log.info("loaded weights from %s", ckpt)
    else:
        with Reporter(quiet=quiet) as rep:
            fit(model, ds.x_train, ds.y_train, recipe.train, reporter=rep, seed=recipe.seed)
    model.eval()
    log.info("%s held-out accuracy %.4f", recipe.model.name, evaluate(model, ds.x_test, ds.y_test))
    return model, ds


def run_recipe(
    recipe: Recipe,
    out: str | Path,
    *,
    signing_key=None,
    quiet: bool = True,
    checkpoint: str | Path | None = None,
) -> CompressResult:
    model, ds = train_model(recipe, quiet=quiet, checkpoint=checkpoint)
    # Calibrate on training images (shuffled, so every class is represented).
    rng = np.random.default_rng(recipe.seed)
    calib = ds.x_train[rng.permutation(len(ds.x_train))]
    opts = CompressOptions(
        name=recipe.name,
        version=recipe.version,
        description=recipe.description,
        labels=tuple(ds.labels),
        targets=tuple(recipe.targets),
        steps=tuple(recipe.compress),
        train=recipe.train,
        quantize=recipe.quantize,
        export=recipe.export,
        verify=recipe.verify,
        preprocessing=Preprocessing(
            layout="NCHW",
            scale=ds.scale,
            notes=f"{recipe.data.dataset}: float32 input = raw pixel value * scale",
        ),  # fmt: skip
        recipe_digest=recipe_digest(recipe),
        seed=recipe.seed,
        metric=_metric(recipe),
        # The built-in models' names since schema 1: devices and the demo feed "input".
        input_names=("input",),
        output_names=("logits",),
        task="classification",
    )
    return compress(
        model, calib, options=opts, train_data=(ds.x_train, ds.y_train),
        heldout=(ds.x_test, ds.y_test), out=out, signing_key=signing_key, quiet=quiet,
    )  # fmt: skip


def _metric(recipe: Recipe) -> MetricSpec | None:
    v = recipe.verify
    if v.metric is None:
        return None
    return MetricSpec(name=v.metric, direction=v.direction, floor=v.floor, max_drop=v.max_drop)
