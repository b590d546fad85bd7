"""Bundled data: scikit-learn's digits (ships with sklearn, nothing downloads) and a
generated image set used for latency/size work on the MobileNetV2-class model."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ._recipe import DataSpec

__all__ = ["Dataset", "load_dataset", "DIGITS_LABELS"]

log = logging.getLogger(__name__)

DIGITS_LABELS = [str(i) for i in range(10)]


@dataclass(frozen=True)
class Dataset:
    """Train / held-out split as float32 NCHW arrays and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels: list[str]
    scale: float  # raw value * scale = model input (recorded as preprocessing)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _split(x: np.ndarray, y: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, ...]:
    # Stratified so small held-out sets still cover every class.
    from sklearn.model_selection import train_test_split

    return tuple(train_test_split(x, y, test_size=frac, random_state=seed, stratify=y))


def load_dataset(spec: DataSpec, seed: int = 0) -> Dataset:
    if spec.dataset == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        # Pixel values are 0..16; scale to 0..1 and keep NCHW with one channel.
        x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
        y = d.target.astype(np.int64)
        x_tr, x_te, y_tr, y_te = _split(x, y, spec.test_fraction, seed)
        return Dataset(x_tr, y_tr, x_te, y_te, DIGITS_LABELS, 1.0 / 16.0)
    # Generated images: class k has a bright blob in a k-dependent place; learnable, so
    # accuracy figures on it are meaningful, and no download is needed.
    rng = np.random.default_rng(seed)
    n, s = spec.samples, spec.image_size
    y = rng.integers(0, 10, n).astype(np.int64)
    x = rng.normal(0.0, 0.3, (n, 3, s, s)).astype(np.float32)
    yy, xx = np.mgrid[0:s, 0:s] / s
    for i, k in enumerate(y):
        cy, cx = 0.2 + 0.6 * (k // 4) / 2, 0.2 + 0.6 * (k % 4) / 3
        x[i, k % 3] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02).astype(np.float32)
    x_tr, x_te, y_tr, y_te = _split(x, y, spec.test_fraction, seed)
    return Dataset(x_tr, y_tr, x_te, y_te, DIGITS_LABELS, 1.0)
