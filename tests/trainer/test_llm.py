"""Packaging a tiny causal LM: training on generated text, the real ONNX Runtime GenAI model
builder at fp32/int8/int4, verification against torch, the accuracy gate, signing."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime_genai")
pytest.importorskip("transformers")

from edgefleet.sdk import TrustPolicy, open_package
from edgefleet.trainer import RecipeError, load_llm_recipe, run_llm_recipe

from tests.support.llm import tiny_recipe

pytestmark = pytest.mark.slow


def test_package_holds_genai_artifacts_at_every_precision(genai_llm):
    with genai_llm.open() as pkg:
        m = pkg.manifest
        assert m.task == "text-generation"
        assert m.signature is not None and pkg.signed_by is not None
        by_prec = {a.precision: a for a in m.artifacts}
        assert set(by_prec) == {"fp32", "int8", "int4"}
        for a in m.artifacts:
            assert a.format == "ort-genai" and a.path.endswith("genai_config.json")
            names = {f.path.rsplit("/", 1)[1] for f in a.files}
            assert {"model.onnx", "model.onnx.data"} <= names
            assert a.golden_outputs is not None
            s = a.metrics.scores
            assert a.metrics.metric == "next_token_agreement" and a.metrics.value >= 0.9
            assert 0.0 <= s["greedy_match"] <= 1.0 and s["golden_token_match"] > 0
        assert by_prec["fp32"].metrics.scores["next_token_agreement"] == pytest.approx(1.0)
        assert by_prec["int4"].quantization == "weight-only-int4-g32-emb"

        def weights(a):
            return sum(f.size for f in a.files)

        assert weights(by_prec["int4"]) * 2.5 < weights(by_prec["fp32"])
        # .pte is opt-in (tests/trainer/test_llm_pte.py): not asked, not built, not failed.
        assert m.failed_exports == []
        g = m.generation
        assert g.context_length == 256 and g.eos_token_ids == [2] and g.bos_token_id == 1
        assert "{% for m in messages %}" in (pkg.root / g.chat_template).read_text()
        roles = {f.role for f in m.files}
        assert {"tokenizer", "chat_template", "model_config"} <= roles
        assert m.metric.name == "next_token_agreement" and m.metric.floor == 0.9


def test_trained_model_reaches_a_low_perplexity(genai_llm):
    # 50 characters in the vocabulary: an untrained model sits near perplexity 50.
    assert genai_llm.result.reference_perplexity < 4.0
    for r in genai_llm.result.exports:
        if r.shipped:
            assert r.scores["perplexity"] < genai_llm.result.reference_perplexity * 1.05


def test_tampered_weights_file_is_refused(genai_llm, tmp_path):
    import shutil

    from edgefleet.sdk import PackageError, extract_archive

    root = tmp_path / "pkg"
    extract_archive(genai_llm.package, root)
    data = next(root.glob("artifacts/model.int4.ort-genai/model.onnx.data"))
    blob = bytearray(data.read_bytes())
    blob[100] ^= 0xFF
    data.write_bytes(bytes(blob))
    with pytest.raises(PackageError, match="model.onnx.data"):
        open_package(root)
    shutil.rmtree(root)


def test_gate_rejects_and_bring_your_own_folder(genai_llm, tmp_path):
    """A local Hugging Face folder as the source; a gate no artifact can pass (perplexity
    at most 1.0) ships nothing and says why per artifact."""
    recipe = tiny_recipe(
        name="byo-lm",
        model={"source": str(genai_llm.hf_folder)},
        export={"formats": ["ort-genai"], "precisions": ["int4"]},
        verify={"metric": "perplexity", "floor": 1.0},
    )
    res = run_llm_recipe(recipe, tmp_path)
    m = res.manifest
    assert m.artifacts == []
    [rej] = m.rejected
    assert rej.name == "model.int4.ort-genai" and rej.metric == "perplexity"
    assert rej.value > 1.0 and "fails the gate" in rej.reason
    # The BYO folder is the same model: its reference perplexity is the tiny recipe's.
    assert res.reference_perplexity == pytest.approx(
        genai_llm.result.reference_perplexity, rel=1e-3
    )


def test_recipe_errors_name_the_field(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text('kind = "causal-lm"\nname = "x"\n[export]\nblock_size = 48\n')
    with pytest.raises(RecipeError, match="export.block_size"):
        load_llm_recipe(bad)
    builtin = load_llm_recipe("tiny_llama")
    assert builtin.export.precisions == ["fp32", "int8", "int4"]
    assert json.loads(builtin.model_dump_json())["kind"] == "causal-lm"


def test_golden_prompts_are_stored_with_lengths(genai_llm):
    with open_package(genai_llm.package) as pkg:
        g = pkg.golden_inputs()
        assert g["input_ids"].dtype == np.int64 and g["lengths"].shape == (3,)
        assert (g["input_ids"][:, 0] == 1).all()  # BOS


def test_train_command_runs_a_causal_lm_recipe(tmp_path, signing_keys):
    from typer.testing import CliRunner

    from edgefleet._cli import _register, app

    _register("train")
    recipe = tmp_path / "lm.toml"
    recipe.write_text(
        'kind = "causal-lm"\nname = "cli-lm"\n'
        "[model]\nhidden_size = 32\nintermediate_size = 64\nlayers = 1\nheads = 2\n"
        "kv_heads = 1\ncontext_length = 64\n"
        "[train]\nsamples = 200\nheldout = 4\nsteps = 10\nbatch_size = 8\nthreads = 1\n"
        '[export]\nformats = ["ort-genai"]\nprecisions = ["int8"]\n'
        "[verify]\nprompts = 2\ncontinuation_tokens = 4\ngolden_prompts = 1\n"
        'metric = "perplexity"\nfloor = 1000.0\n'  # an untrained model still ships
    )
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["train", str(recipe), "--out", str(out), "--key", str(signing_keys[0]), "-q"]
    )
    assert res.exit_code == 0, res.output
    assert "package: " in res.output and "cli-lm-1.0.0.efpkg" in res.output
    with open_package(out / "cli-lm-1.0.0.efpkg", TrustPolicy.device(signing_keys[1])) as pkg:
        [art] = pkg.manifest.artifacts
        assert art.precision == "int8" and pkg.manifest.metric.direction == "lower"
    bad = CliRunner().invoke(app, ["train", str(recipe), "--out", str(out), "--key", "nope.key"])
    assert bad.exit_code != 0 and "nope.key" in bad.output
