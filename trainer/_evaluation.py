"""Task-neutral evaluation: the user's named metric, built-in figures, and the gate.

``eval_fn(predict) -> float`` where ``predict`` takes and returns dicts of numpy arrays
({input name: array} -> {output name: array}). For a model with one input and one output
``predict`` also takes a bare array and returns the bare output (the pre-issue-11 form).

Built-in metrics (no ``eval_fn`` needed), on the primary output against the fp32 torch
reference model's outputs on the same held-out inputs:
- ``accuracy``: argmax == labels (needs labels);
- ``top1_agreement``: argmax equal to the reference's (classifiers only);
- ``cosine``: mean per-sample cosine similarity to the reference (embeddings, any output);
- ``max_abs_error``: largest absolute difference to the reference (lower is better).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from edgefleet.sdk import ConfigError, MetricSpec

__all__ = [
    "Predict",
    "EvalFn",
    "BUILTIN_METRICS",
    "Evaluator",
    "builtin_scores",
    "default_metric",
    "cosine",
]

log = logging.getLogger(__name__)

Predict = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
EvalFn = Callable[[Callable[..., object]], float]
BUILTIN_METRICS = {
    "accuracy": "higher",
    "top1_agreement": "higher",
    "cosine": "higher",
    "max_abs_error": "lower",
}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-sample cosine similarity (samples on axis 0, everything else flattened)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = den == 0
    return float(np.where(both_zero, 1.0, num / np.where(both_zero, 1.0, den)).mean())


def default_metric(has_labels: bool, classifier: bool) -> MetricSpec:
    """Labels: accuracy within 5 points of the reference; otherwise cosine >= 0.99."""
    if has_labels and classifier:
        return MetricSpec(name="accuracy", direction="higher", max_drop=0.05)
    return MetricSpec(name="cosine", direction="higher", floor=0.99)


def builtin_scores(out: np.ndarray, ref: np.ndarray, labels: np.ndarray | None,
                   classifier: bool) -> dict[str, float]:  # fmt: skip
    out, ref = np.asarray(out), np.asarray(ref)
    scores = {}
    if out.dtype.kind == "f" or ref.dtype.kind == "f":
        scores["cosine"] = cosine(out, ref)
    scores["max_abs_error"] = float(np.abs(out.astype(np.float64) - ref).max()) if out.size else 0.0
    if classifier:
        scores["top1_agreement"] = float((out.argmax(-1) == ref.argmax(-1)).mean())
        if labels is not None:
            scores["accuracy"] = float((out.argmax(-1) == labels).mean())
    return scores


@dataclass
class Evaluator:
    """Scores a predictor on held-out ``feeds`` with the gate's metric."""

    feeds: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]  # the fp32 torch reference model's outputs on feeds
    metric: MetricSpec
    primary: str
    labels: np.ndarray | None = None
    classifier: bool = False
    eval_fn: EvalFn | None = None

    def __post_init__(self) -> None:
        name = self.metric.name
        if name in BUILTIN_METRICS:
            if name == "accuracy" and self.labels is None and self.eval_fn is None:
                raise ConfigError("metric 'accuracy' needs labels (heldout=(x, y)) or an eval_fn")
            if name in ("accuracy", "top1_agreement") and not self.classifier and not self.eval_fn:
                raise ConfigError(f"metric {name!r} is for classifiers (output {self.primary!r} "
                                  "is not (N, classes)); use cosine or max_abs_error")  # fmt: skip
        elif self.eval_fn is None:
            raise ConfigError(f"metric {name!r} is not built in ({', '.join(BUILTIN_METRICS)}): "
                              "pass eval_fn(predict) -> float that computes it")  # fmt: skip

    def _user_predict(self, predict: Predict) -> Callable[..., object]:
        single = len(self.feeds) == 1 and len(self.reference) == 1
        in_name, out_name = next(iter(self.feeds)), next(iter(self.reference))

        def call(x):
            if isinstance(x, Mapping):
                return predict(x)
            if not single:
                raise ConfigError("this model has several inputs or outputs: predict takes "
                                  f"a dict {{{', '.join(self.feeds)}}}")  # fmt: skip
            return predict({in_name: np.asarray(x)})[out_name]

        return call

    def score(self, predict: Predict) -> tuple[float, dict[str, float], dict[str, np.ndarray]]:
        """(metric value, every figure by name, the predictor's outputs on ``feeds``)."""
        outs = predict(self.feeds)
        scores = builtin_scores(outs[self.primary], self.reference[self.primary], self.labels,
                                self.classifier)  # fmt: skip
        if self.eval_fn is not None and (
            self.metric.name not in scores or self.metric.name == "accuracy" and self.labels is None
        ):
            scores[self.metric.name] = float(self.eval_fn(self._user_predict(predict)))
        value = scores.get(self.metric.name)
        if value is None:
            raise ConfigError(f"metric {self.metric.name!r} could not be computed for output "
                              f"{self.primary!r}")  # fmt: skip
        return value, scores, outs
