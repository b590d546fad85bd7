"""The model package manifest (``manifest.json``) as pydantic models.

The JSON Schema of :class:`Manifest` is exported to ``sdk/schemas/manifest.schema.json``
(``python -m edgefleet.sdk.schemas``); a test fails when the checked-in file is stale.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
]

MANIFEST_SCHEMA_VERSION = 1

ArtifactFormat = Literal["onnx", "tflite", "pte", "pt2", "torchscript"]
Precision = Literal["fp32", "fp16", "int8"]
DType = Literal["float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class _Model(BaseModel):
    # defer_build: schemas are built on first use, not at import (agent cold start).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def _check_relpath(value: str) -> str:
    """Artifact paths are relative, forward-slash, and never escape the package."""
    parts = value.split("/")
    if (
        not value
        or value.startswith("/")
        or "\\" in value
        or any(p in ("", ".", "..") for p in parts)
        or re.match(r"^[A-Za-z]:", value)
    ):
        raise ValueError(f"expected a relative path inside the package, got {value!r}")
    return value


class TensorSpec(_Model):
    """One named input or output. ``shape`` entries are ints or symbolic names ("batch")."""

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
    """How raw data becomes the model input; the device app applies it (documented, typed)."""

    layout: Literal["NCHW", "NHWC", "NC", "other"] = "other"
    scale: float | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    notes: str = ""


class ArtifactMetrics(_Model):
    """What the trainer measured for an artifact against the torch fp32 reference."""

    samples: int = Field(ge=0)
    accuracy: float | None = None
    reference_accuracy: float | None = None
    top1_agreement: float | None = None
    max_abs_error: float | None = None
    latency_ms_p50: float | None = None
    host: str = ""


class Artifact(_Model):
    name: str
    path: str
    format: ArtifactFormat
    precision: Precision
    sha256: str
    size: int = Field(ge=0)
    targets: list[str] = Field(default_factory=list, description="profile names; [] = any")
    fixed_batch: int | None = Field(
        default=None, ge=1, description="set when the artifact only accepts this batch size"
    )
    metrics: ArtifactMetrics | None = None
    golden_outputs: str | None = Field(
        default=None, description="npz with this artifact's expected outputs on golden inputs"
    )
    golden_atol: float = 1e-4
    golden_rtol: float = 1e-3

    @field_validator("path", "golden_outputs")
    @classmethod
    def _paths(cls, v: str | None) -> str | None:
        return v if v is None else _check_relpath(v)

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str) -> str:
        if not SHA256_RE.match(v):
            raise ValueError(f"expected 64 lowercase hex characters, got {v!r}")
        return v


class ExportFailure(_Model):
    format: ArtifactFormat
    precision: Precision
    reason: str


class Signature(_Model):
    algorithm: Literal["ed25519"] = "ed25519"
    key_id: str
    value: str


class Manifest(_Model):
    schema_version: Literal[1] = MANIFEST_SCHEMA_VERSION
    name: str
    version: str
    task: Literal["classification", "regression", "detection", "segmentation", "other"] = (
        "classification"
    )
    description: str = ""
    labels: list[str] = Field(default_factory=list)
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    artifacts: list[Artifact] = Field(default_factory=list)
    failed_exports: list[ExportFailure] = Field(default_factory=list)
    golden_inputs: str | None = Field(default=None, description="npz of smoke-test inputs")
    recipe_digest: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    producer: str = "edgefleet"
    signature: Signature | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"expected a name matching {NAME_RE.pattern}, got {v!r}")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not _SEMVER_RE.match(v):
            raise ValueError(f"expected a semantic version like 1.2.3, got {v!r}")
        return v

    @field_validator("golden_inputs")
    @classmethod
    def _golden(cls, v: str | None) -> str | None:
        return v if v is None else _check_relpath(v)

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
        return self

    def signed_payload(self) -> dict:
        """The manifest content the signature covers: everything except the signature."""
        return self.model_dump(mode="json", exclude={"signature"})

    def artifact(self, name: str) -> Artifact:
        for a in self.artifacts:
            if a.name == name:
                return a
        raise KeyError(name)
