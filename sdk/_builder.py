"""Writing model packages: collect artifacts and golden data, sign, emit dir or ``.efpkg``."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ._closing import Closing
from ._errors import PackageError
from ._manifest import (
    Artifact,
    ArtifactFormat,
    ArtifactMetrics,
    ExportFailure,
    FileEntry,
    Manifest,
    MetricSpec,
    Precision,
    Preprocessing,
    RejectedArtifact,
    TensorSpec,
)
from ._package import MANIFEST_NAME, save_npz, sha256_file, sign_manifest
from ._signing import Ed25519PrivateKey

__all__ = ["PackageBuilder", "write_archive", "write_package"]

log = logging.getLogger(__name__)

_EXT = {"onnx": ".onnx", "tflite": ".tflite", "pte": ".pte", "pt2": ".pt2", "torchscript": ".pt"}
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_archive(src_dir: Path, out: Path) -> Path:
    """Zip ``src_dir`` deterministically (sorted entries, fixed times) into ``out``,
    atomically (write to a temp file, fsync, rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".efpkg", dir=out.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp_name, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(src_dir.rglob("*")):
                if p.is_file():
                    info = zipfile.ZipInfo(p.relative_to(src_dir).as_posix(), _ZIP_EPOCH)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    with open(p, "rb") as f, zf.open(info, "w") as dst:
                        shutil.copyfileobj(f, dst, 1 << 20)
        with open(tmp_name, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return out


class PackageBuilder(Closing):
    """Assemble a package.

    >>> b = PackageBuilder("digits", "1.0.0", inputs=[...], outputs=[...])
    >>> b.set_golden_inputs({"input": x})
    >>> b.add_artifact("model.onnx", format="onnx", precision="fp32", golden_outputs={...})
    >>> b.build("digits.efpkg", signing_key=key)
    """

    def __init__(
        self,
        name: str,
        version: str,
        *,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        task: str = "classification",
        labels: Sequence[str] = (),
        preprocessing: Preprocessing | None = None,
        description: str = "",
        recipe_digest: str | None = None,
    ) -> None:
        self._work = tempfile.TemporaryDirectory(prefix="edgefleet-build-")
        self.root = Path(self._work.name)
        self._fields = dict(
            name=name,
            version=version,
            task=task,
            labels=list(labels),
            inputs=list(inputs),
            outputs=list(outputs),
            preprocessing=preprocessing or Preprocessing(),
            description=description,
            recipe_digest=recipe_digest,
        )
        # Validate the fixed fields now so errors name the field before any export work.
        Manifest.model_validate(self._fields)
        self._artifacts: list[Artifact] = []
        self._failures: list[ExportFailure] = []
        self._golden_inputs: str | None = None
        self._files: list[FileEntry] = []
        self._rejected: list[RejectedArtifact] = []
        self._extra: dict = {}

    def set_golden_inputs(self, arrays: Mapping[str, np.ndarray]) -> None:
        expected = {s.name for s in self._fields["inputs"]}
        if set(arrays) != expected:
            raise PackageError(f"golden inputs must be {sorted(expected)}, got {sorted(arrays)}")
        (self.root / "golden").mkdir(exist_ok=True)
        save_npz(self.root / "golden" / "inputs.npz", arrays)
        self._golden_inputs = "golden/inputs.npz"

    def add_artifact(
        self,
        file: str | Path,
        *,
        format: ArtifactFormat,
        precision: Precision,
        name: str | None = None,
        targets: Sequence[str] = (),
        fixed_batch: int | None = None,
        metrics: ArtifactMetrics | None = None,
        golden_outputs: Mapping[str, np.ndarray] | None = None,
        golden_atol: float = 1e-4,
        golden_rtol: float = 1e-3,
        quantization: str | None = None,
        input_shapes: Mapping[str, Sequence[int | str]] | None = None,
        bucket_group: str | None = None,
    ) -> Artifact:
        file = _existing(file, "artifact")
        name = name or f"model.{precision}{_EXT[format]}"
        _once(name, [a.name for a in self._artifacts], "artifact")
        rel = f"artifacts/{name}"
        (self.root / "artifacts").mkdir(exist_ok=True)
        shutil.copyfile(file, self.root / rel)
        golden_rel = None
        if golden_outputs is not None:
            (self.root / "golden").mkdir(exist_ok=True)
            golden_rel = f"golden/{name}.outputs.npz"
            save_npz(self.root / golden_rel, golden_outputs)
        art = Artifact(
            name=name,
            path=rel,
            format=format,
            precision=precision,
            sha256=sha256_file(self.root / rel),
            size=(self.root / rel).stat().st_size,
            targets=list(targets),
            fixed_batch=fixed_batch,
            metrics=metrics,
            golden_outputs=golden_rel,
            golden_atol=golden_atol,
            golden_rtol=golden_rtol,
            quantization=quantization,
            input_shapes=None
            if input_shapes is None
            else {k: list(v) for k, v in input_shapes.items()},
            bucket_group=bucket_group,
        )
        self._artifacts.append(art)
        return art

    def add_file(self, file: str | Path, *, role: str = "", path: str | None = None) -> FileEntry:
        """Carry ``file`` in the package at ``path`` (default ``files/<name>``), hashed and
        signed like artifacts (``Manifest.files``): tokenizers, configs."""
        file = _existing(file, "package")
        rel = path or f"files/{file.name}"
        _once(rel, [f.path for f in self._files], "package file")
        dest = self.root / rel
        FileEntry(path=rel, sha256="0" * 64, size=0)  # validates the path before writing
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, dest)
        entry = FileEntry(path=rel, sha256=sha256_file(dest), size=dest.stat().st_size, role=role)
        self._files.append(entry)
        return entry

    def reject(self, rejected: RejectedArtifact) -> None:
        """List an artifact the accuracy gate kept out (``Manifest.rejected``)."""
        self._rejected.append(rejected)

    def set_gate(self, metric: MetricSpec | None = None,
                 pad_values: Mapping[str, float] | None = None) -> None:  # fmt: skip
        """The accuracy gate (``Manifest.metric``) and bucket pad values (``pad_values``)."""
        if metric is not None:
            self._extra["metric"] = metric
        if pad_values:
            self._extra["pad_values"] = {k: float(v) for k, v in pad_values.items()}

    def add_failed_export(self, format: ArtifactFormat, precision: Precision, reason: str) -> None:
        self._failures.append(ExportFailure(format=format, precision=precision, reason=reason))

    def manifest(self) -> Manifest:
        # Golden files are listed with their hashes so a device that downloads file by file
        # checks them against the signed manifest too.
        golden = [self._golden_inputs, *(a.golden_outputs for a in self._artifacts)]
        files = list(self._files) + [
            FileEntry(
                path=rel, sha256=sha256_file(self.root / rel),
                size=(self.root / rel).stat().st_size, role="golden",
            )
            for rel in golden if rel
        ]  # fmt: skip
        return Manifest.model_validate(
            {
                **self._fields,
                "artifacts": self._artifacts,
                "failed_exports": self._failures,
                "golden_inputs": self._golden_inputs,
                "files": files,
                "rejected": self._rejected,
                **self._extra,
            }
        )

    def build(
        self,
        out: str | Path,
        *,
        signing_key: Ed25519PrivateKey | None = None,
        archive: bool | None = None,
    ) -> Path:
        """Write the package to ``out``: a ``.efpkg`` archive when ``out`` ends with
        ``.efpkg`` (or ``archive=True``), else a directory. Returns the path."""
        out = Path(out)
        write_package(self.root, self.manifest(), out, signing_key=signing_key, archive=archive)
        return out

    def close(self) -> None:
        self._work.cleanup()


def _existing(file: str | Path, what: str) -> Path:
    file = Path(file)
    if not file.is_file():
        raise PackageError(f"{what} file {file} does not exist")
    return file


def _once(key: str, taken: list[str], what: str) -> None:
    if key in taken:
        raise PackageError(f"{what} {key!r} added twice")


def write_package(
    root: Path,
    manifest: Manifest,
    out: Path,
    *,
    signing_key: Ed25519PrivateKey | None = None,
    archive: bool | None = None,
) -> Manifest:
    """Sign ``manifest`` (when given a key), write it into the staged package ``root`` and
    the package to ``out``: a ``.efpkg`` archive when ``out`` ends with ``.efpkg`` (or
    ``archive=True``), else a directory; never over an existing one. The written manifest."""
    archive = out.suffix == ".efpkg" if archive is None else archive
    if signing_key is not None:
        manifest = sign_manifest(manifest, signing_key)
    (root / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2))
    if archive:
        write_archive(root, out)
    else:
        if out.exists():
            raise PackageError(f"{out} already exists; refusing to overwrite a package")
        shutil.copytree(root, out)
    log.info("wrote package %s %s -> %s", manifest.name, manifest.version, out)
    return manifest
