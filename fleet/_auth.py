"""API and device tokens: random secrets, stored as Argon2id hashes (argon2-cffi).

A token looks like ``eft_<id>_<secret>``: the id finds the row, the secret is checked
against the stored hash. Argon2 is deliberately slow, so a verified token is remembered
in memory (keyed by its sha256) for a short time; revocation clears that memory.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ._errors import AuthError

__all__ = [
    "ROLES",
    "Principal",
    "TokenCache",
    "check_static_token",
    "hash_secret",
    "new_token",
    "parse_token",
    "role_allows",
    "verify_secret",
]

log = logging.getLogger(__name__)

ROLES = ("viewer", "operator", "admin")
# Tokens are 160-bit random, so modest Argon2 cost is enough; keeps API latency low.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_CACHE_TTL_S = 60.0


@dataclass(frozen=True)
class Principal:
    kind: str  # "api" or "device"
    id: str
    role: str


def role_allows(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def new_token(prefix: str = "eft") -> tuple[str, str, str]:
    """Return (token id, full token, secret)."""
    tid = secrets.token_hex(8)
    secret = secrets.token_urlsafe(20)
    return tid, f"{prefix}_{tid}_{secret}", secret


def parse_token(token: str, prefix: str = "eft") -> tuple[str, str]:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != prefix or not parts[1] or not parts[2]:
        raise AuthError(f"malformed token: expected '{prefix}_<id>_<secret>'")
    return parts[1], parts[2]


def hash_secret(secret: str) -> str:
    return _HASHER.hash(secret)


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(20))


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    """``stored_hash`` None (unknown id, revoked token): an Argon2 check against a dummy
    hash all the same, so a refusal costs the same whatever the reason (no id probing)."""
    try:
        return _HASHER.verify(stored_hash or _dummy_hash(), secret) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


class TokenCache:
    """Remembers recently verified tokens so Argon2 runs once per token per minute."""

    def __init__(self, ttl_s: float = _CACHE_TTL_S, max_entries: int = 10_000) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._data: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def get(self, token: str) -> Principal | None:
        with self._lock:
            hit = self._data.get(self._key(token))
            if hit is None or hit[0] < time.monotonic():
                return None
            return hit[1]

    def put(self, token: str, principal: Principal) -> None:
        with self._lock:
            if len(self._data) >= self._max:
                self._data.clear()
            self._data[self._key(token)] = (time.monotonic() + self._ttl, principal)

    def forget(self, principal_id: str) -> None:
        with self._lock:
            for k in [k for k, (_, p) in self._data.items() if p.id == principal_id]:
                del self._data[k]


def check_static_token(expected: str, creds, what: str) -> None:
    """``creds`` (HTTP Bearer credentials or None) must carry ``expected``; AuthError if not.
    Compared in constant time."""
    got = creds.credentials if creds is not None else ""
    if not hmac.compare_digest(got.encode(), expected.encode()):
        raise AuthError(f"the {what} endpoint needs 'Authorization: Bearer <{what} token>'")
