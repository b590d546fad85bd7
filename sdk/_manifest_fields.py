"""Manifest building blocks: the base model with the schema-growth signing rule, and the
parts added after schema 1 (package files, the accuracy gate, text and generation specs).

Signing rule (why ``signed_view`` exists): the signature covers canonical JSON of the
manifest. Fields that existed in schema 1 are always covered; a field added later is
covered only when it holds a non-default value. A package written before a field existed
therefore produces the same signed bytes after the model grows, and still verifies.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

__all__ = [
    "NAME_RE",
    "SEMVER_RE",
    "SHA256_RE",
    "Name",
    "RelPath",
    "SemVer",
    "Sha256",
    "FileEntry",
    "MetricSpec",
    "RejectedArtifact",
    "PerturbationScore",
    "TextPreprocessing",
    "GenerationSpec",
    "check_relpath",
    "signed_view",
]

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


class _Model(BaseModel):
    # defer_build: schemas are built on first use, not at import (agent cold start).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    # Field names of schema 1, always signed; every other field only when not at its default.
    signed_always: ClassVar[frozenset[str]] = frozenset()


def signed_view(model: BaseModel) -> dict[str, Any]:
    """The JSON object a signature covers (see the module docstring)."""
    cls = type(model)
    always = getattr(cls, "signed_always", frozenset())
    out: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        value = getattr(model, name)
        if name not in always and value == info.get_default(call_default_factory=True):
            continue
        out[name] = _signed_value(value)
    return out


def _signed_value(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return signed_view(value)
    if isinstance(value, list | tuple):
        return [_signed_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _signed_value(v) for k, v in value.items()}
    return to_jsonable_python(value)


def check_relpath(value: str) -> str:
    """Package paths are relative, forward-slash, and never escape the package."""
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


def _matching(regex: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not regex.match(value):
            raise ValueError(f"expected {what}, got {value!r}")
        return value

    return AfterValidator(check)


# Field types shared by the manifest and the protocol messages (one check each).
RelPath = Annotated[str, AfterValidator(check_relpath)]
Sha256 = Annotated[str, _matching(SHA256_RE, "64 lowercase hex characters")]
Name = Annotated[str, _matching(NAME_RE, f"a name matching {NAME_RE.pattern}")]
SemVer = Annotated[str, _matching(SEMVER_RE, "a semantic version like 1.2.3")]


class FileEntry(_Model):
    """A file in the package other than an artifact's main file (tokenizer, configs, the
    extra files of a multi-file artifact); hashed and signed like artifacts."""

    path: RelPath
    sha256: Sha256
    size: int = Field(ge=0)
    role: str = Field(default="", description="e.g. tokenizer, generation_config, weights")


class MetricSpec(_Model):
    """The user's quality metric and the gate every artifact must pass to ship.

    ``floor`` is absolute (a minimum when higher is better, a maximum when lower is better);
    ``max_drop`` is the largest allowed loss against the fp32 reference, in metric units.
    """

    name: str = Field(min_length=1, max_length=64)
    direction: Literal["higher", "lower"] = "higher"
    floor: float | None = None
    max_drop: float | None = Field(default=None, ge=0)

    def passes(self, value: float | None, reference: float | None) -> bool:
        if value is None or value != value:  # missing or NaN never passes
            return False
        sign = 1.0 if self.direction == "higher" else -1.0
        if self.floor is not None and sign * (value - self.floor) < 0:
            return False
        if self.max_drop is not None and reference is not None:
            return sign * (reference - value) <= self.max_drop + 1e-12
        return True

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "higher" else a < b


class RejectedArtifact(_Model):
    """An artifact the accuracy gate (or a failed step) kept out of the package."""

    name: str
    format: str
    precision: str
    metric: str | None = None
    value: float | None = None
    reference_value: float | None = None
    reason: str


class PerturbationScore(_Model):
    """An artifact's metric (its ``ArtifactMetrics.metric``) on held-out inputs under one
    input perturbation, scored against the reference model's outputs on the clean inputs;
    ``reference_value``: the reference model under the same perturbation."""

    name: str = Field(description="e.g. image_noise, brightness, snr_20db, token_substitution")
    kind: Literal["image", "snr", "tokens"]
    inputs: list[str] = Field(description="the inputs it perturbed (the others stay clean)")
    setting: str = Field(description="what was done, in words with its figures")
    value: float | None = None
    reference_value: float | None = None


class TextPreprocessing(_Model):
    """Raw text -> model inputs with the tokenizer carried in the package (``files``)."""

    tokenizer: RelPath = Field(description="package path of tokenizer.json")
    inputs: dict[str, str] = Field(
        default_factory=lambda: {"input_ids": "input_ids", "attention_mask": "attention_mask"},
        description="tokenizer field -> model input name",
    )
    max_length: int | None = Field(default=None, ge=1)
    pad_token_id: int = 0


class GenerationSpec(_Model):
    """What a generative (causal LM) package needs besides its artifacts."""

    tokenizer: RelPath = Field(description="package path of tokenizer.json")
    context_length: int = Field(ge=1)
    bos_token_id: int | None = None
    eos_token_ids: list[int] = Field(default_factory=list)
    pad_token_id: int | None = None
    chat_template: RelPath | None = Field(default=None, description="package path, Jinja template")
    defaults: dict[str, float | int] = Field(
        default_factory=dict, description="generation defaults: max_new_tokens, temperature..."
    )
