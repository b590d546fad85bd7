"""What the device trusts: the fleet keys that sign commands (with the nonce store that
refuses replays) and the keys that sign packages. Keys are parsed on first use, so the
agent comes online without importing cryptography."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from edgefleet.sdk import ConfigError
from edgefleet.sdk.protocol import CommandVerifier

from ._journal import FileNonceStore
from ._settings import AgentSettings

if TYPE_CHECKING:
    from edgefleet.sdk import TrustPolicy

__all__ = ["DeviceTrust"]

log = logging.getLogger(__name__)


class DeviceTrust:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        for key in [*settings.fleet_keys, *settings.trusted_package_keys]:
            if not key.is_file():  # fail at start, as when the keys were parsed here
                raise ConfigError(f"public key {key} does not exist")

    @functools.cached_property
    def verifier(self) -> CommandVerifier | None:
        """The command verifier; None when no fleet key is configured."""
        from edgefleet.sdk import load_public_key

        keys = [load_public_key(p) for p in self.settings.fleet_keys]
        store = FileNonceStore(self.settings.data_dir / "nonces.json")
        return CommandVerifier(self.settings.device_id, keys, store) if keys else None

    @functools.cached_property
    def package_keys(self) -> list:
        from edgefleet.sdk import load_public_key

        return [load_public_key(p) for p in self.settings.trusted_package_keys]

    def policy(self) -> TrustPolicy:
        from edgefleet.sdk import TrustPolicy

        if self.package_keys:
            return TrustPolicy.device(*self.package_keys)
        return TrustPolicy()  # no key configured: unsigned packages only (development)
