"""The demo's packages: its signing key pair, and the trained-package cache in ``--out`` that
lets a re-run skip training (the digits CNN and, with ``--generative``, the tiny LM)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TrainedPackage", "cached_or_trained", "demo_keys"]

log = logging.getLogger(__name__)


def demo_keys(directory: Path) -> tuple[Path, Path]:
    """The package signing key pair (created with the SDK on first use, then reused)."""
    from edgefleet.sdk import generate_keypair

    priv, pub = directory / "demo.key", directory / "demo.pub"
    if priv.exists() and pub.exists():
        return priv, pub
    return generate_keypair(directory, "demo")


@dataclass(frozen=True)
class TrainedPackage:
    """What a training run made: the signed package and the figures the demo shows."""

    path: Path
    seconds: float
    accuracy: float | None  # held-out accuracy / agreement of the shipped model
    artifacts: tuple[str, ...]  # "model.int8.onnx 22 KiB acc 0.98", ...
    failed: tuple[str, ...]  # formats that did not export, with the reason


def cached_or_trained(
    directory: Path, retrain: bool, train: Callable[[Path], TrainedPackage]
) -> tuple[Path, TrainedPackage | None]:
    """The newest package a previous run left in ``directory`` (one per model), or a new
    one from ``train(directory)`` (after clearing it). The record is None when reused."""
    found = sorted(directory.glob("*.efpkg"))
    if found and not retrain:
        log.info("reusing %s", found[-1])
        return found[-1], None
    shutil.rmtree(directory, ignore_errors=True)
    trained = train(directory)
    return trained.path, trained
