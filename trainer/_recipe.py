"""Recipes: a TOML file naming model, data, training, compression steps, exports, targets.

Validated with pydantic; every error names the offending field (``compress.1.amount``).
"""

from __future__ import annotations

import hashlib
import logging
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from edgefleet.sdk import ConfigError, canonical_json
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "RecipeError",
    "Recipe",
    "RecipeHeader",
    "ModelSpec",
    "DataSpec",
    "TrainSpec",
    "PruneChannels",
    "MagnitudePrune",
    "Distill",
    "LowRank",
    "CompressStep",
    "QuantizeSpec",
    "ExportSpec",
    "VerifySpec",
    "RobustnessSpec",
    "load_recipe",
    "parse_recipe",
    "builtin_recipe",
    "recipe_digest",
]

log = logging.getLogger(__name__)


class RecipeError(ConfigError):
    """A recipe file that cannot be read or does not validate."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    name: Literal["digits_cnn", "mobilenet_v2"] = "digits_cnn"
    args: dict[str, int | float] = Field(default_factory=dict)
    # Weights trained elsewhere (e.g. by the torchrun DDP entry point); skips training.
    checkpoint: str | None = None


class DataSpec(_Strict):
    dataset: Literal["digits", "synthetic_images"] = "digits"
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    image_size: int = Field(32, ge=8, le=512, description="synthetic_images only")
    samples: int = Field(512, ge=16, description="synthetic_images only")


class TrainSpec(_Strict):
    epochs: int = Field(8, ge=0, le=1000)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    # torch intra-op threads; 1 is fastest for small models on a shared 2-core box.
    threads: int | None = Field(None, ge=1)


class PruneChannels(_Strict):
    """Structured pruning: drop the lowest-norm output channels; tensors really shrink.

    ``amount`` applies to channel groups inside blocks, ``residual_amount`` to groups
    joined by skip connections (0 keeps them), ``head`` also prunes the channels the
    classifier reads. ``distill`` fine-tunes against the unpruned model's softened logits
    (knowledge distillation, ``temperature`` / ``alpha``) instead of the labels alone."""

    step: Literal["prune_channels"]
    amount: float = Field(gt=0.0, lt=1.0)
    residual_amount: float = Field(0.0, ge=0.0, lt=1.0)
    head: bool = False
    min_channels: int = Field(1, ge=1)
    finetune_epochs: int = Field(2, ge=0)
    distill: bool = False
    temperature: float = Field(4.0, gt=0.0)
    alpha: float = Field(0.7, ge=0.0, le=1.0)


class MagnitudePrune(_Strict):
    """Unstructured: zero the smallest weights (smaller compressed size, no speed-up)."""

    step: Literal["magnitude_prune"]
    amount: float = Field(gt=0.0, lt=1.0)
    finetune_epochs: int = Field(0, ge=0)


class Distill(_Strict):
    """Train a smaller student on the teacher's outputs: KL on softened logits for a
    classifier, normalised MSE on other float outputs, plus cross-entropy on labels (or the
    user's loss) weighted 1 - ``alpha``; without labels, the teacher's outputs alone.
    ``student``: a built-in model; ``compress`` may pass any module instead
    (``CompressOptions.student``)."""

    step: Literal["distill"]
    student: ModelSpec | None = None
    epochs: int = Field(6, ge=1)
    temperature: float = Field(4.0, gt=0.0)
    alpha: float = Field(0.7, ge=0.0, le=1.0)


class LowRank(_Strict):
    """Factor Linear layers W ~ U V. The rank is searched: starting from the smallest rank
    keeping ``energy`` of S^2, ranks grow (energies ``ENERGY_LADDER``) until the model
    passes the accuracy gate; when none does, the step is skipped and reported."""

    step: Literal["lowrank"]
    energy: float = Field(0.9, gt=0.0, le=1.0)
    min_features: int = Field(32, ge=2)
    finetune_epochs: int = Field(1, ge=0)


CompressStep = Annotated[
    PruneChannels | MagnitudePrune | Distill | LowRank, Field(discriminator="step")
]


class QuantizeSpec(_Strict):
    calibration_samples: int = Field(128, ge=1)
    per_channel: bool = True
    # 7-bit weights: x86 AVX2/AVX-512 (non-VNNI) u8s8 kernels saturate with full 8-bit
    # weights (measured on the mobilenet_v2 recipe: ORT int8 accuracy 0.71 -> 0.80 = fp32).
    # None: decided from the CPU (full range where it has VNNI / ARM dot-product).
    reduce_range: bool | None = None
    # ONNX int8 flavours: static QDQ (calibrated) and/or dynamic; None picks by model family
    # (static for CNNs, dynamic on MatMul/Gemm for transformers and MLPs).
    onnx: list[Literal["static", "dynamic"]] | None = None


class ExportSpec(_Strict):
    formats: list[Literal["onnx", "tflite", "pte"]] = Field(
        default_factory=lambda: ["onnx", "tflite", "pte"], min_length=1
    )
    # fp16: ONNX only, fp32 inputs/outputs kept, for GPU boards (the SDK picks it only
    # where a TensorRT/CUDA provider is present).
    precisions: list[Literal["fp32", "fp16", "int8", "int4"]] = Field(
        default_factory=lambda: ["fp32", "int8"], min_length=1
    )
    opset: int = Field(17, ge=13, le=21)


class RobustnessSpec(_Strict):
    """The gate's metric under input perturbations, per input kind (``_robustness``):
    images (float, rank 4): Gaussian noise, brightness, contrast, translation; other float
    tensors: noise at each SNR; integer ids: token substitution (0/1 masks and bool inputs
    stay clean). ``perturbations=[]`` turns it off; a ``floor`` / ``max_drop`` (against the
    reference model under the same perturbation) rejects an artifact whose worst figure
    misses it."""

    perturbations: list[Literal["image_noise", "brightness", "contrast", "translate", "snr",
                                "token_substitution"]] | None = None  # fmt: skip
    samples: int = Field(32, ge=1, description="held-out samples per perturbation")
    image_noise: float = Field(0.05, gt=0.0, description="sigma, fraction of the value range")
    brightness: float = Field(0.1, description="shift, fraction of the value range")
    contrast: float = Field(0.7, gt=0.0, description="factor about each image's mean")
    translate: int = Field(1, ge=1, description="pixels, right and down")
    snr_db: list[float] = Field(default_factory=lambda: [30.0, 20.0, 10.0], min_length=1)
    token_rate: float = Field(0.05, ge=0.0, le=1.0, description="0: ids stay clean")
    floor: float | None = None
    max_drop: float | None = Field(None, ge=0.0)
    seed: int = 0


class VerifySpec(_Strict):
    samples: int = Field(0, ge=0, description="held-out samples to verify on; 0 = all")
    latency_runs: int = Field(30, ge=1)
    golden_samples: int = Field(4, ge=1, le=64)
    # The accuracy gate (edgefleet.sdk.MetricSpec); None: accuracy within 5 points of the
    # reference when there are labels, else cosine to the reference >= 0.99.
    metric: str | None = None
    direction: Literal["higher", "lower"] = "higher"
    floor: float | None = None
    max_drop: float | None = Field(None, ge=0.0)
    robustness: RobustnessSpec = Field(default_factory=RobustnessSpec)


class RecipeHeader(_Strict):
    """What every recipe starts with: its package name and version, seed and targets."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    version: str = "1.0.0"
    description: str = ""
    seed: int = 0
    targets: list[str] = Field(default_factory=list)

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        for t in v:
            if not t or not t.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"expected profile names like 'raspberry-pi-4', got {t!r}")
        return v


class Recipe(RecipeHeader):
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    compress: list[CompressStep] = Field(default_factory=list)
    quantize: QuantizeSpec = Field(default_factory=QuantizeSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    verify: VerifySpec = Field(default_factory=VerifySpec)


def _describe(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {loc}: {e['msg']}{got_s}")
    return f"invalid recipe {source}:\n" + "\n".join(lines)


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{source} is not valid TOML: {e}") from e
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_describe(e, source)) from None


def builtin_recipe(name: str) -> Path:
    """Path of a recipe shipped with the trainer (``digits``, ``mobilenet_v2``)."""
    path = Path(str(resources.files("edgefleet.trainer.recipes") / f"{name}.toml"))
    if not path.is_file():
        raise RecipeError(f"no built-in recipe {name!r}")
    return path


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe file; a bare name such as ``digits`` means a built-in recipe."""
    p = Path(path)
    if not p.exists() and p.suffix == "" and "/" not in str(path):
        p = builtin_recipe(str(path))
    try:
        text = p.read_text()
    except OSError as e:
        raise RecipeError(f"cannot read recipe {p}: {e}") from e
    return parse_recipe(text, str(p))


def recipe_digest(recipe: Recipe) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(recipe.model_dump(mode="json"))).hexdigest()
