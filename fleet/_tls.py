"""TLS for MQTT: the fleet's client context, and a small CA for ``broker-config --tls``.

The CA signs the broker's server certificate (names and IPs devices use to reach it) and,
optionally, one client certificate per device (CN = device id). Keys are EC P-256: small,
fast on a board, supported by every TLS stack Mosquitto and paho use.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from edgefleet.sdk import ConfigError
from edgefleet.sdk.protocol import validate_device_id

__all__ = ["TlsFiles", "client_context", "ensure_ca", "issue_certificate"]

log = logging.getLogger(__name__)

_DAYS_CA = 3650
_DAYS_LEAF = 825  # the longest lifetime clients such as browsers and Apple stacks accept


def client_context(
    ca_file: Path | None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A verifying client context: the broker's certificate must chain to ``ca_file`` (the
    system store when None) and name the host; a client certificate when given."""
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if cert_file:
            ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load the MQTT TLS files ({ca_file}, {cert_file}): {e}") from e
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@dataclass(frozen=True)
class TlsFiles:
    """Where ``ensure_ca`` / ``issue_certificate`` wrote their PEM files."""

    ca_cert: Path
    cert: Path
    key: Path


def _write_key(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    from ._mosquitto import write_atomic

    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(path, pem.decode(), 0o600)


def _name(cn: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgefleet"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def ensure_ca(directory: Path) -> TlsFiles:
    """The fleet's CA in ``directory`` (``ca.crt``, ``ca.key``), created once."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from ._mosquitto import write_atomic

    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() and key_path.exists():
        return TlsFiles(cert_path, cert_path, key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = _name("edgefleet fleet CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_DAYS_CA))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM).decode(), 0o644)
    log.info("created the fleet's MQTT CA in %s", directory)
    return TlsFiles(cert_path, cert_path, key_path)


def issue_certificate(
    ca: TlsFiles, directory: Path, cn: str, *, hosts: list[str] | None = None
) -> TlsFiles:
    """A certificate signed by ``ca``: a server certificate for ``hosts`` (DNS names or
    IPs), else a client certificate whose CN is a device id. Written as ``<cn>.crt/.key``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from ._mosquitto import write_atomic

    if hosts is None:
        validate_device_id(cn)  # becomes a file name and, on the broker, the username
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_DAYS_LEAF))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if hosts is not None:
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        usage = ExtendedKeyUsageOID.SERVER_AUTH
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{cn}.crt", directory / f"{cn}.key"
    _write_key(key_path, key)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM).decode(), 0o644)
    return TlsFiles(ca.ca_cert, cert_path, key_path)
