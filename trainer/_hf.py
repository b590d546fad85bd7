"""Hugging Face ``transformers`` models without hand wrapping.

``compress`` accepts a ``PreTrainedModel`` (with its tokenizer) or a local model folder
(``config.json`` + weights + tokenizer files; nothing is downloaded: ``local_files_only``).
Raw texts become the example inputs through the tokenizer (padded to ``max_length``), the
inputs are the tokenizer's fields that ``forward`` takes, outputs keep the ModelOutput's
names, and ``pooling="mean"`` adds the sentence embedding (mask-weighted mean of
``last_hidden_state``) as the model's one output. The tokenizer's files go into the
package (role "tokenizer") and ``Preprocessing.text`` tells the SDK how to use them.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from edgefleet.sdk import ConfigError, TextPreprocessing
from torch import nn

from ._signature import forward_names

__all__ = ["HFModel", "is_hf_model", "load_hf", "MeanPooled"]

log = logging.getLogger(__name__)


def is_hf_model(model: Any) -> bool:
    if isinstance(model, str | Path):
        return (Path(model) / "config.json").is_file()
    try:
        from transformers import PreTrainedModel
    except ImportError:
        return False
    return isinstance(model, PreTrainedModel)


class MeanPooled(nn.Module):
    """Encoder -> one ``embedding`` output: mean of ``last_hidden_state`` over real tokens."""

    def __init__(self, encoder: nn.Module, input_names: Sequence[str]) -> None:
        super().__init__()
        self.encoder = encoder
        self.input_names = list(input_names)

    def forward(self, *args: torch.Tensor) -> dict[str, torch.Tensor]:
        kw = dict(zip(self.input_names, args, strict=True))
        hidden = self.encoder(**kw).last_hidden_state
        mask = kw["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return {"embedding": (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)}


@dataclass
class HFModel:
    """What ``compress`` needs from a transformers model: a module taking the inputs
    positionally (``NamedIO`` calls it by keyword when it can), example feeds, the
    tokenizer files and the package's text preprocessing."""

    module: nn.Module
    input_names: list[str]
    feeds: dict[str, np.ndarray]
    pad_values: dict[str, float]
    dynamic_dims: dict[str, dict[int, str]]
    text: TextPreprocessing
    tokenizer_files: list[Path] = field(default_factory=list)
    task: str = "embedding"
    tokenizer: Any = None
    _tmp: tempfile.TemporaryDirectory | None = None

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Texts -> {input: int64 array}, padded to ``max_length`` like the examples."""
        return _encode(self.tokenizer, texts, self.input_names, self.text.max_length or 128)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def load_hf(
    model: Any, texts: Sequence[str], *, tokenizer: Any = None, max_length: int | None = None,
    pooling: Literal["none", "mean"] = "none", input_names: Sequence[str] | None = None,
) -> HFModel:  # fmt: skip
    """Load ``model`` (object or local folder) and tokenize ``texts`` as example inputs."""
    from transformers import AutoModel, AutoTokenizer

    if isinstance(model, str | Path):
        folder = Path(model)
        model = AutoModel.from_pretrained(folder, local_files_only=True)
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if isinstance(tokenizer, str | Path):
        tokenizer = AutoTokenizer.from_pretrained(Path(tokenizer), local_files_only=True)
    if tokenizer is None:
        src = Path(str(getattr(model, "name_or_path", "") or ""))
        if not (src / "tokenizer.json").is_file():
            raise ConfigError(
                "a transformers model needs its tokenizer: pass "
                "CompressOptions(tokenizer=...) (object or local folder)"
            )
        tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=True)
    if not texts:
        raise ConfigError("example inputs of a transformers model are a list of texts")
    model = model.eval()
    params = forward_names(model)
    names = list(input_names or [n for n in tokenizer.model_input_names if n in params])
    missing = [n for n in names if n not in params]
    if missing or not names:
        raise ConfigError(f"inputs {missing or names} are not parameters of "
                          f"{type(model).__name__}.forward ({params[:6]}...)")  # fmt: skip
    length = max_length or min(int(getattr(tokenizer, "model_max_length", 128) or 128), 128)
    feeds = _encode(tokenizer, texts, names, length)
    pad_id = int(tokenizer.pad_token_id or 0)
    pad_values = {n: float(pad_id if n == "input_ids" else 0) for n in names}
    dyn = {n: {0: "batch", 1: "sequence"} for n in names}
    module: nn.Module = model
    task = "other"
    if pooling == "mean":
        if "attention_mask" not in names:
            raise ConfigError("pooling='mean' needs an attention_mask input")
        module, task = MeanPooled(model, names), "embedding"
    tmp = tempfile.TemporaryDirectory(prefix="edgefleet-tokenizer-")
    tokenizer.save_pretrained(tmp.name)
    files = sorted(p for p in Path(tmp.name).iterdir() if p.is_file())
    if not (Path(tmp.name) / "tokenizer.json").is_file():
        tmp.cleanup()
        raise ConfigError("the tokenizer has no tokenizer.json (use a fast tokenizer): the "
                          "device-side SDK tokenizes with it")  # fmt: skip
    text = TextPreprocessing(
        tokenizer="tokenizer/tokenizer.json", inputs={n: n for n in names},
        max_length=length, pad_token_id=pad_id,
    )  # fmt: skip
    log.info("transformers %s: inputs %s, max_length %d, pooling %s",
             type(model).__name__, names, length, pooling)  # fmt: skip
    return HFModel(module, names, feeds, pad_values, dyn, text, files, task, tokenizer, tmp)


def _encode(tokenizer: Any, texts: Sequence[str], names: Sequence[str], length: int
            ) -> dict[str, np.ndarray]:  # fmt: skip
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ConfigError("inputs of a transformers model are a list of texts")
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=length,
                    return_tensors="np")  # fmt: skip
    return {n: np.ascontiguousarray(enc[n]).astype(np.int64) for n in names}
