"""HIL checks of a generative package (a text-generation model): time to first token and
decode tokens/s on the golden prompts, and the result cache on a repeated greedy request.
Load, greedy parity (the package's smoke test) and memory are the common checks."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["generation_checks"]

log = logging.getLogger(__name__)


def _prompts(model) -> list[np.ndarray]:
    g = model.package.golden_inputs()
    return [g["input_ids"][i, : int(n)].astype(np.int32) for i, n in enumerate(g["lengths"])]


def _speed(model, spec: dict[str, Any], check) -> dict[str, Any]:
    """TTFT p95 against the profile's p95 latency budget; decode tokens/s as a figure."""
    runs = max(int(spec.get("latency_runs", 50)) // 10, 3)
    budget = float(spec["budgets"]["p95_latency_ms"])
    ttft, tps = [], []
    prompts = _prompts(model)
    for i in range(runs):
        s = model.generate(prompts[i % len(prompts)], max_new_tokens=16, seed=i, temperature=0.7)
        s.text()  # sampled with distinct seeds: never a result-cache hit
        ttft.append(s.usage.ttft_s * 1e3)
        if s.usage.decode_tokens_per_s:
            tps.append(s.usage.decode_tokens_per_s)
    p50, p95 = (round(float(np.percentile(ttft, q)), 3) for q in (50, 95))
    figures = {"ttft_p50_ms": p50, "ttft_p95_ms": p95, "latency_budget_ms": budget,
               "decode_tokens_per_s": round(float(np.median(tps)), 1) if tps else None}  # fmt: skip
    if not spec.get("timing_meaningful", True):
        why = spec.get("timing_note") or "timing here does not represent the board"
        return check("latency", "not run", why, **figures)
    ok = p95 <= budget
    detail = (f"TTFT p95 {p95} ms {'<=' if ok else '>'} budget {budget} ms, decode "
              f"{figures['decode_tokens_per_s']} tokens/s over {runs} requests")  # fmt: skip
    return check("latency", "passed" if ok else "failed", detail, **figures)


def _cache(model, check) -> dict[str, Any]:
    prompt = _prompts(model)[0]
    a = model.generate(prompt, max_new_tokens=8, temperature=0)
    ta = a.text()
    b = model.generate(prompt, max_new_tokens=8, temperature=0)
    tb = b.text()
    hit = b.usage.result_cache_hit and not a.usage.result_cache_hit
    if hit and ta == tb:
        return check("cache", "passed", "greedy repeat served by the result cache, same text",
                     cache_repeat_hit=True)  # fmt: skip
    return check("cache", "failed", f"repeat hit: {hit}, same text: {ta == tb}",
                 cache_repeat_hit=bool(hit))  # fmt: skip


def generation_checks(model, spec: dict[str, Any], wanted: set[str], check) -> list[dict]:
    """The latency and cache checks of a generative cell (``check`` builds a check record)."""
    out = []
    if "latency" in wanted:
        out.append(_speed(model, spec, check))
    if "cache" in wanted:
        out.append(_cache(model, check))
    return out
