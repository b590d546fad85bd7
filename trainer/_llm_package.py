"""Assembling a generative package: multi-file GenAI artifacts, single-file ``.pte``
programs, tokenizer and chat template as package files, the generation spec, golden
prompts, the accuracy gate's verdicts, signed.

Kept apart from ``PackageBuilder`` (one file per artifact, no package files) so that the
classifier path stays as it is; both write through the SDK's signing and archive code.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
from edgefleet.sdk import (
    Artifact,
    ArtifactMetrics,
    Closing,
    ExportFailure,
    FileEntry,
    GenerationSpec,
    Manifest,
    MetricSpec,
    PackageError,
    RejectedArtifact,
    TensorSpec,
    sha256_file,
    write_package,
)
from edgefleet.sdk._package import save_npz

__all__ = ["GenerativePackageWriter"]

log = logging.getLogger(__name__)


class GenerativePackageWriter(Closing):
    """Collects the parts in a temporary directory; ``build`` writes a dir or ``.efpkg``."""

    def __init__(self, name: str, version: str, vocab_size: int, **fields) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="edgefleet-llm-")
        self.root = Path(self._tmp.name)
        self._fields = dict(
            name=name,
            version=version,
            task="text-generation",
            inputs=[TensorSpec(name="input_ids", dtype="int64", shape=["batch", "sequence"])],
            outputs=[
                TensorSpec(name="logits", dtype="float32", shape=["batch", "sequence", vocab_size])
            ],
            **fields,
        )
        Manifest.model_validate(self._fields)  # names and versions fail before any export
        self._artifacts: list[Artifact] = []
        self._files: list[FileEntry] = []
        self._failed: list[ExportFailure] = []
        self._rejected: list[RejectedArtifact] = []
        self._generation: GenerationSpec | None = None
        self._golden: str | None = None

    def _entry(self, rel: str, role: str) -> FileEntry:
        p = self.root / rel
        return FileEntry(path=rel, sha256=sha256_file(p), size=p.stat().st_size, role=role)

    def add_file(self, src: Path, rel: str, role: str) -> str:
        dst = self.root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        self._files.append(self._entry(rel, role))
        return rel

    def add_text(self, text: str, rel: str, role: str) -> str:
        dst = self.root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(text)
        self._files.append(self._entry(rel, role))
        return rel

    def set_generation(self, spec: GenerationSpec) -> None:
        self._generation = spec

    def set_golden_prompts(self, prompts: list[np.ndarray], pad: int) -> None:
        n = max(len(p) for p in prompts)
        ids = np.full((len(prompts), n), pad, dtype=np.int64)
        for i, p in enumerate(prompts):
            ids[i, : len(p)] = p
        (self.root / "golden").mkdir(exist_ok=True)
        save_npz(
            self.root / "golden" / "prompts.npz",
            {"input_ids": ids, "lengths": np.array([len(p) for p in prompts], dtype=np.int64)},
        )
        self._golden = "golden/prompts.npz"

    def add_artifact(
        self,
        name: str,
        source: Path,
        fmt: str,
        precision: str,
        *,
        quantization: str | None,
        metrics: ArtifactMetrics,
        golden_tokens: np.ndarray,
        targets: list[str] | None = None,
    ) -> Artifact:
        """Carry a built artifact: an ONNX Runtime GenAI model folder (``fmt`` "ort-genai":
        ``genai_config.json`` is its path, the other files its ``files``) or a single-file
        ExecuTorch program ("pte": weights, KV cache buffers and sizes inside)."""
        rel = f"artifacts/{name}"
        files: list[FileEntry] = []
        if fmt == "ort-genai":
            shutil.copytree(source, self.root / rel)
            files = [
                self._entry(f"{rel}/{p.name}", "weights" if p.suffix == ".data" else "model")
                for p in sorted((self.root / rel).iterdir())
                if p.is_file() and p.name != "genai_config.json"
            ]
            rel = f"{rel}/genai_config.json"
        elif fmt == "pte":
            (self.root / "artifacts").mkdir(exist_ok=True)
            shutil.copyfile(source, self.root / rel)
        else:
            raise PackageError(f"a generative artifact is 'ort-genai' or 'pte', not {fmt!r}")
        golden_rel = f"golden/{name}.continuations.npz"
        (self.root / "golden").mkdir(exist_ok=True)
        save_npz(self.root / golden_rel, {"tokens": golden_tokens.astype(np.int64)})
        main = self.root / rel
        art = Artifact(
            name=name,
            path=rel,
            format=fmt,
            precision=precision,
            sha256=sha256_file(main),
            size=main.stat().st_size,
            targets=targets or [],
            metrics=metrics,
            golden_outputs=golden_rel,
            quantization=quantization,
            files=files,
        )
        self._artifacts.append(art)
        return art

    def add_failed_export(self, fmt: str, precision: str, reason: str) -> None:
        self._failed.append(ExportFailure(format=fmt, precision=precision, reason=reason))

    def reject(self, item: RejectedArtifact) -> None:
        self._rejected.append(item)

    def manifest(self, metric: MetricSpec) -> Manifest:
        if self._generation is None:
            raise PackageError("a generative package needs set_generation() before build()")
        return Manifest.model_validate(
            {
                **self._fields,
                "artifacts": self._artifacts,
                "failed_exports": self._failed,
                "rejected": self._rejected,
                "files": self._files,
                "generation": self._generation,
                "golden_inputs": self._golden,
                "metric": metric,
            }
        )

    def build(self, out: Path, metric: MetricSpec, signing_key=None) -> tuple[Path, Manifest]:
        manifest = write_package(self.root, self.manifest(metric), out, signing_key=signing_key)
        return out, manifest

    def close(self) -> None:
        self._tmp.cleanup()
