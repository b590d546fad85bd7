"""The agent over TLS with username/password against a Mosquitto that requires both."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


def _certs(d):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def pem_key(k, path):
        path.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))  # fmt: skip

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("test-ca")).issuer_name(name("test-ca"))
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(
            "127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem_key(key, d / "server.key")
    return d / "ca.pem"


def test_tls_and_password(make_agent):
    # Mosquitto started as root drops to its own user before reading the password file, so
    # these files live in a directory it can read (pytest's tmp dirs are 0700).
    conf_dir = Path(tempfile.mkdtemp(prefix="ef-tls-"))
    conf_dir.chmod(0o755)
    ca = _certs(conf_dir)
    pw = conf_dir / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "pi-user", "s3cret"], check=True)
    for f in conf_dir.iterdir():
        f.chmod(0o644)
    broker = Mosquitto(
        extra_conf=[f"cafile {ca}", f"certfile {conf_dir / 'server.pem'}",
                    f"keyfile {conf_dir / 'server.key'}", f"password_file {pw}",
                    "allow_anonymous false"],
    ).start()  # fmt: skip
    try:

        class TLS:
            url = f"mqtts://127.0.0.1:{broker.port}"

        agent = make_agent(install=None, broker=TLS, tls_ca=ca, username="pi-user",
                           password="s3cret", local_endpoint=None)  # fmt: skip
        assert agent.connected.is_set()
        bad = make_agent(install=None, broker=TLS, tls_ca=ca, username="pi-user",
                         password="wrong", local_endpoint=None, wait_online=False)  # fmt: skip
        # Refused credentials are retried with growing backoff, not hammered.
        wait_until(
            lambda: bad.link.backoff.ceiling > bad.link.min_delay, 10, what="a second refusal"
        )
        assert not bad.connected.is_set()
        assert agent.connected.is_set()  # the good one is unaffected
        # Stop the agents before their broker, so none is mid-handshake when it goes.
        bad.stop(graceful=False)
        agent.stop(graceful=True)
    finally:
        broker.stop()
        shutil.rmtree(conf_dir, ignore_errors=True)
