"""Ed25519 keys, canonical JSON and detached signatures.

Used for package manifests and, through ``edgefleet.sdk.protocol``, for fleet commands.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ._errors import EdgefleetError, SignatureError

__all__ = [
    "canonical_json",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "load_public_keys",
    "sign_bytes",
    "verify_bytes",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
]


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no whitespace, UTF-8 (what gets signed)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short stable id of a public key: first 16 hex chars of sha256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(directory: str | Path, name: str = "edgefleet") -> tuple[Path, Path]:
    """Write ``NAME.key`` (PEM PKCS8, mode 0600) and ``NAME.pub`` (PEM) into ``directory``.

    Refuses to overwrite an existing key so a signing key is never lost by accident.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    for p in (priv_path, pub_path):
        if p.exists():
            raise EdgefleetError(f"refusing to overwrite existing key file {p}")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv_path, pub_path


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise SignatureError(f"cannot read Ed25519 private key {path}: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path_or_pem: str | Path | bytes) -> Ed25519PublicKey:
    """Load a PEM public key from a path, or from PEM bytes directly."""
    try:
        data = path_or_pem if isinstance(path_or_pem, bytes) else Path(path_or_pem).read_bytes()
        key = serialization.load_pem_public_key(data)
    except (OSError, ValueError, TypeError) as e:
        raise SignatureError(f"cannot read Ed25519 public key {path_or_pem!r}: {e}") from e
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path_or_pem!r} is not an Ed25519 public key")
    return key


def load_public_keys(paths: list[str | Path]) -> dict[str, Ed25519PublicKey]:
    """Load several public keys into a ``{key_id: key}`` trust store."""
    keys = [load_public_key(p) for p in paths]
    return {key_id(k): k for k in keys}


def sign_bytes(key: Ed25519PrivateKey, data: bytes) -> str:
    """Sign ``data``; return the signature as standard base64."""
    return base64.b64encode(key.sign(data)).decode()


def verify_bytes(key: Ed25519PublicKey, data: bytes, signature_b64: str) -> None:
    """Raise SignatureError unless ``signature_b64`` is a valid signature of ``data``."""
    try:
        sig = base64.b64decode(signature_b64, validate=True)
        key.verify(sig, data)
    except (InvalidSignature, ValueError) as e:
        raise SignatureError("signature does not verify with the trusted key") from e
