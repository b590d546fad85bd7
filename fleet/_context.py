"""What every fleet component shares: settings, database, metrics, keys, a publisher."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edgefleet.sdk import generate_keypair, load_private_key
from edgefleet.sdk._signing import Ed25519PrivateKey
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from ._auth import TokenCache
from ._prometheus import Metrics
from ._settings import FleetSettings

__all__ = ["Context", "Publisher", "load_or_create_signing_key"]

log = logging.getLogger(__name__)

# publish(topic, payload bytes, qos, retain)
Publisher = Callable[[str, bytes, int, bool], None]


def _no_publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
    log.debug("MQTT disabled; not publishing to %s", topic)


@dataclass
class Context:
    settings: FleetSettings
    engine: Engine
    Session: sessionmaker
    metrics: Metrics
    signing_key: Ed25519PrivateKey
    ReadSession: sessionmaker  # never writes; on SQLite it does not queue behind writers
    tokens: TokenCache = field(default_factory=TokenCache)
    publish: Publisher = _no_publish
    clock: Callable[[], float] = time.time

    @property
    def read_engine(self) -> Engine:
        """The engine with the read-only option (deferred transactions on SQLite)."""
        return self.ReadSession.kw["bind"]


def load_or_create_signing_key(settings: FleetSettings) -> Ed25519PrivateKey:
    """The fleet's command-signing key: the configured one, else ``data_dir/keys/fleet.key``
    (created on first start; devices trust its ``.pub``)."""
    if settings.signing_key is not None:
        return load_private_key(settings.signing_key)
    keydir = settings.data_dir / "keys"
    if not (keydir / "fleet.key").exists():
        generate_keypair(keydir, "fleet")
        log.warning("generated fleet command-signing key %s", keydir / "fleet.key")
    return load_private_key(keydir / "fleet.key")
