"""Partial packages: a device holds the signed manifest of every artifact but the files of
only the artifact(s) it runs.

``partial.json`` at the package root lists the artifacts present. It is a hint, not a
trust anchor: every present artifact, package file and golden file is still checked
against its sha256 in the signed manifest, and an absent artifact cannot be loaded (a
clear :class:`PackageError` names what is present). Without the marker every artifact
must be present, as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ._errors import PackageError
from ._manifest import Artifact, Manifest

__all__ = ["PARTIAL_NAME", "PackageFile", "files_for", "read_partial", "write_partial"]

PARTIAL_NAME = "partial.json"


@dataclass(frozen=True)
class PackageFile:
    """One file a device needs; ``sha256``/``size`` are None only for golden files of
    packages built before golden files were listed (and hashed) in ``Manifest.files``."""

    path: str
    size: int | None
    sha256: str | None
    role: str


def files_for(manifest: Manifest, artifacts: list[Artifact]) -> list[PackageFile]:
    """Every file a device running ``artifacts`` needs, in a stable order: the artifacts'
    files, their golden outputs, the golden inputs, and the package files (tokenizer,
    configs), except golden outputs that belong to other artifacts."""
    listed = {f.path: f for f in manifest.files}
    others = {
        a.golden_outputs for a in manifest.artifacts if a.golden_outputs and a not in artifacts
    }
    out: dict[str, PackageFile] = {}

    def add(path: str | None, size: int | None, sha: str | None, role: str) -> None:
        if path and path not in out:
            f = listed.get(path)
            out[path] = PackageFile(
                path, f.size if f else size, f.sha256 if f else sha, f.role if f else role
            )

    for a in artifacts:
        add(a.path, a.size, a.sha256, f"artifact:{a.name}")
        for f in a.files:
            add(f.path, f.size, f.sha256, f.role or f"file:{a.name}")
        add(a.golden_outputs, None, None, "golden")
    add(manifest.golden_inputs, None, None, "golden")
    for f in manifest.files:
        if f.path not in others:
            add(f.path, f.size, f.sha256, f.role)
    return list(out.values())


def read_partial(root: Path, manifest: Manifest) -> frozenset[str] | None:
    """Names of the artifacts a partial package holds; None for a whole package."""
    p = root / PARTIAL_NAME
    if not p.is_file():
        return None
    try:
        names = json.loads(p.read_text())["artifacts"]
        assert isinstance(names, list) and all(isinstance(n, str) for n in names)
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise PackageError(f"{root}: {PARTIAL_NAME} is malformed: {e}") from e
    known = {a.name for a in manifest.artifacts}
    unknown = sorted(set(names) - known)
    if unknown:
        raise PackageError(f"{root}: {PARTIAL_NAME} names unknown artifacts {unknown}")
    return frozenset(names)


def write_partial(root: Path, artifacts: list[Artifact]) -> None:
    (root / PARTIAL_NAME).write_text(json.dumps({"artifacts": [a.name for a in artifacts]}))
