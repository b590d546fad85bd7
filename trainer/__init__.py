"""edgefleet trainer: compress, export, verify, gate and package any model.

>>> from edgefleet.trainer import compress, CompressOptions
>>> result = compress(model, {"input_ids": ids, "attention_mask": mask}, out="out/")
>>> result.package  # signed .efpkg when a signing key is given

Attributes load lazily (PEP 562): ``edgefleet.trainer._onnx_quant`` (ONNX quantization)
is importable without torch, which the rest of the trainer needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgefleet.sdk._lazy import lazy_exports

if TYPE_CHECKING:
    from edgefleet.sdk import MetricSpec

    from ._evaluation import BUILTIN_METRICS
    from ._import import ImportGateError, ImportOptions, ImportResult, import_model
    from ._llm import build_llama, prepare_hf_folder
    from ._llm_export import GenAIExportError, LLMExport, build_genai
    from ._llm_package import GenerativePackageWriter
    from ._llm_pte import PteExport, PteExportError, build_pte
    from ._llm_recipe import (
        LLMExportSpec,
        LLMModelSpec,
        LLMRecipe,
        LLMTrainSpec,
        LLMVerifySpec,
        is_llm_recipe,
        llm_recipe_digest,
        load_llm_recipe,
    )
    from ._llm_run import LLMExportRecord, LLMResult, run_llm_recipe
    from ._lowrank import RankChoice, choose_rank, factorize_linears
    from ._models import DigitsCNN, MobileNetV2Like, build_model
    from ._onnx_quant import OnnxQuantOptions, QuantCandidate, quantize_onnx
    from ._pipeline import (
        AccuracyGateError,
        CompressOptions,
        CompressResult,
        EvalFn,
        ExportRecord,
        compress,
    )
    from ._prune import ChannelPlan, count_params, magnitude_prune, prune_channels, sparsity
    from ._recipe import (
        CompressStep,
        DataSpec,
        Distill,
        ExportSpec,
        LowRank,
        MagnitudePrune,
        ModelSpec,
        PruneChannels,
        QuantizeSpec,
        Recipe,
        RecipeError,
        RobustnessSpec,
        TrainSpec,
        VerifySpec,
        builtin_recipe,
        load_recipe,
        parse_recipe,
        recipe_digest,
    )
    from ._run import run_recipe, train_model

_LAZY = {
    "build_llama": "._llm",
    "prepare_hf_folder": "._llm",
    "GenAIExportError": "._llm_export",
    "LLMExport": "._llm_export",
    "build_genai": "._llm_export",
    "GenerativePackageWriter": "._llm_package",
    "PteExport": "._llm_pte",
    "PteExportError": "._llm_pte",
    "build_pte": "._llm_pte",
    "LLMExportSpec": "._llm_recipe",
    "LLMModelSpec": "._llm_recipe",
    "LLMRecipe": "._llm_recipe",
    "LLMTrainSpec": "._llm_recipe",
    "LLMVerifySpec": "._llm_recipe",
    "is_llm_recipe": "._llm_recipe",
    "llm_recipe_digest": "._llm_recipe",
    "load_llm_recipe": "._llm_recipe",
    "LLMExportRecord": "._llm_run",
    "LLMResult": "._llm_run",
    "run_llm_recipe": "._llm_run",
    "ImportGateError": "._import",
    "ImportOptions": "._import",
    "ImportResult": "._import",
    "import_model": "._import",
    "RankChoice": "._lowrank",
    "choose_rank": "._lowrank",
    "factorize_linears": "._lowrank",
    "BUILTIN_METRICS": "._evaluation",
    "DigitsCNN": "._models",
    "MobileNetV2Like": "._models",
    "build_model": "._models",
    "OnnxQuantOptions": "._onnx_quant",
    "QuantCandidate": "._onnx_quant",
    "quantize_onnx": "._onnx_quant",
    "AccuracyGateError": "._pipeline",
    "CompressOptions": "._pipeline",
    "CompressResult": "._pipeline",
    "EvalFn": "._pipeline",
    "ExportRecord": "._pipeline",
    "compress": "._pipeline",
    "ChannelPlan": "._prune",
    "count_params": "._prune",
    "magnitude_prune": "._prune",
    "prune_channels": "._prune",
    "sparsity": "._prune",
    **{
        n: "._recipe"
        for n in (
            "CompressStep DataSpec Distill ExportSpec LowRank MagnitudePrune ModelSpec "
            "PruneChannels QuantizeSpec Recipe RecipeError RobustnessSpec TrainSpec VerifySpec "
            "builtin_recipe "
            "load_recipe parse_recipe recipe_digest"
        ).split()
    },
    "MetricSpec": "edgefleet.sdk",  # the gate's metric, re-exported for convenience
    "run_recipe": "._run",
    "train_model": "._run",
}

__all__ = [
    "build_llama",
    "prepare_hf_folder",
    "GenAIExportError",
    "LLMExport",
    "build_genai",
    "GenerativePackageWriter",
    "PteExport",
    "PteExportError",
    "build_pte",
    "LLMExportSpec",
    "LLMModelSpec",
    "LLMRecipe",
    "LLMTrainSpec",
    "LLMVerifySpec",
    "is_llm_recipe",
    "llm_recipe_digest",
    "load_llm_recipe",
    "LLMExportRecord",
    "LLMResult",
    "run_llm_recipe",
    "ImportGateError",
    "ImportOptions",
    "ImportResult",
    "import_model",
    "AccuracyGateError",
    "BUILTIN_METRICS",
    "ChannelPlan",
    "CompressOptions",
    "CompressResult",
    "CompressStep",
    "DataSpec",
    "DigitsCNN",
    "Distill",
    "EvalFn",
    "ExportRecord",
    "ExportSpec",
    "LowRank",
    "MagnitudePrune",
    "MetricSpec",
    "MobileNetV2Like",
    "ModelSpec",
    "OnnxQuantOptions",
    "PruneChannels",
    "QuantCandidate",
    "QuantizeSpec",
    "RankChoice",
    "Recipe",
    "RecipeError",
    "RobustnessSpec",
    "TrainSpec",
    "VerifySpec",
    "build_model",
    "builtin_recipe",
    "choose_rank",
    "compress",
    "count_params",
    "factorize_linears",
    "load_recipe",
    "magnitude_prune",
    "parse_recipe",
    "prune_channels",
    "quantize_onnx",
    "recipe_digest",
    "run_recipe",
    "sparsity",
    "train_model",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
