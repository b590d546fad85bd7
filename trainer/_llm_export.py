"""LLM exports with KV cache: ONNX Runtime GenAI through its own model builder (int4/int8
weight-only ``MatMulNBits``, fp32), and the reasons the formats not built are missing
(``.pte`` is built by ``_llm_pte``).

The builder runs in a child process: it is a CLI whose memory (a full fp32 copy of the
model, then the quantized one) should not stay in the trainer's process.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgefleet.sdk import EdgefleetError

from ._llm_recipe import LLMExportSpec

__all__ = ["GenAIExportError", "LLMExport", "build_genai", "unsupported_reason"]

log = logging.getLogger(__name__)

_BUILDER_TIMEOUT_S = 900
# Files the builder copies next to the model for its own tokenizer; the package carries
# the tokenizer once, at the package level.
_TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}


class GenAIExportError(EdgefleetError):
    """The GenAI model builder failed; the message carries its output."""


@dataclass(frozen=True)
class LLMExport:
    precision: str
    folder: Path
    quantization: str | None
    seconds: float

    @property
    def config(self) -> Path:
        return self.folder / "genai_config.json"

    def files(self) -> list[Path]:
        return sorted(
            p for p in self.folder.iterdir() if p.is_file() and p.name != "genai_config.json"
        )


def build_genai(hf_folder: Path, out: Path, precision: str, spec: LLMExportSpec) -> LLMExport:
    """``python -m onnxruntime_genai.models.builder`` on a local HF folder (CPU target)."""
    extra = []
    quant = None
    if precision in ("int4", "int8"):
        extra = [f"block_size={spec.block_size}", f"accuracy_level={spec.accuracy_level}"]
        if spec.quantize_embeddings:
            extra.append("op_types_to_quantize=MatMul/Gather")
        quant = f"weight-only-{precision}-g{spec.block_size}" + (
            "-emb" if spec.quantize_embeddings else ""
        )
    cmd = [
        sys.executable, "-m", "onnxruntime_genai.models.builder",
        "-i", str(hf_folder), "-o", str(out), "-p", precision, "-e", "cpu",
        "-c", str(out.parent / f".cache-{precision}"),
    ]  # fmt: skip
    if extra:
        cmd += ["--extra_options", *extra]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_BUILDER_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise GenAIExportError(f"GenAI builder ({precision}) timed out after {e.timeout} s") from e
    if done.returncode != 0 or not (out / "genai_config.json").is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
        raise GenAIExportError(f"GenAI builder ({precision}) failed: " + " | ".join(tail))
    for name in _TOKENIZER_FILES:
        (out / name).unlink(missing_ok=True)
    secs = time.perf_counter() - t0
    log.info("GenAI %s built in %.1f s -> %s", precision, secs, out)
    return LLMExport(precision, out, quant, secs)


def unsupported_reason(fmt: str) -> str:
    """Why the trainer does not build ``fmt`` (recorded in ``failed_exports``)."""
    if fmt == "litertlm":
        return (
            "LiteRT-LM bundles come from litert-torch's generative export, which needs "
            "TensorFlow's schema module; not built here"
        )
    return f"format {fmt} has no LLM exporter"
