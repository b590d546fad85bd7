"""Recipes for causal language models (``kind = "causal-lm"``): the model (a Llama-style
config trained on generated text, or a local Hugging Face folder), training, the GenAI and
ExecuTorch exports with their precisions, verification and the accuracy gate."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Literal

from edgefleet.sdk import canonical_json
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._recipe import RecipeError, _describe, builtin_recipe

__all__ = [
    "LLMRecipe",
    "LLMModelSpec",
    "LLMTrainSpec",
    "LLMExportSpec",
    "LLMVerifySpec",
    "is_llm_recipe",
    "load_llm_recipe",
    "llm_recipe_digest",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LLMModelSpec(_Strict):
    # A local Hugging Face causal-LM folder (config, weights, tokenizer.json); nothing
    # downloads. Without it a Llama-style model is built from the sizes below and trained.
    source: str | None = None
    hidden_size: int = Field(64, ge=8)
    intermediate_size: int = Field(192, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    kv_heads: int = Field(2, ge=1)
    context_length: int = Field(128, ge=16)


class LLMTrainSpec(_Strict):
    samples: int = Field(4000, ge=16)
    heldout: int = Field(64, ge=4)
    steps: int = Field(300, ge=0)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)
    threads: int | None = Field(None, ge=1)


class LLMExportSpec(_Strict):
    # "pte" is opt-in: its export and XNNPACK lowering take 40-80 s per precision even for
    # the tiny recipe's model (2 shared cores), against 7-10 s for a GenAI build.
    formats: list[Literal["ort-genai", "pte", "litertlm"]] = Field(
        default_factory=lambda: ["ort-genai"]
    )
    precisions: list[Literal["fp32", "int8", "int4"]] = Field(
        default_factory=lambda: ["fp32", "int8", "int4"]
    )
    block_size: Literal[16, 32, 64, 128, 256] = 32  # int4/int8 weight-only group size
    accuracy_level: Literal[1, 2, 3, 4] = 4  # MatMulNBits activation precision (4 = int8)
    quantize_embeddings: bool = True  # the embedding Gather too (most of a small LM)
    # .pte: the most tokens one forward call takes (longer prompts prefill in chunks); it
    # sizes the program's planned activation memory.
    pte_prefill_chunk: int = Field(128, ge=1)


class LLMVerifySpec(_Strict):
    prompts: int = Field(16, ge=1)  # held-out prompts for greedy continuation parity
    continuation_tokens: int = Field(16, ge=1)
    golden_prompts: int = Field(4, ge=1)
    metric: Literal["next_token_agreement", "greedy_match", "perplexity"] = "next_token_agreement"
    floor: float | None = 0.9
    max_drop: float | None = None


class LLMRecipe(_Strict):
    kind: Literal["causal-lm"]
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    version: str = "1.0.0"
    description: str = ""
    seed: int = 0
    targets: list[str] = Field(default_factory=list)
    model: LLMModelSpec = Field(default_factory=LLMModelSpec)
    train: LLMTrainSpec = Field(default_factory=LLMTrainSpec)
    export: LLMExportSpec = Field(default_factory=LLMExportSpec)
    verify: LLMVerifySpec = Field(default_factory=LLMVerifySpec)
    generation: dict[str, float | int] = Field(
        default_factory=lambda: {"max_new_tokens": 32, "temperature": 0.0}
    )


def _read(path: str | Path) -> tuple[dict, str]:
    p = Path(path)
    if not p.exists() and p.suffix == "" and "/" not in str(path):
        p = builtin_recipe(str(path))
    try:
        return tomllib.loads(p.read_text()), str(p)
    except OSError as e:
        raise RecipeError(f"cannot read recipe {p}: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{p} is not valid TOML: {e}") from e


def is_llm_recipe(path: str | Path) -> bool:
    try:
        return _read(path)[0].get("kind") == "causal-lm"
    except RecipeError:
        return False


def load_llm_recipe(path: str | Path) -> LLMRecipe:
    data, source = _read(path)
    try:
        return LLMRecipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_describe(e, source)) from None


def llm_recipe_digest(recipe: LLMRecipe) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(recipe.model_dump(mode="json"))).hexdigest()
