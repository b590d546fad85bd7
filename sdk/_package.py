"""Reading, verifying and writing model packages (a directory or a ``.efpkg`` zip)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from ._closing import Closing
from ._errors import PackageError, SignatureError
from ._manifest import Artifact, Manifest, Signature
from ._signing import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    canonical_json,
    key_id,
    load_public_key,
    sign_bytes,
    verify_bytes,
)

__all__ = [
    "MANIFEST_NAME",
    "TrustPolicy",
    "Package",
    "open_package",
    "sign_manifest",
    "verify_manifest",
    "sha256_file",
    "read_manifest",
    "extract_archive",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
# A package is small by design (edge models); these bound what an archive may unpack to.
MAX_ENTRIES = 4096
MAX_UNPACKED_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class TrustPolicy:
    """Which signatures a loader accepts.

    ``require_signature=True`` (the device default) refuses unsigned packages and packages
    signed by a key outside ``trusted_keys``. With ``False`` (the workstation default) an
    unsigned package loads; a signed one is still checked if ``trusted_keys`` are given.
    """

    trusted_keys: tuple[Ed25519PublicKey, ...] = ()
    require_signature: bool = False

    @classmethod
    def device(cls, *keys: Ed25519PublicKey | str | Path) -> TrustPolicy:
        loaded = tuple(k if isinstance(k, Ed25519PublicKey) else load_public_key(k) for k in keys)
        if not loaded:
            raise SignatureError("a device trust policy needs at least one trusted public key")
        return cls(trusted_keys=loaded, require_signature=True)

    @classmethod
    def workstation(cls, *keys: Ed25519PublicKey | str | Path) -> TrustPolicy:
        loaded = tuple(k if isinstance(k, Ed25519PublicKey) else load_public_key(k) for k in keys)
        return cls(trusted_keys=loaded, require_signature=False)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sign_manifest(manifest: Manifest, key: Ed25519PrivateKey) -> Manifest:
    """Return ``manifest`` with an Ed25519 signature over its canonical JSON."""
    sig = sign_bytes(key, canonical_json(manifest.signed_payload()))
    return manifest.model_copy(
        update={"signature": Signature(key_id=key_id(key.public_key()), value=sig)}
    )


def verify_manifest(manifest: Manifest, policy: TrustPolicy) -> str | None:
    """Check the signature against ``policy``; return the signing key id, or None if unsigned
    and allowed. Raises :class:`SignatureError` otherwise."""
    sig = manifest.signature
    if sig is None:
        if policy.require_signature:
            raise SignatureError(f"package {manifest.name} {manifest.version} is not signed")
        return None
    if not policy.trusted_keys:
        return None  # nothing to check against; inspect reports "signed, not verified"
    trusted = {key_id(k): k for k in policy.trusted_keys}
    key = trusted.get(sig.key_id)
    if key is None:
        raise SignatureError(
            f"package signed by key {sig.key_id}, which is not among the trusted keys "
            f"{sorted(trusted)}"
        )
    verify_bytes(key, canonical_json(manifest.signed_payload()), sig.value)
    return sig.key_id


def read_manifest(data: bytes, source: str) -> Manifest:
    try:
        return Manifest.model_validate(json.loads(data))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PackageError(f"{source}: manifest.json is not valid JSON: {e}") from e
    except ValidationError as e:
        raise PackageError(f"{source}: manifest.json is invalid:\n{e}") from e


def _safe_member(info: zipfile.ZipInfo, source: str) -> str:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise PackageError(f"{source}: archive entry {name!r} is a symlink; refused")
    parts = name.rstrip("/").split("/")
    if (
        name.startswith(("/", "\\"))
        or "\\" in name
        or ":" in parts[0]
        or any(p in ("..", "") for p in parts)
    ):
        raise PackageError(f"{source}: archive entry {name!r} escapes the package; refused")
    return name


def extract_archive(archive: Path, dest: Path) -> None:
    """Unpack a ``.efpkg`` into ``dest`` after checking every entry (zip-slip, symlinks,
    duplicates, absurd sizes). ``dest`` must not exist or be empty."""
    source = str(archive)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise PackageError(f"{source}: not a readable .efpkg archive: {e}") from e
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise PackageError(f"{source}: {len(infos)} entries, more than {MAX_ENTRIES}")
        names = [_safe_member(i, source) for i in infos]
        seen: set[str] = set()
        for n in names:
            key = n.rstrip("/").lower()
            if key in seen:
                raise PackageError(f"{source}: duplicate archive entry {n!r}; refused")
            seen.add(key)
        total = sum(i.file_size for i in infos)
        if total > MAX_UNPACKED_BYTES:
            raise PackageError(f"{source}: unpacks to {total} bytes, over {MAX_UNPACKED_BYTES}")
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        for info in infos:
            target = (dest / info.filename).resolve()
            if root not in target.parents and target != root:
                raise PackageError(f"{source}: entry {info.filename!r} escapes the package")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise PackageError(f"{source}: entry {info.filename!r} is corrupt: {e}") from e


@dataclass
class Package(Closing):
    """An opened, verified package. Use :func:`open_package`."""

    root: Path
    manifest: Manifest
    source: Path
    signed_by: str | None = None
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)
    # Names of the artifacts held locally when this is a partial package (see _partial).
    present: frozenset[str] | None = None

    @property
    def digest(self) -> str:
        """sha256 of the canonical manifest (artifact hashes included): the model's identity."""
        return hashlib.sha256(canonical_json(self.manifest.signed_payload())).hexdigest()

    @property
    def signature_state(self) -> str:
        if self.manifest.signature is None:
            return "unsigned"
        if self.signed_by is None:
            return f"signed by {self.manifest.signature.key_id} (not verified: no trusted key)"
        return f"signed by {self.signed_by} (verified)"

    @property
    def partial(self) -> bool:
        return self.present is not None

    def present_artifacts(self) -> list[Artifact]:
        """The artifacts whose files are here and verified (all of them in a whole package)."""
        return [
            a for a in self.manifest.artifacts if self.present is None or a.name in self.present
        ]

    def _check_present(self, a: Artifact) -> None:
        if self.present is not None and a.name not in self.present:
            raise PackageError(
                f"{self.source}: artifact {a.name} is not present in this partial package "
                f"(present: {sorted(self.present)})"
            )

    def artifact_path(self, artifact: Artifact | str) -> Path:
        a = self.manifest.artifact(artifact) if isinstance(artifact, str) else artifact
        self._check_present(a)
        return self.root / a.path

    def _npz(self, rel: str) -> dict[str, np.ndarray]:
        path = self.root / rel
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise PackageError(f"{self.source}: cannot read {rel}: {e}") from e

    def golden_inputs(self) -> dict[str, np.ndarray]:
        if not self.manifest.golden_inputs:
            raise PackageError(f"{self.source}: package has no golden inputs")
        return self._npz(self.manifest.golden_inputs)

    def golden_outputs(self, artifact: Artifact | str) -> dict[str, np.ndarray]:
        a = self.manifest.artifact(artifact) if isinstance(artifact, str) else artifact
        self._check_present(a)
        if not a.golden_outputs:
            raise PackageError(f"{self.source}: artifact {a.name} has no golden outputs")
        return self._npz(a.golden_outputs)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _verify_file(root: Path, rel: str, size: int, sha256: str, what: str, source: str) -> None:
    p = root / rel
    if p.is_symlink():
        raise PackageError(f"{source}: {what} ({rel}) is a symlink; refused")
    if not p.is_file():
        raise PackageError(f"{source}: {what} is missing (expected {rel})")
    found = p.stat().st_size
    if found != size:
        raise PackageError(f"{source}: {what} is corrupt: expected {size} bytes, found {found}")
    digest = sha256_file(p)
    if digest != sha256:
        raise PackageError(f"{source}: {what} is corrupt: expected sha256 {sha256}, found {digest}")


def _verify_artifacts(
    root: Path, manifest: Manifest, source: str, present: frozenset[str] | None
) -> None:
    """Hash every file of the present artifacts (all of them unless ``present`` names a
    partial set), the package files they need, and check the golden files exist."""
    from ._partial import files_for

    held = [a for a in manifest.artifacts if present is None or a.name in present]
    if present is None:
        needed = files_for(manifest, held)
        # a whole package also holds the other artifacts' golden outputs
        needed += [f for f in files_for(manifest, manifest.artifacts) if f not in needed]
    else:
        needed = files_for(manifest, held)
    for f in needed:
        what = (
            f"artifact {f.role.partition(':')[2]}" if f.role.startswith("artifact:")
            else f"golden file {f.path}" if f.role == "golden"
            else f"file {f.path} of {f.role.partition(':')[2]}" if f.role.startswith("file:")
            else f"package file {f.path}"
        )  # fmt: skip
        if f.sha256 is None:  # a golden file of an older package: listed, not hashed
            if not (root / f.path).is_file():
                raise PackageError(f"{source}: golden file {f.path} is missing")
            continue
        _verify_file(root, f.path, f.size, f.sha256, what, source)


def open_package(
    path: str | Path,
    policy: TrustPolicy | None = None,
    *,
    extract_to: str | Path | None = None,
) -> Package:
    """Open a package directory or ``.efpkg`` archive, verify every artifact's sha256 and the
    manifest signature under ``policy`` (workstation default: unsigned allowed).

    A partial package (a device's download: ``partial.json`` names the artifacts it holds)
    verifies the artifacts it holds and the files they need; the others are skipped, are
    not in :meth:`Package.present_artifacts`, and loading one raises :class:`PackageError`.

    An archive is unpacked into ``extract_to`` or a temporary directory owned by the
    returned Package (removed by :meth:`Package.close`).
    """
    policy = policy or TrustPolicy()
    src = Path(path)
    tmp = None
    if src.is_dir():
        root = src
    elif src.is_file():
        if extract_to is None:
            tmp = tempfile.TemporaryDirectory(prefix="edgefleet-pkg-")
            root = Path(tmp.name)
        else:
            root = Path(extract_to)
            if root.exists() and any(root.iterdir()):
                raise PackageError(f"extraction directory {root} is not empty")
        try:
            extract_archive(src, root)
        except BaseException:
            if tmp is not None:
                tmp.cleanup()
            raise
    else:
        raise PackageError(f"no package at {src} (expected a directory or a .efpkg file)")
    try:
        mpath = root / MANIFEST_NAME
        if not mpath.is_file() or mpath.is_symlink():
            raise PackageError(f"{src}: {MANIFEST_NAME} is missing")
        manifest = read_manifest(mpath.read_bytes(), str(src))
        signed_by = verify_manifest(manifest, policy)
        from ._partial import read_partial

        present = read_partial(root, manifest)
        _verify_artifacts(root, manifest, str(src), present)
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    log.debug("opened package %s %s from %s", manifest.name, manifest.version, src)
    return Package(
        root=root, manifest=manifest, source=src, signed_by=signed_by, _tmp=tmp, present=present
    )


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    path.write_bytes(buf.getvalue())
