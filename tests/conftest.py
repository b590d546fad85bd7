"""Session-wide fixtures: a real Mosquitto broker, signing keys."""

from __future__ import annotations

import pytest

from tests.support.mosquitto import Mosquitto


@pytest.fixture(scope="session")
def mosquitto():
    """One real Mosquitto for the session (tests that stop a broker start their own)."""
    with Mosquitto() as broker:
        yield broker


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory):
    """(private key path, public key path) of a fresh Ed25519 pair."""
    from edgefleet.sdk import generate_keypair

    return generate_keypair(tmp_path_factory.mktemp("keys"))
