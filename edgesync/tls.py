"""TLS for gRPC and the REST API: a lab certificate authority and the credentials built from files.

`edgesync certs --out certs/ --host cloud.example.org --host 10.0.0.5` writes a self-signed CA
(ca.pem, for every edge and API client to trust) and a server key and certificate signed by it
(server.key, server.pem) for those names and addresses. Production deployments bring their own
certificates; the config only names files (security.tls_cert, tls_key on the cloud; cloud.tls_ca
on the edge).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgesync.errors import ConfigError

CA_CERT, SERVER_CERT, SERVER_KEY = "ca.pem", "server.pem", "server.key"
VALID_DAYS = 825  # the longest validity browsers accept for a server certificate


def _name(common: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "EdgeSync lab"), x509.NameAttribute(NameOID.COMMON_NAME, common)]
    )


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def make_lab_certificates(out_dir: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) for hosts (names or IP addresses), written to out_dir."""
    if not hosts:
        raise ConfigError("name at least one host the cloud is reached by (e.g. --host localhost)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / SERVER_KEY).exists():
        raise ConfigError(f"{out_dir / SERVER_KEY} exists; move it away first (edges trust its CA)")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("EdgeSync lab CA"))
        .issuer_name(_name("EdgeSync lab CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (out_dir / CA_CERT).write_bytes(ca.public_bytes(pem))
    (out_dir / SERVER_CERT).write_bytes(cert.public_bytes(pem))
    _write_private(
        out_dir / SERVER_KEY,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return out_dir / CA_CERT, out_dir / SERVER_CERT, out_dir / SERVER_KEY


def read_pem(path: Path, what: str) -> bytes:
    """A PEM file's bytes; ConfigError naming what and the path if it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"the {what} {path} is not a PEM file")
    return data
