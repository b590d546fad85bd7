"""Generation benchmark: edgefleet.sdk on ONNX Runtime GenAI (and ExecuTorch with ``--pte``)
vs transformers, side by side.

Two models, both built here (nothing downloads):
- speed: a Llama-style decoder of ~32M parameters, random init (hidden 512, 8 layers, GQA
  8/4 heads, vocab 8192), packaged by the trainer at fp32, int8 and int4 (weight-only,
  group 32, embeddings too) through the ONNX Runtime GenAI model builder;
- quality: the built-in ``tiny_llama`` recipe, trained on its generated text, whose
  int4/int8 artifacts are compared with the fp32 torch model on held-out text.

Every contender runs with the same thread count (``--threads``, default 1); runs are
interleaved and reported as medians.

    python benchmarks/generate.py --json     # the last line is one JSON object
    python benchmarks/generate.py --json --pte   # + the same model as an ExecuTorch int4 .pte

Figures (issue 13): decode_speedup_vs_transformers >= 2, int4_size_ratio >= 5,
next_token_agreement >= 0.98, prefix_cache_ttft_speedup >= 5, sdk_overhead_ratio <= 1.05.
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import emit, parser
from _harness import host_line as _host

SPEED = dict(hidden_size=512, intermediate_size=1408, layers=8, heads=8, kv_heads=4,
             context_length=1024)  # fmt: skip
VOCAB = 8192


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _speed_recipe(work: Path, name: str, export: dict):
    """The recipe packaging the random speed model saved in ``work/hf`` (no gate)."""
    from edgefleet.trainer import LLMRecipe

    return LLMRecipe.model_validate(
        {
            "kind": "causal-lm",
            "name": name,
            "model": {**SPEED, "source": str(work / "hf")},
            "train": {"samples": 16, "heldout": 8},
            "export": export,
            "verify": {"prompts": 4, "continuation_tokens": 8, "golden_prompts": 2, "floor": None},
        }  # fmt: skip
    )


def build_speed_package(work: Path):
    """A random ~32M Llama as a local HF folder, packaged by the trainer (no gate)."""
    import torch
    from edgefleet.trainer import build_llama, run_llm_recipe
    from edgefleet.trainer._llm_data import write_char_tokenizer

    recipe = _speed_recipe(work, "bench-llama", {"formats": ["ort-genai"]})
    vocab = write_char_tokenizer(work / "hf", VOCAB)
    model = build_llama(recipe.model, vocab)
    with torch.no_grad():  # random init at HF's std 0.02 is near-uniform; widen it a bit
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(2.0)
    model.save_pretrained(str(work / "hf"))
    params = sum(p.numel() for p in model.parameters())
    result = run_llm_recipe(recipe, work / "speed")
    return result, params


def build_speed_pte(work: Path):
    """The same random model as an ExecuTorch int4 (8da4w) ``.pte``, verified, packaged."""
    from edgefleet.trainer import run_llm_recipe

    recipe = _speed_recipe(work, "bench-llama-pte", {"formats": ["pte"], "precisions": ["int4"]})
    return run_llm_recipe(recipe, work / "speed-pte")


def _hf_decode_tps(model, ids: np.ndarray, n: int) -> float:
    """Decode tokens/s of transformers' generate (KV cache, fp32, eager mode): the time of
    n+1 new tokens minus the time of 1 (the prefill), over n."""
    import torch

    x = torch.from_numpy(ids[None].astype(np.int64))
    kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0, use_cache=True)
    with torch.no_grad():
        t0 = time.perf_counter()
        model.generate(x, max_new_tokens=1, min_new_tokens=1, **kw)
        t1 = time.perf_counter()
        model.generate(x, max_new_tokens=n + 1, min_new_tokens=n + 1, **kw)
        t2 = time.perf_counter()
    return n / ((t2 - t1) - (t1 - t0))


def _raw_tps(model, ids: np.ndarray, n: int) -> float:
    """ONNX Runtime GenAI's own generator loop on the very og.Model the SDK model holds
    (same weights, threads and KV buffer length), with no edgefleet code in between."""
    import onnxruntime_genai as og

    session = model._session
    params = og.GeneratorParams(session._model)
    params.set_search_options(max_length=model.context_length, do_sample=False)
    g = og.Generator(session._model, params)
    g.append_tokens(ids.astype(np.int32))
    g.generate_next_token()
    g.get_next_tokens()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        g.generate_next_token()
        g.get_next_tokens()
    return (n - 1) / (time.perf_counter() - t0)


def _sdk_tps(model, ids: np.ndarray, n: int) -> float:
    s = model.generate(ids, max_new_tokens=n, temperature=0)
    s.text()
    return s.usage.decode_tokens_per_s


def speed(work: Path, threads: int, rounds: int, n: int, pte: bool) -> dict:
    import edgefleet.sdk as ef
    import torch
    from transformers import AutoModelForCausalLM

    result, params = build_speed_package(work)
    pkg = result.package
    torch.set_num_threads(threads)
    hf = AutoModelForCausalLM.from_pretrained(str(work / "hf"), dtype=torch.float32).eval()
    gen = ef.GenerateOptions(intra_op_threads=threads)
    rng = np.random.default_rng(0)
    prompt = np.concatenate([[1], rng.integers(4, 49, 31)]).astype(np.int32)
    models = {
        p: ef.load(pkg, options=ef.LoadOptions(precision=p, generation=gen))
        for p in ("fp32", "int8", "int4")
    }
    arts = {a.precision: a for a in result.manifest.artifacts}
    sizes = {p: a.size + sum(f.size for f in a.files) for p, a in arts.items()}
    extra = {}
    if pte:  # ExecuTorch through the same SDK API (its runtime imports torch)
        pres = build_speed_pte(work)
        [art] = pres.manifest.artifacts
        models["pte_int4"] = ef.load(pres.package, options=ef.LoadOptions(generation=gen))
        sizes["pte_int4"] = art.size
        extra["pte_int4_agreement"] = round(art.metrics.scores["next_token_agreement"], 4)
        extra["pte_export_s"] = art.metrics.scores["export_s"]
    tps: dict[str, list[float]] = {k: [] for k in ("transformers", "raw_int4", *models)}
    for m in models.values():
        _sdk_tps(m, prompt, 8)  # warm-up
    _raw_tps(models["int4"], prompt, 8)
    _hf_decode_tps(hf, prompt, 4)
    pair_ratios = []
    for _ in range(rounds):
        tps["transformers"].append(_hf_decode_tps(hf, prompt, n))
        for p, m in models.items():
            tps[p].append(_sdk_tps(m, prompt, n))
        for _ in range(3):  # raw and SDK back to back: a load spike hits one pair, not all
            raw = _raw_tps(models["int4"], prompt, n)
            sdk = _sdk_tps(models["int4"], prompt, n)
            tps["raw_int4"].append(raw)
            tps["int4"].append(sdk)
            pair_ratios.append(raw / sdk)
    ttft = prefix_ttft(pkg, gen, rounds)
    for m in models.values():
        m.close()
    med = {k: _median(v) for k, v in tps.items()}
    best = max(models, key=lambda p: med[p])
    return {
        "speed_model_params": params,
        "decode_tokens_per_s": {k: round(v, 1) for k, v in med.items()},
        "best_artifact": best,
        "decode_speedup_vs_transformers": round(med[best] / med["transformers"], 3),
        "int4_size_ratio": round(sizes["fp32"] / sizes["int4"], 3),
        "artifact_bytes": sizes,
        # median of paired (raw, SDK) runs; the ratio of the two medians is reported too
        "sdk_overhead_ratio": round(_median(pair_ratios), 4),
        "sdk_overhead_ratio_of_medians": round(med["raw_int4"] / med["int4"], 4),
        "speed_agreement": {
            p: round(a.metrics.scores["next_token_agreement"], 4) for p, a in arts.items()
        },  # fmt: skip
        **extra,
        **ttft,
    }


def prefix_ttft(pkg: Path, gen, rounds: int) -> dict:
    """TTFT of a 512-token shared prefix + a short question: prefix cached vs cold."""
    import dataclasses

    import edgefleet.sdk as ef

    rng = np.random.default_rng(1)
    prefix = np.concatenate([[1], rng.integers(4, 49, 511)]).astype(np.int32)
    warm = ef.load(pkg, options=ef.LoadOptions(precision="int4", generation=gen))
    cold_gen = dataclasses.replace(gen, prefix_cache_bytes=0)
    cold = ef.load(pkg, options=ef.LoadOptions(precision="int4", generation=cold_gen))
    warm.generate(np.concatenate([prefix, [5, 6, 7]]).astype(np.int32), max_new_tokens=1).text()
    t_warm, t_cold = [], []
    for _ in range(max(rounds, 5)):
        q = np.concatenate([prefix, rng.integers(4, 49, 16)]).astype(np.int32)
        for model, out in ((cold, t_cold), (warm, t_warm)):
            s = model.generate(q, max_new_tokens=2)
            s.text()
            out.append(s.usage.ttft_s)
    stats = warm.prefix_cache.stats()
    warm.close()
    cold.close()
    return {
        "ttft_ms_cold_512_prefix": round(_median(t_cold) * 1e3, 3),
        "ttft_ms_cached_512_prefix": round(_median(t_warm) * 1e3, 3),
        "prefix_cache_ttft_speedup": round(_median(t_cold) / _median(t_warm), 3),
        "prefix_cache_hit_rate": stats.hit_rate,
    }


def quality(work: Path) -> dict:
    from edgefleet.trainer import load_llm_recipe, run_llm_recipe

    res = run_llm_recipe(load_llm_recipe("tiny_llama"), work / "quality")
    shipped = {r.precision: r.scores for r in res.exports if r.shipped and r.format == "ort-genai"}
    quant = {p: s for p, s in shipped.items() if p in ("int4", "int8")}
    best = max(quant, key=lambda p: quant[p]["next_token_agreement"])
    return {
        "next_token_agreement": round(quant[best]["next_token_agreement"], 4),
        "next_token_agreement_artifact": best,
        "quality": {
            p: {k: round(v, 4) for k, v in s.items() if k != "export_s"} for p, s in shipped.items()
        },
        "reference_perplexity": round(res.reference_perplexity, 4),
    }


def main() -> int:
    ap = parser(__doc__, threads=1, rounds=5, tokens=(64, "new tokens per decode run"),
                pte=(False, "add the ExecuTorch int4 .pte contender (minutes)"))  # fmt: skip
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-gen-") as tmp:
        work = Path(tmp)
        out = {"host": _host(), "threads": args.threads, "rounds": args.rounds,
               "new_tokens": args.tokens}  # fmt: skip
        out.update(speed(work, args.threads, args.rounds, args.tokens, args.pte))
        out.update(quality(work))
    return emit(out, args.json, *(f"{k:36s} {v}" for k, v in out.items()))


if __name__ == "__main__":
    raise SystemExit(main())
