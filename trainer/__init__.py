"""edgefleet trainer: compress, export, verify and package PyTorch models.

>>> from edgefleet.trainer import compress, CompressOptions
>>> result = compress(model, calib_x, options=CompressOptions(name="mine"), out="out/")
>>> result.package  # signed .efpkg when a signing key is given
"""

from ._llm import build_llama, prepare_hf_folder
from ._llm_export import GenAIExportError, LLMExport, build_genai
from ._llm_package import GenerativePackageWriter
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
from ._pipeline import CompressOptions, CompressResult, EvalFn, ExportRecord, compress
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
    TrainSpec,
    VerifySpec,
    builtin_recipe,
    load_recipe,
    parse_recipe,
    recipe_digest,
)
from ._run import run_recipe, train_model

__all__ = [
    "GenAIExportError",
    "GenerativePackageWriter",
    "LLMExport",
    "LLMExportRecord",
    "LLMExportSpec",
    "LLMModelSpec",
    "LLMRecipe",
    "LLMResult",
    "LLMTrainSpec",
    "LLMVerifySpec",
    "build_genai",
    "build_llama",
    "is_llm_recipe",
    "llm_recipe_digest",
    "load_llm_recipe",
    "prepare_hf_folder",
    "run_llm_recipe",
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
    "MobileNetV2Like",
    "ModelSpec",
    "PruneChannels",
    "QuantizeSpec",
    "RankChoice",
    "Recipe",
    "RecipeError",
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
    "recipe_digest",
    "run_recipe",
    "sparsity",
    "train_model",
]
