"""Robustness in verification: each artifact's metric under input perturbations chosen per
input kind, next to the reference model's figure under the same perturbation, and an
optional gate on the worst of them (``RobustnessSpec``).

Kinds, from the model's input specs and the held-out data:
- image-like: float inputs of rank 4 (NCHW; NHWC when only the last axis holds 1-4
  channels). ``image_noise``: Gaussian noise, sigma = a fraction of the input's value range
  on held-out data; ``brightness``: + a fraction of that range; ``contrast``: scaled about
  each image's mean; ``translate``: shifted right and down by whole pixels, the uncovered
  border taking each image's minimum.
- other float tensors: ``snr``: additive Gaussian noise at each stated SNR (per sample,
  noise power = signal power / 10^(SNR/10)).
- integer ids: ``token_substitution``: each position not holding the pad value is replaced,
  at the stated rate, by an id seen in the held-out data. Integer inputs holding only 0/1
  (attention masks) and bool inputs are never perturbed.

The figure is the gate's metric on perturbed inputs scored against the reference model's
outputs on the *clean* inputs (and the clean labels): how far a perturbation moves the
artifact from what the model answers on clean data. An ``eval_fn`` gets a ``predict`` that
perturbs what it is given. Perturbations are seeded, so an artifact and the reference see
the same noise.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from edgefleet.sdk import MetricSpec, TensorSpec
from edgefleet.sdk._manifest_fields import PerturbationScore

from ._evaluation import Evaluator, Predict
from ._recipe import RobustnessSpec
from ._signature import take_rows

__all__ = ["Perturbation", "RobustnessProbe", "plan_perturbations"]

log = logging.getLogger(__name__)

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Perturbation:
    name: str
    kind: str  # image | snr | tokens
    setting: str
    transforms: Mapping[str, Transform]  # input name -> transform
    seed: int = 0

    @property
    def inputs(self) -> list[str]:
        return list(self.transforms)

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        out = dict(feeds)
        for k, fn in self.transforms.items():
            if k in out:
                a = np.asarray(out[k])
                out[k] = fn(a, rng).astype(a.dtype, copy=False)
        return out


def _image_axes(shape: list[int | str]) -> tuple[int, int]:
    """(H, W) axes of a rank-4 input: NHWC when only the last axis looks like channels."""
    c1, c3 = shape[1], shape[3]
    nhwc = isinstance(c3, int) and c3 <= 4 and not (isinstance(c1, int) and c1 <= 4)
    return (1, 2) if nhwc else (2, 3)


def _translate(a: np.ndarray, axes: tuple[int, int], t: int) -> np.ndarray:
    rest = tuple(range(1, a.ndim))
    out = np.broadcast_to(a.min(axis=rest, keepdims=True), a.shape).copy()
    dst, src = [slice(None)] * a.ndim, [slice(None)] * a.ndim
    for ax in axes:
        dst[ax], src[ax] = slice(t, None), slice(None, -t)
    out[tuple(dst)] = a[tuple(src)]
    return out


def _image(name: str, spec: RobustnessSpec, value_range: float, axes: tuple[int, int]
           ) -> tuple[str, Transform]:  # fmt: skip
    """(setting, transform) of one image perturbation for an input of this value range."""

    def mean(a: np.ndarray) -> np.ndarray:  # per image
        return a.mean(tuple(range(1, a.ndim)), keepdims=True)

    if name == "image_noise":
        sigma = spec.image_noise * value_range
        return (f"Gaussian noise, sigma {spec.image_noise:g} x the input's value range",
                lambda a, g: a + g.normal(0.0, sigma, a.shape))  # fmt: skip
    if name == "brightness":
        return (f"brightness shift {spec.brightness:+g} x the input's value range",
                lambda a, g: a + spec.brightness * value_range)  # fmt: skip
    if name == "contrast":
        return (f"contrast x{spec.contrast:g} about each image's mean",
                lambda a, g: (a - mean(a)) * spec.contrast + mean(a))  # fmt: skip
    t = spec.translate
    return (f"translated {t} px right and down, border filled with the image's minimum",
            lambda a, g: _translate(a, axes, t))  # fmt: skip


def _snr(db: float) -> Transform:
    def fn(a: np.ndarray, g: np.random.Generator) -> np.ndarray:
        power = (a.astype(np.float64) ** 2).mean(tuple(range(1, a.ndim)), keepdims=True)
        return a + g.standard_normal(a.shape) * np.sqrt(power / 10 ** (db / 10))

    return fn


def _tokens(rate: float, pad: float, vocab: np.ndarray) -> Transform:
    def fn(a: np.ndarray, g: np.random.Generator) -> np.ndarray:
        hit = (a != pad) & (g.random(a.shape) < rate)
        out = a.copy()
        out[hit] = g.choice(vocab, int(hit.sum()))
        return out

    return fn


def plan_perturbations(inputs: list[TensorSpec], feeds: Mapping[str, np.ndarray],
                       spec: RobustnessSpec, pad_values: Mapping[str, float]
                       ) -> list[Perturbation]:  # fmt: skip
    """The perturbations that suit these inputs (``spec.perturbations`` None: all)."""
    wanted = spec.perturbations
    images: dict[str, tuple[float, tuple[int, int]]] = {}
    floats, ids = [], {}
    for s in inputs:
        a = np.asarray(feeds[s.name])
        if s.dtype.startswith("float") and len(s.shape) == 4:
            images[s.name] = (max(float(a.max() - a.min()), 1e-12), _image_axes(s.shape))
        elif s.dtype.startswith("float"):
            floats.append(s.name)
        elif s.dtype.startswith(("int", "uint")) and not set(np.unique(a).tolist()) <= {0, 1}:
            pad = pad_values.get(s.name, 0)
            vocab = np.unique(a[a != pad])
            if vocab.size:
                ids[s.name] = (pad, vocab)
    plan = []
    for name in ("image_noise", "brightness", "contrast", "translate"):
        if images and (wanted is None or name in wanted):
            made = {k: _image(name, spec, r, ax) for k, (r, ax) in images.items()}
            setting = next(iter(made.values()))[0]
            fns = {k: fn for k, (_, fn) in made.items()}
            plan.append(Perturbation(name, "image", setting, fns, spec.seed))
    if floats and (wanted is None or "snr" in wanted):
        for db in spec.snr_db:
            plan.append(Perturbation(f"snr_{db:g}db", "snr", f"Gaussian noise at {db:g} dB SNR",
                                     {k: _snr(db) for k in floats}, spec.seed))  # fmt: skip
    if ids and spec.token_rate > 0 and (wanted is None or "token_substitution" in wanted):
        setting = (f"{spec.token_rate:.0%} of non-pad ids replaced by ids seen in held-out "
                   "data; 0/1 masks unperturbed")  # fmt: skip
        fns = {k: _tokens(spec.token_rate, p, v) for k, (p, v) in ids.items()}
        plan.append(Perturbation("token_substitution", "tokens", setting, fns, spec.seed))
    return plan


@dataclass
class RobustnessProbe:
    """Measures a predictor under every planned perturbation on the first ``samples``
    held-out rows, and judges the figures against the optional robustness gate."""

    plan: list[Perturbation]
    spec: RobustnessSpec
    metric: MetricSpec

    @property
    def gate(self) -> MetricSpec | None:
        if self.spec.floor is None and self.spec.max_drop is None:
            return None
        return MetricSpec(name=self.metric.name, direction=self.metric.direction,
                          floor=self.spec.floor, max_drop=self.spec.max_drop)  # fmt: skip

    def _subset(self, ev: Evaluator) -> Evaluator:
        n = slice(0, self.spec.samples)
        labels = None if ev.labels is None else ev.labels[n]
        return dataclasses.replace(ev, feeds=take_rows(ev.feeds, n),
                                   reference=take_rows(ev.reference, n), labels=labels)  # fmt: skip

    def measure(self, predict: Predict, ev: Evaluator) -> list[float]:
        """The metric under each perturbation, in plan order."""
        sub = self._subset(ev)
        return [sub.score(lambda f, p=p: predict(p(f)))[0] for p in self.plan]

    def scores(self, values: list[float], reference: list[float]) -> list[PerturbationScore]:
        return [PerturbationScore(name=p.name, kind=p.kind, inputs=p.inputs, setting=p.setting,
                                  value=v, reference_value=r)
                for p, v, r in zip(self.plan, values, reference, strict=True)]  # fmt: skip

    def failure(self, scores: list[PerturbationScore]) -> PerturbationScore | None:
        """The worst figure that misses the robustness gate, or None."""
        gate = self.gate
        if gate is None:
            return None
        misses = [s for s in scores if not gate.passes(s.value, s.reference_value)]
        if not misses:
            return None
        sign = 1.0 if gate.direction == "higher" else -1.0
        return min(misses, key=lambda s: sign * (s.value if s.value == s.value else -np.inf))

    def reason(self, s: PerturbationScore) -> str:
        gate = self.gate
        parts = [f"floor {gate.floor:g}"] if gate.floor is not None else []
        if gate.max_drop is not None:
            parts.append(f"max drop {gate.max_drop:g} from the reference's "
                         f"{s.reference_value:.4g} under it")  # fmt: skip
        return (
            f"robustness: {self.metric.name} {s.value:.4g} under {s.name} ({s.setting}) "
            f"misses the robustness gate ({', '.join(parts)})"
        )
