"""The model package manifest (``manifest.json``) as pydantic models.

The JSON Schema of :class:`Manifest` is exported to ``sdk/manifest.schema.json``
(``python -m edgefleet.sdk._manifest_schema``); a test fails when the checked-in file is stale.
Fields added after schema 1 are signed only when set (see ``_manifest_fields``), so
packages written by an older version keep verifying as the schema grows.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ._manifest_fields import (
    NAME_RE,
    SHA256_RE,
    FileEntry,
    GenerationSpec,
    MetricSpec,
    Name,
    RejectedArtifact,
    RelPath,
    SemVer,
    Sha256,
    TextPreprocessing,
    _Model,
    signed_view,
)
from ._manifest_fields import PerturbationScore as PerturbationScore  # robustness figures

__all__ = [
    "MANIFEST_SCHEMA_VERSION",
    "NAME_RE",
    "SHA256_RE",
    "ArtifactFormat",
    "Precision",
    "DType",
    "TensorSpec",
    "Preprocessing",
    "ArtifactMetrics",
    "Artifact",
    "ExportFailure",
    "Signature",
    "Manifest",
    "FileEntry",
    "MetricSpec",
    "RejectedArtifact",
    "TextPreprocessing",
    "GenerationSpec",
]

MANIFEST_SCHEMA_VERSION = 1

# ort-genai: an ONNX Runtime GenAI model folder (genai_config.json is the artifact's path,
# the rest in its ``files``); litertlm: a LiteRT-LM bundle.
ArtifactFormat = Literal["onnx", "tflite", "pte", "pt2", "torchscript", "ort-genai", "litertlm"]
Precision = Literal["fp32", "fp16", "int8", "int4"]
DType = Literal["float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool"]


class TensorSpec(_Model):
    """One named input or output. ``shape`` entries are ints or symbolic names ("batch",
    "sequence"); the SDK checks every dim and never casts dtypes silently."""

    signed_always = frozenset({"name", "dtype", "shape", "allow_nan", "description"})

    name: str = Field(min_length=1, max_length=128)
    dtype: DType
    shape: list[int | str]
    allow_nan: bool = False
    description: str = ""

    @field_validator("shape")
    @classmethod
    def _dims(cls, v: list[int | str]) -> list[int | str]:
        for d in v:
            if isinstance(d, int) and d < 1:
                raise ValueError(f"dimension sizes must be >= 1 or a symbolic name, got {d}")
            if isinstance(d, str) and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", d):
                raise ValueError(f"symbolic dimension must be an identifier, got {d!r}")
        return v

    def describe(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


class Preprocessing(_Model):
    """How raw data becomes the model input. Numeric preprocessing is applied by the device
    app (documented, typed); ``text`` lets the SDK tokenize raw text itself."""

    signed_always = frozenset({"layout", "scale", "mean", "std", "notes"})

    layout: Literal["NCHW", "NHWC", "NC", "other"] = "other"
    scale: float | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    notes: str = ""
    text: TextPreprocessing | None = None


class ArtifactMetrics(_Model):
    """What the trainer measured for an artifact against the torch fp32 reference.

    ``metric``/``value``/``reference_value`` are the user's named metric (the gate's);
    ``scores`` holds every other figure by name (cosine, top1_agreement, perplexity...).
    ``accuracy``/``top1_agreement`` are kept for classifiers and schema-1 packages.
    """

    signed_always = frozenset(
        {
            "samples",
            "accuracy",
            "reference_accuracy",
            "top1_agreement",
            "max_abs_error",
            "latency_ms_p50",
            "host",
        }
    )

    samples: int = Field(ge=0)
    accuracy: float | None = None
    reference_accuracy: float | None = None
    top1_agreement: float | None = None
    max_abs_error: float | None = None
    latency_ms_p50: float | None = None
    host: str = ""
    metric: str | None = None
    value: float | None = None
    reference_value: float | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    # the metric under input perturbations (robustness), one entry per perturbation
    robustness: list[PerturbationScore] = Field(default_factory=list)


class Artifact(_Model):
    """One runnable file of the package. ``input_shapes`` makes it a fixed-shape bucket
    (artifacts sharing a ``bucket_group`` are buckets of one logical artifact: the SDK runs
    the smallest that fits and pads with ``Manifest.pad_values``). ``files`` lists the other
    files of a multi-file artifact; a device downloads ``path`` + ``files`` + golden data."""

    signed_always = frozenset(
        {
            "name",
            "path",
            "format",
            "precision",
            "sha256",
            "size",
            "targets",
            "fixed_batch",
            "metrics",
            "golden_outputs",
            "golden_atol",
            "golden_rtol",
        }
    )

    name: str
    path: RelPath
    format: ArtifactFormat
    precision: Precision
    sha256: Sha256
    size: int = Field(ge=0)
    targets: list[str] = Field(default_factory=list, description="profile names; [] = any")
    fixed_batch: int | None = Field(
        default=None, ge=1, description="set when the artifact only accepts this batch size"
    )
    metrics: ArtifactMetrics | None = None
    golden_outputs: RelPath | None = Field(
        default=None, description="npz with this artifact's expected outputs on golden inputs"
    )
    golden_atol: float = 1e-4
    golden_rtol: float = 1e-3
    quantization: str | None = Field(
        default=None, description="method, e.g. static-qdq, dynamic, weight-only-g32, 8da4w"
    )
    input_shapes: dict[str, list[int | str]] | None = None
    bucket_group: str | None = None
    files: list[FileEntry] = Field(default_factory=list)


class ExportFailure(_Model):
    signed_always = frozenset({"format", "precision", "reason"})

    format: ArtifactFormat
    precision: Precision
    reason: str


class Signature(_Model):
    algorithm: Literal["ed25519"] = "ed25519"
    key_id: str
    value: str


class Manifest(_Model):
    signed_always = frozenset(
        {
            "schema_version",
            "name",
            "version",
            "task",
            "description",
            "labels",
            "inputs",
            "outputs",
            "preprocessing",
            "artifacts",
            "failed_exports",
            "golden_inputs",
            "recipe_digest",
            "created_at",
            "producer",
        }
    )

    schema_version: Literal[1] = MANIFEST_SCHEMA_VERSION
    name: Name
    version: SemVer
    task: Literal[
        "classification",
        "regression",
        "detection",
        "segmentation",
        "embedding",
        "text-generation",
        "other",
    ] = "classification"
    description: str = ""
    labels: list[str] = Field(default_factory=list)
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    artifacts: list[Artifact] = Field(default_factory=list)
    failed_exports: list[ExportFailure] = Field(default_factory=list)
    golden_inputs: RelPath | None = Field(default=None, description="npz of smoke-test inputs")
    recipe_digest: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    producer: str = "edgefleet"
    signature: Signature | None = None
    metric: MetricSpec | None = Field(default=None, description="the accuracy gate")
    rejected: list[RejectedArtifact] = Field(default_factory=list)
    files: list[FileEntry] = Field(default_factory=list, description="tokenizer, configs...")
    pad_values: dict[str, float] = Field(
        default_factory=dict, description="input name -> value used to pad up to a shape bucket"
    )
    generation: GenerationSpec | None = None

    @model_validator(mode="after")
    def _unique(self) -> Manifest:
        for what, names in (
            ("input", [s.name for s in self.inputs]),
            ("output", [s.name for s in self.outputs]),
            ("artifact", [a.name for a in self.artifacts]),
        ):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"duplicate {what} names: {sorted(dup)}")
        inputs = {s.name for s in self.inputs}
        unknown = sorted(set(self.pad_values) - inputs)
        if unknown:
            raise ValueError(f"pad_values name unknown inputs {unknown}; inputs: {sorted(inputs)}")
        for a in self.artifacts:
            bad = sorted(set(a.input_shapes or {}) - inputs)
            if bad:
                raise ValueError(f"artifact {a.name}: input_shapes name unknown inputs {bad}")
        return self

    def signed_payload(self) -> dict:
        """The manifest content the signature covers: everything except the signature,
        with post-schema-1 fields only when set (old packages keep verifying)."""
        payload = signed_view(self)
        payload.pop("signature", None)
        return payload

    def artifact(self, name: str) -> Artifact:
        for a in self.artifacts:
            if a.name == name:
                return a
        raise KeyError(name)
