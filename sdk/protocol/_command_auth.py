"""Signed commands: the fleet signs, the device verifies (TUF/Uptane-style freshness).

A device accepts a command only if it is signed by a trusted fleet key, addressed to this
device, inside its validity window, not longer-lived than the policy allows, and its nonce
has not been seen before. Nonces are remembered until the command would expire anyway, so
the store stays bounded. Each nonce is stored with the digest of the command that used it:
the same command again (a QoS 1 redelivery) raises :class:`DuplicateCommand`, so the device
can acknowledge it again without running it twice; any other command with that nonce is a
replay.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, TypeVar

from .._errors import SignatureError
from ._command_messages import CommandBase, CommandSignature
from ._errors import CommandRejected, DuplicateCommand

__all__ = [
    "new_nonce",
    "command_fields",
    "command_digest",
    "sign_command",
    "NonceStore",
    "MemoryNonceStore",
    "CommandVerifier",
]

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .._signing import Ed25519PrivateKey, Ed25519PublicKey

C = TypeVar("C", bound=CommandBase)
# .._signing (cryptography, ~5 MB) is imported on first sign/verify, not with the protocol:
# a device comes online before it handles its first command.


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def command_fields(device_id: str, ttl_s: float = 300.0, now: datetime | None = None) -> dict:
    """The common fields of a fresh command: ``DeployCommand(**command_fields(dev), ...)``."""
    now = now or datetime.now(UTC)
    return {
        "command_id": uuid.uuid4().hex,
        "device_id": device_id,
        "nonce": new_nonce(),
        "issued_at": now,
        "expires_at": now + timedelta(seconds=ttl_s),
    }


def sign_command(cmd: C, private_key: Ed25519PrivateKey) -> C:
    """Return ``cmd`` with an Ed25519 signature over its canonical JSON (minus signature)."""
    from .._signing import canonical_json, key_id, sign_bytes

    value = sign_bytes(private_key, canonical_json(cmd.signed_payload()))
    sig = CommandSignature(key_id=key_id(private_key.public_key()), value=value)
    return cmd.model_copy(update={"signature": sig})


def command_digest(cmd: CommandBase) -> str:
    """sha256 of the signed command (canonical JSON including its signature)."""
    from .._signing import canonical_json

    return hashlib.sha256(canonical_json(cmd.model_dump(mode="json"))).hexdigest()


class NonceStore(Protocol):
    def check_and_add(
        self, nonce: str, expires_at: datetime, now: datetime, digest: str = ""
    ) -> bool:
        """Record ``nonce`` (with the digest of its command); return False if it was already
        recorded."""
        ...

    def digest(self, nonce: str) -> str | None:
        """The command digest recorded with ``nonce`` (optional: absent = never duplicate)."""
        ...


@dataclass
class MemoryNonceStore:
    """In-process nonce store (the agent persists its own so replays survive restarts)."""

    _seen: dict[str, datetime] = field(default_factory=dict)
    _digests: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check_and_add(
        self, nonce: str, expires_at: datetime, now: datetime, digest: str = ""
    ) -> bool:
        with self._lock:
            for n in [n for n, exp in self._seen.items() if exp < now]:
                del self._seen[n]
                self._digests.pop(n, None)
            if nonce in self._seen:
                return False
            self._seen[nonce] = expires_at
            self._digests[nonce] = digest
            return True

    def digest(self, nonce: str) -> str | None:
        with self._lock:
            return self._digests.get(nonce)


class CommandVerifier:
    """Verifies commands for one device against trusted fleet keys."""

    def __init__(
        self,
        device_id: str,
        trusted_keys: Iterable[Ed25519PublicKey],
        nonces: NonceStore | None = None,
        *,
        max_clock_skew_s: float = 300.0,
        max_lifetime_s: float = 7 * 86400.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        from .._signing import key_id

        self.device_id = device_id
        self.keys = {key_id(k): k for k in trusted_keys}
        if not self.keys:
            raise SignatureError("a command verifier needs at least one trusted fleet key")
        self.nonces = nonces if nonces is not None else MemoryNonceStore()
        self.skew = timedelta(seconds=max_clock_skew_s)
        self.max_lifetime = timedelta(seconds=max_lifetime_s)
        self.clock = clock

    def verify(self, cmd: C) -> C:
        """Return ``cmd`` if acceptable, else raise :class:`CommandRejected`."""
        sig = cmd.signature
        if sig is None:
            raise CommandRejected("unsigned", f"command {cmd.command_id} is not signed")
        key = self.keys.get(sig.key_id)
        if key is None:
            raise CommandRejected(
                "unknown_key",
                f"command signed by key {sig.key_id}, which this device does not trust",
            )
        from .._signing import canonical_json, verify_bytes

        try:
            verify_bytes(key, canonical_json(cmd.signed_payload()), sig.value)
        except SignatureError as e:
            raise CommandRejected("bad_signature", f"command {cmd.command_id}: {e}") from e
        if cmd.device_id != self.device_id:
            raise CommandRejected(
                "wrong_device",
                f"command {cmd.command_id} is for device {cmd.device_id!r}, not {self.device_id!r}",
            )
        now = self.clock()
        if cmd.expires_at < now:
            raise CommandRejected(
                "expired", f"command {cmd.command_id} expired at {cmd.expires_at.isoformat()}"
            )
        if cmd.issued_at > now + self.skew:
            raise CommandRejected(
                "not_yet_valid",
                f"command {cmd.command_id} issued in the future ({cmd.issued_at.isoformat()})",
            )
        if cmd.expires_at - cmd.issued_at > self.max_lifetime:
            raise CommandRejected(
                "lifetime_too_long",
                f"command {cmd.command_id} is valid for longer than {self.max_lifetime}",
            )
        digest = command_digest(cmd)
        if not self.nonces.check_and_add(cmd.nonce, cmd.expires_at + self.skew, now, digest):
            seen = getattr(self.nonces, "digest", None)
            if seen is not None and seen(cmd.nonce) == digest:
                raise DuplicateCommand(
                    f"command {cmd.command_id} (nonce {cmd.nonce}) was already accepted"
                )
            raise CommandRejected(
                "replayed", f"command {cmd.command_id} reuses nonce {cmd.nonce}: replay refused"
            )
        return cmd
