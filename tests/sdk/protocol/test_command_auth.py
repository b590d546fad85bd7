import json
from datetime import UTC, datetime, timedelta

import pytest
from edgefleet.sdk import generate_keypair, load_private_key, load_public_key
from edgefleet.sdk import protocol as p


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmdkeys")
    priv, pub = generate_keypair(d, "fleet")
    opriv, _ = generate_keypair(d, "other")
    return load_private_key(priv), load_public_key(pub), load_private_key(opriv)


def _deploy(dev="dev-1", ttl=60.0, now=None):
    return p.DeployCommand(
        **p.command_fields(dev, ttl_s=ttl, now=now),
        deployment_id="dep-1",
        package_name="digits",
        package_version="1.0.0",
        artifact_url="http://127.0.0.1:1/a.efpkg",
        sha256="0" * 64,
        size=10,
        manifest_signature=p.ManifestSignature(key_id="k", value="v"),
    )


def test_signed_command_survives_the_wire_and_verifies(keys):
    priv, pub, _ = keys
    cmd = p.sign_command(_deploy(), priv)
    got = p.decode(p.cmd_topic("dev-1"), p.encode(cmd))
    assert p.CommandVerifier("dev-1", [pub]).verify(got) == cmd


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda c: c.model_copy(update={"signature": None}), "unsigned"),
        (lambda c: c.model_copy(update={"sha256": "1" * 64}), "bad_signature"),
        (lambda c: c.model_copy(update={"artifact_url": "http://evil/x"}), "bad_signature"),
    ],
)
def test_tampered_or_unsigned_refused(keys, mutate, reason):
    priv, pub, _ = keys
    cmd = mutate(p.sign_command(_deploy(), priv))
    with pytest.raises(p.CommandRejected) as e:
        p.CommandVerifier("dev-1", [pub]).verify(cmd)
    assert e.value.reason == reason


def test_untrusted_key_refused(keys):
    _, pub, other = keys
    with pytest.raises(p.CommandRejected) as e:
        p.CommandVerifier("dev-1", [pub]).verify(p.sign_command(_deploy(), other))
    assert e.value.reason == "unknown_key"


def test_other_device_refused(keys):
    priv, pub, _ = keys
    with pytest.raises(p.CommandRejected) as e:
        p.CommandVerifier("dev-2", [pub]).verify(p.sign_command(_deploy("dev-1"), priv))
    assert e.value.reason == "wrong_device"


def test_expired_future_and_long_lived_refused(keys):
    priv, pub, _ = keys
    v = p.CommandVerifier("dev-1", [pub], max_lifetime_s=3600)
    old = datetime.now(UTC) - timedelta(hours=1)
    cases = [
        (_deploy(now=old, ttl=60), "expired"),
        (_deploy(now=datetime.now(UTC) + timedelta(hours=1)), "not_yet_valid"),
        (_deploy(ttl=7200), "lifetime_too_long"),
    ]
    for cmd, reason in cases:
        with pytest.raises(p.CommandRejected) as e:
            v.verify(p.sign_command(cmd, priv))
        assert e.value.reason == reason


def test_replay_refused_and_nonce_forgotten_after_expiry(keys):
    priv, pub, _ = keys
    now = [datetime.now(UTC)]
    v = p.CommandVerifier("dev-1", [pub], clock=lambda: now[0], max_clock_skew_s=0)
    cmd = p.sign_command(_deploy(ttl=60, now=now[0]), priv)
    v.verify(cmd)
    # The same signed command again (QoS 1 redelivery): a duplicate, still a CommandRejected
    # "replayed" for receivers that do not tell duplicates apart.
    with pytest.raises(p.DuplicateCommand) as e:
        v.verify(p.parse_message(p.encode(cmd)))
    assert e.value.reason == "replayed"
    # The same nonce in another (validly signed) command is a real replay.
    other = p.sign_command(cmd.model_copy(update={"deployment_id": "other-dep"}), priv)
    with pytest.raises(p.CommandRejected) as e:
        v.verify(other)
    assert e.value.reason == "replayed" and not isinstance(e.value, p.DuplicateCommand)
    # After expiry it is refused as expired, and the store has pruned the nonce.
    now[0] += timedelta(seconds=120)
    with pytest.raises(p.CommandRejected) as e:
        v.verify(cmd)
    assert e.value.reason == "expired"
    v.nonces.check_and_add("x" * 16, now[0], now[0])
    assert cmd.nonce not in v.nonces._seen


def test_expiry_before_issue_is_malformed(keys):
    data = json.loads(p.encode(_deploy()))
    data["expires_at"] = data["issued_at"]
    with pytest.raises(p.ProtocolError, match="expires_at must be after issued_at"):
        p.decode(p.cmd_topic("dev-1"), json.dumps(data))
