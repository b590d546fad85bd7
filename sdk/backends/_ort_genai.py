"""ONNX Runtime GenAI: causal LMs with a KV cache, no torch (``edgefleet[genai]``).

A :class:`GenAISession` is one loaded model folder (``genai_config.json`` + ONNX files, as
the GenAI model builder writes it); a :class:`GenAIState` is one sequence with its KV cache
(an ``og.Generator``). Tokenization stays in the SDK (``tokenizers``): GenAI's own tokenizer
does not add BOS and is not needed to run token ids.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import BackendError
from ._base import module_available

__all__ = ["OrtGenAIOptions", "OrtGenAIBackend", "GenAISession", "GenAIState"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrtGenAIOptions:
    # None = the runtime's default (all cores); benchmarks pin it for fair comparisons.
    intra_op_threads: int | None = None


class GenAIState:
    """One sequence in the runtime: append tokens (prefill/decode), read last logits,
    take a greedy step, rewind to a shorter length (the prefix cache reuses states)."""

    def __init__(self, generator: object, max_length: int) -> None:
        self._g = generator
        self.max_length = max_length
        # generate_next_token picks a token whose KV is computed by the next step; the
        # length below counts it, as the runtime does.
        self.length = 0

    def append(self, tokens: np.ndarray) -> None:
        self._g.append_tokens(np.ascontiguousarray(tokens, dtype=np.int32))
        self.length += int(len(tokens))

    def logits(self) -> np.ndarray:
        """Logits for the token after the current sequence, shape (vocab,)."""
        return self._g.get_logits()[0, -1]

    def greedy_step(self) -> int:
        """The runtime's own argmax step (no logits copy to Python)."""
        self._g.generate_next_token()
        self.length += 1
        return int(self._g.get_next_tokens()[0])

    def rewind(self, length: int) -> None:
        self._g.rewind_to(length)
        self.length = length


class GenAISession:
    """A GenAI model folder loaded once; states share its weights."""

    thread_safe = True

    def __init__(self, folder: Path, options: OrtGenAIOptions) -> None:
        import onnxruntime_genai as og

        self._og = og
        cfg_path = folder / "genai_config.json"
        try:
            meta = json.loads(cfg_path.read_text())
            dec = meta["model"]["decoder"]
            self.context_length = int(meta["model"]["context_length"])
            self.vocab_size = int(meta["model"]["vocab_size"])
            heads = int(dec.get("num_key_value_heads", dec["num_attention_heads"]))
            # K and V, fp32, per layer: what one token of KV cache costs.
            self.kv_bytes_per_token = (
                2 * int(dec["num_hidden_layers"]) * heads * int(dec["head_size"]) * 4
            )
        except (OSError, ValueError, KeyError) as e:
            raise BackendError(f"{cfg_path} is not a usable genai_config.json: {e}") from e
        config = og.Config(str(folder))
        if options.intra_op_threads:
            config.overlay(
                json.dumps(
                    {
                        "model": {
                            "decoder": {
                                "session_options": {
                                    "intra_op_num_threads": options.intra_op_threads
                                }
                            }
                        }
                    }
                )
            )
        self._model = og.Model(config)

    def new_state(self, max_length: int | None = None) -> GenAIState:
        n = min(max_length or self.context_length, self.context_length)
        params = self._og.GeneratorParams(self._model)
        params.set_search_options(max_length=n, do_sample=False)
        return GenAIState(self._og.Generator(self._model, params), n)

    def state_bytes(self, max_length: int) -> int:
        """The KV cache a state of ``max_length`` holds (allocated up front)."""
        return self.kv_bytes_per_token * max_length

    def close(self) -> None:
        self._model = None


class OrtGenAIBackend:
    name = "ort-genai"
    formats = ("ort-genai",)
    options_type = OrtGenAIOptions

    def available(self) -> str | None:
        if module_available("onnxruntime_genai"):
            return None
        return "onnxruntime-genai is not installed (pip install 'edgefleet[genai]')"

    def load(self, config_path: Path, options: OrtGenAIOptions | None) -> GenAISession:
        """``config_path``: the artifact's genai_config.json (its folder holds the model)."""
        return GenAISession(config_path.parent, options or OrtGenAIOptions())
