"""Build and train a small Llama-style causal LM (transformers) and save it as a local
Hugging Face folder: the input of the GenAI model builder and of verification."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from edgefleet.sdk._chat import TextCodec

from ._llm_data import SPECIALS, make_corpus, write_char_tokenizer
from ._llm_recipe import LLMModelSpec, LLMRecipe, LLMTrainSpec
from ._progress import Reporter

__all__ = ["build_llama", "encode_corpus", "train_lm", "prepare_hf_folder", "perplexity"]

log = logging.getLogger(__name__)


def build_llama(spec: LLMModelSpec, vocab_size: int, seed: int = 0):
    """A randomly initialised ``LlamaForCausalLM`` of the given sizes."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.context_length,
        bos_token_id=SPECIALS["<s>"],
        eos_token_id=SPECIALS["</s>"],
        pad_token_id=SPECIALS["<pad>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()


def encode_corpus(codec: TextCodec, texts: list[str], eos: int) -> list[np.ndarray]:
    return [np.append(codec.encode(t), eos).astype(np.int64) for t in texts]


def _batch(seqs: list[np.ndarray], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = np.full((len(seqs), n), pad, dtype=np.int64)
    mask = np.zeros((len(seqs), n), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    labels = np.where(mask == 1, ids, -100)
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(labels)


def train_lm(model, seqs: list[np.ndarray], spec: LLMTrainSpec, seed: int, quiet: bool) -> float:
    """AdamW with a cosine schedule; returns the last training loss."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, spec.lr, total_steps=max(spec.steps, 1))
    rng = np.random.default_rng(seed)
    loss_v = float("nan")
    with Reporter(quiet=quiet) as rep, rep.task("train LM", total=spec.steps) as step:
        for _ in range(spec.steps):
            pick = rng.integers(0, len(seqs), spec.batch_size)
            ids, mask, labels = _batch([seqs[i] for i in pick], SPECIALS["<pad>"])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss_v = loss.item()
            step(info=f"loss {loss_v:.3f}")
    model.eval()
    return loss_v


@torch.no_grad()
def perplexity(model, seqs: list[np.ndarray]) -> float:
    """Token-level perplexity of ``model`` on ``seqs`` (first token excluded: BOS)."""
    nll, count = 0.0, 0
    for s in seqs:
        logits = model(torch.from_numpy(s[None, :-1])).logits[0].double()
        logp = torch.log_softmax(logits, -1)
        nll -= float(logp[torch.arange(len(s) - 1), torch.from_numpy(s[1:])].sum())
        count += len(s) - 1
    return float(np.exp(nll / count))


def prepare_hf_folder(recipe: LLMRecipe, work: Path, *, quiet: bool = True):
    """(model, hf folder, held-out texts): trained from generated text, or the recipe's
    local Hugging Face folder. Returns the model in eval mode."""
    from transformers import AutoModelForCausalLM

    texts = make_corpus(recipe.train.samples + recipe.train.heldout, recipe.seed)
    heldout = texts[recipe.train.samples :]
    if recipe.model.source:
        folder = Path(recipe.model.source)
        if not (folder / "config.json").is_file() or not (folder / "tokenizer.json").is_file():
            from ._recipe import RecipeError

            raise RecipeError(
                f"model.source {folder} must be a Hugging Face folder with config.json and "
                "tokenizer.json"
            )
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
        return model, folder, heldout
    folder = work / "hf"
    vocab = write_char_tokenizer(folder)
    codec = TextCodec(folder / "tokenizer.json", bos_token_id=SPECIALS["<s>"])
    model = build_llama(recipe.model, vocab, recipe.seed)
    seqs = encode_corpus(codec, texts[: recipe.train.samples], SPECIALS["</s>"])
    t0 = time.perf_counter()
    loss = train_lm(model, seqs, recipe.train, recipe.seed, quiet)
    log.info("trained %d steps in %.1f s, loss %.3f", recipe.train.steps,
             time.perf_counter() - t0, loss)  # fmt: skip
    model.save_pretrained(str(folder))
    return model, folder, heldout
