"""A causal-LM recipe end to end: train (or load a local HF folder) -> GenAI and ExecuTorch
exports at each precision -> verify against torch -> accuracy gate -> signed package."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import edgefleet.sdk as ef
import numpy as np
from edgefleet.sdk._chat import TextCodec
from edgefleet.sdk._gen_smoke import continuation_tokens
from edgefleet.sdk.backends._executorch_gen import ExecuTorchGenBackend, ExecuTorchGenOptions
from edgefleet.sdk.backends._ort_genai import OrtGenAIBackend, OrtGenAIOptions

from ._llm import encode_corpus, prepare_hf_folder
from ._llm_export import build_genai, unsupported_reason
from ._llm_package import GenerativePackageWriter
from ._llm_pte import build_pte
from ._llm_recipe import LLMRecipe, llm_recipe_digest
from ._llm_verify import reference_scores, torch_greedy, verify_genai

__all__ = ["LLMExportRecord", "LLMResult", "run_llm_recipe"]

log = logging.getLogger(__name__)

_REFERENCE = {"next_token_agreement": 1.0, "greedy_match": 1.0}


@dataclass(frozen=True)
class LLMExportRecord:
    """One export the recipe asked for (artifact ``name``, format, precision): its size,
    verification scores, and whether it shipped; ``error`` is the exporter's reason when
    it could not be built (a gate rejection ships nothing and has no error)."""

    name: str
    format: str
    precision: str
    size: int | None
    scores: dict[str, float]
    shipped: bool
    error: str | None = None


@dataclass(frozen=True)
class LLMResult:
    """The signed package and its manifest, the torch reference's held-out perplexity,
    and one record per export tried."""

    package: Path
    manifest: ef.Manifest
    reference_perplexity: float
    exports: list[LLMExportRecord] = field(default_factory=list)


@dataclass(frozen=True)
class _Built:
    """One export, whatever its runtime: how to open it for verification, how to add it."""

    precision: str
    path: Path  # GenAI: the model folder; pte: the program
    quantization: str | None
    seconds: float
    fmt: str

    @property
    def size(self) -> int:
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    def open(self):
        if self.fmt == "pte":
            return ExecuTorchGenBackend().load(self.path, ExecuTorchGenOptions(1))
        return OrtGenAIBackend().load(self.path / "genai_config.json", OrtGenAIOptions(1))

    def add(self, writer: GenerativePackageWriter, name: str, **kw) -> None:
        writer.add_artifact(
            name, self.path, self.fmt, self.precision, quantization=self.quantization, **kw
        )


def _export(fmt: str, prec: str, hf: Path, work: Path, recipe: LLMRecipe) -> _Built:
    if fmt == "ort-genai":
        exp = build_genai(hf, work / f"genai-{prec}", prec, recipe.export)
        return _Built(prec, exp.folder, exp.quantization, exp.seconds, fmt)
    if fmt == "pte":
        pte = build_pte(hf, work / f"model.{prec}.pte", prec, recipe.export)
        return _Built(prec, pte.path, pte.quantization, pte.seconds, fmt)
    raise ef.EdgefleetError(unsupported_reason(fmt))


def run_llm_recipe(
    recipe: LLMRecipe,
    out: str | Path,
    *,
    signing_key=None,
    quiet: bool = True,
    save_reference: str | Path | None = None,
) -> LLMResult:
    """``save_reference``: also keep the torch reference (the trained HF folder) there."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(signing_key, str | Path):
        signing_key = ef.load_private_key(signing_key)
    v = recipe.verify
    metric = ef.MetricSpec(
        name=v.metric,
        direction="lower" if v.metric == "perplexity" else "higher",
        floor=v.floor,
        max_drop=v.max_drop,
    )
    with tempfile.TemporaryDirectory(prefix="edgefleet-llm-work-") as tmp:
        work = Path(tmp)
        model, hf, heldout = prepare_hf_folder(recipe, work, quiet=quiet)
        if save_reference is not None:
            shutil.copytree(hf, save_reference, dirs_exist_ok=True)
        cfg = model.config
        eos = cfg.eos_token_id if isinstance(cfg.eos_token_id, int) else cfg.eos_token_id[0]
        tok_cfg_path = hf / "tokenizer_config.json"
        tok_cfg = json.loads(tok_cfg_path.read_text()) if tok_cfg_path.is_file() else {}
        codec = TextCodec(hf / "tokenizer.json", bos_token_id=cfg.bos_token_id)
        texts = encode_corpus(codec, heldout, eos)
        prompts = [s[: max(2, len(s) // 2)] for s in texts[: v.prompts]]
        n = v.continuation_tokens
        ref_conts = np.stack(
            [continuation_tokens(torch_greedy(model, p, n, eos), eos, n) for p in prompts]
        )
        ref_logits, ref_ppl = reference_scores(model, texts)
        reference = {**_REFERENCE, "perplexity": ref_ppl}
        log.info("reference perplexity %.3f on %d held-out texts", ref_ppl, len(texts))

        writer = GenerativePackageWriter(
            recipe.name, recipe.version, cfg.vocab_size, description=recipe.description,
            recipe_digest=llm_recipe_digest(recipe),
        )  # fmt: skip
        records: list[LLMExportRecord] = []
        with writer:
            tok_rel = writer.add_file(
                hf / "tokenizer.json", "tokenizer/tokenizer.json", "tokenizer"
            )
            template = None
            if tok_cfg.get("chat_template"):
                template = writer.add_text(
                    tok_cfg["chat_template"], "tokenizer/chat_template.jinja", "chat_template"
                )
            writer.add_file(hf / "config.json", "config/config.json", "model_config")
            writer.set_generation(
                ef.GenerationSpec(
                    tokenizer=tok_rel,
                    context_length=cfg.max_position_embeddings,
                    bos_token_id=cfg.bos_token_id,
                    eos_token_ids=[eos],
                    pad_token_id=cfg.pad_token_id,
                    chat_template=template,
                    defaults=dict(recipe.generation),
                )
            )
            writer.set_golden_prompts(prompts[: v.golden_prompts], cfg.pad_token_id or 0)
            for fmt in recipe.export.formats:
                for prec in recipe.export.precisions:
                    name = f"model.{prec}.{fmt}"
                    try:
                        built = _export(fmt, prec, hf, work, recipe)
                    except ef.EdgefleetError as e:  # the builder's own reason, per format
                        writer.add_failed_export(fmt, prec, str(e))
                        records.append(LLMExportRecord(name, fmt, prec, None, {}, False, str(e)))
                        continue
                    session = built.open()
                    try:
                        scores, conts = verify_genai(
                            session, texts, ref_logits, prompts, ref_conts, eos
                        )
                    finally:
                        session.close()
                    g = v.golden_prompts
                    scores["golden_token_match"] = float(np.mean(conts[:g] == ref_conts[:g]))
                    scores["export_s"] = round(built.seconds, 2)
                    value = scores[v.metric]
                    if not metric.passes(value, reference[v.metric]):
                        writer.reject(
                            ef.RejectedArtifact(
                                name=name, format=fmt, precision=prec, metric=v.metric,
                                value=value, reference_value=reference[v.metric],
                                reason=f"{v.metric} {value:.4f} fails the gate",
                            )
                        )  # fmt: skip
                        records.append(LLMExportRecord(name, fmt, prec, built.size, scores, False))
                        continue
                    built.add(
                        writer, name, targets=list(recipe.targets), golden_tokens=ref_conts[:g],
                        metrics=ef.ArtifactMetrics(
                            samples=len(texts), top1_agreement=scores["next_token_agreement"],
                            metric=v.metric, value=value, reference_value=reference[v.metric],
                            scores={**scores, "reference_perplexity": ref_ppl},
                        ),
                    )  # fmt: skip
                    records.append(LLMExportRecord(name, fmt, prec, built.size, scores, True))
            pkg, manifest = writer.build(
                out / f"{recipe.name}-{recipe.version}.efpkg", metric, signing_key
            )
    return LLMResult(pkg, manifest, ref_ppl, records)
