"""Verifying an LLM artifact against the torch reference on held-out text and prompts:
next-token top-1 agreement (teacher forced, through the artifact's KV cache path),
perplexity, and greedy continuation match over N tokens."""

from __future__ import annotations

import logging

import numpy as np
import torch
from edgefleet.sdk._gen_smoke import continuation_tokens, token_match

__all__ = ["torch_greedy", "torch_logits", "verify_genai", "reference_scores"]

log = logging.getLogger(__name__)


@torch.no_grad()
def torch_logits(model, seq: np.ndarray) -> np.ndarray:
    return model(torch.from_numpy(seq[None].astype(np.int64))).logits[0].float().numpy()


@torch.no_grad()
def torch_greedy(model, prompt: np.ndarray, n: int, eos: int | None) -> list[int]:
    """Greedy continuation with the KV cache (transformers' DynamicCache)."""
    out = model(torch.from_numpy(prompt[None].astype(np.int64)), use_cache=True)
    past, got = out.past_key_values, []
    for _ in range(n):
        tok = int(out.logits[0, -1].argmax())
        if tok == eos:
            break
        got.append(tok)
        out = model(torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
    return got


def _ppl(logits: list[np.ndarray], targets: list[np.ndarray]) -> float:
    nll, n = 0.0, 0
    for lg, t in zip(logits, targets, strict=True):
        x = lg.astype(np.float64)
        m = x.max(-1, keepdims=True)
        logz = (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[:, 0]
        nll -= float((x[np.arange(len(t)), t] - logz).sum())
        n += len(t)
    return float(np.exp(nll / n))


def reference_scores(model, texts: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """Reference logits per held-out text (positions 0..n-2) and its perplexity."""
    logits = [torch_logits(model, s)[:-1] for s in texts]
    return logits, _ppl(logits, [s[1:] for s in texts])


def verify_genai(
    session,
    texts: list[np.ndarray],
    ref_logits: list[np.ndarray],
    prompts: list[np.ndarray],
    ref_continuations: np.ndarray,
    eos: int | None,
) -> tuple[dict[str, float], np.ndarray]:
    """Scores of one generation session (GenAI or ``.pte``: the same state interface)
    against the reference figures, and its greedy continuations of ``prompts``
    (fixed-length form)."""
    agree, total, logits = 0, 0, []
    for seq, ref in zip(texts, ref_logits, strict=True):
        state = session.new_state(len(seq) + 1)
        rows = []
        for t in seq[:-1]:
            state.append(np.asarray([t], dtype=np.int32))
            rows.append(np.array(state.logits(), dtype=np.float32))
        got = np.stack(rows)
        logits.append(got)
        agree += int((got.argmax(-1) == ref.argmax(-1)).sum())
        total += len(rows)
    n = ref_continuations.shape[1]
    conts = []
    for p in prompts:
        state = session.new_state(len(p) + n + 1)
        state.append(p.astype(np.int32))
        toks = []
        for _ in range(n):
            tok = state.greedy_step()
            if tok == eos:
                break
            toks.append(tok)
        conts.append(continuation_tokens(toks, eos, n))
    got_c = np.stack(conts)
    scores = {
        "next_token_agreement": agree / total,
        "perplexity": _ppl(logits, [s[1:] for s in texts]),
        "greedy_match": token_match(got_c, ref_continuations),
        "greedy_exact": float(np.mean(np.all(got_c == ref_continuations, axis=1))),
    }
    return scores, got_c
