"""Packaging a tiny causal LM as ExecuTorch ``.pte`` programs with a static KV cache,
lowered to XNNPACK (fp32 and 8da4w int4), verified against torch, next to GenAI artifacts;
a lowering that cannot work is recorded with the exporter's own error."""

from __future__ import annotations

import pytest
from edgefleet.trainer import run_llm_recipe

from tests.support.llm import tiny_recipe

pytestmark = pytest.mark.slow


def test_package_holds_verified_pte_artifacts(pte_llm):
    with pte_llm.open() as pkg:
        m = pkg.manifest
        assert m.signature is not None and m.failed_exports == [] and m.rejected == []
        pte = {a.precision: a for a in m.artifacts if a.format == "pte"}
        assert set(pte) == {"fp32", "int4"}
        assert {a.format for a in m.artifacts} == {"pte", "ort-genai"}
        for a in pte.values():
            assert a.path == f"artifacts/{a.name}" and a.name.endswith(".pte") and a.files == []
            assert (pkg.root / a.path).stat().st_size == a.size
            assert a.golden_outputs == f"golden/{a.name}.continuations.npz"
            s = a.metrics.scores
            assert a.metrics.metric == "next_token_agreement" and a.metrics.value >= 0.9
            assert s["perplexity"] < s["reference_perplexity"] * 1.05 and s["export_s"] > 0
        # fp32 through the static cache is the torch model: every next token and every
        # greedy continuation agrees.
        f = pte["fp32"].metrics.scores
        assert f["next_token_agreement"] == 1.0 and f["greedy_exact"] == 1.0
        assert pte["fp32"].quantization is None
        assert pte["int4"].quantization == "8da4w-g32"
        assert pte["int4"].size * 2 < pte["fp32"].size


def test_pte_carries_its_sizes_for_the_runtime(pte_llm, tmp_path):
    import torch
    from edgefleet.sdk import extract_archive
    from executorch.runtime import Runtime

    extract_archive(pte_llm.package, tmp_path / "pkg")
    prog = Runtime.get().load_program(tmp_path / "pkg" / "artifacts" / "model.int4.pte")

    def const(name):
        return prog.load_method(name).execute([])[0]

    assert const("get_max_context_len") == 256 and const("get_max_seq_len") == 128
    assert const("get_vocab_size") == pte_llm.result.manifest.outputs[0].shape[2]
    assert const("use_kv_cache") is True
    # 2 layers x K,V x 2 KV heads x head dim 16 x fp32 x 256 positions
    assert const("get_kv_cache_bytes") == 2 * 2 * 2 * 16 * 4 * 256
    fwd = prog.load_method("forward")
    logits = fwd.execute([torch.tensor([[1, 5, 6]]), torch.arange(3)])[0]
    assert logits.shape == (1, const("get_vocab_size"))


def test_a_lowering_that_fails_is_recorded_with_its_reason(pte_llm, tmp_path):
    """int4 groups of 128 do not divide the 64-wide layers: torchao refuses, the package
    says so with that text, and nothing ships for the format."""
    recipe = tiny_recipe(
        name="bad-group",
        model={"source": str(pte_llm.hf_folder)},
        export={"formats": ["pte", "litertlm"], "precisions": ["int4"], "block_size": 128},
    )
    res = run_llm_recipe(recipe, tmp_path)
    m = res.manifest
    assert m.artifacts == []
    fails = {f.format: f for f in m.failed_exports}
    assert fails["pte"].precision == "int4"
    assert "ExecuTorch export (int4) failed" in fails["pte"].reason
    assert "divisible by block_size" in fails["pte"].reason
    assert "LiteRT-LM" in fails["litertlm"].reason
    [rec] = [r for r in res.exports if r.format == "pte"]
    assert not rec.shipped and rec.error == fails["pte"].reason
