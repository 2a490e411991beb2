"""A test CA for the exchange platform: CA, server and client certificates (docs/exchange.md).

For development and tests only; a real platform's CA is the information
centre's (regulation art. 5). Private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sscard.errors import InvalidInput
from sscard.exchange.outbox import SERVICE_POINT
from sscard.i18n import _

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Issued:
    """Paths of one certificate and its private key."""

    cert: Path
    key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sscard test exchange"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _builder(
    subject: str, issuer: x509.Name, public: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if not (cert_path.exists() and key_path.exists()):
        return None
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput(
            _("existing CA key is not an EC key"), [(str(key_path), _("unexpected type"))]
        )
    return cert, key


def _new_ca(directory: Path, days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    cert = (
        _builder("sscard test exchange CA", _name("sscard test exchange CA"), public, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(directory / "ca-key.pem", key)
    _write_cert(directory / "ca.pem", cert)
    return cert, key


def _leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    cn: str,
    usage: x509.ObjectIdentifier,
    days: int,
    hosts: tuple[str, ...] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(cn, ca_cert.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def init_ca(
    directory: Path,
    clients: list[str],
    *,
    hosts: tuple[str, ...] = DEFAULT_HOSTS,
    days: int = 365,
) -> dict[str, Issued]:
    """Make (or extend) a test CA in ``directory``.

    Writes ``ca.pem`` / ``ca-key.pem`` (kept when present, so clients can be
    added later), ``server.pem`` / ``server-key.pem`` for ``hosts``, and
    ``CLIENT.pem`` / ``CLIENT-key.pem`` per client (CN = service point id).
    Existing certificates are kept. Returns what exists, by name.
    """
    rule = _("1-64 letters, digits, '.', '_' or '-'")
    bad = [(_("client {name}").format(name=repr(c)), rule) for c in clients]
    bad = [b for b, c in zip(bad, clients, strict=True) if not SERVICE_POINT.match(c)]
    if any(c in ("ca", "server") for c in clients):
        bad.append(("client", _("'ca' and 'server' are reserved names")))
    if bad:
        raise InvalidInput(_("cannot make certificates"), bad)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = _load_ca(directory) or _new_ca(directory, days * 5)
    out = {"ca": Issued(directory / "ca.pem", directory / "ca-key.pem")}
    wanted = [("server", ExtendedKeyUsageOID.SERVER_AUTH, hosts)]
    wanted += [(c, ExtendedKeyUsageOID.CLIENT_AUTH, ()) for c in clients]
    for name, usage, names in wanted:
        issued = Issued(directory / f"{name}.pem", directory / f"{name}-key.pem")
        if not (issued.cert.exists() and issued.key.exists()):
            cn = names[0] if names else name
            cert, key = _leaf(ca, cn, usage, days, tuple(names))
            _write_key(issued.key, key)
            _write_cert(issued.cert, cert)
        out[name] = issued
    return out
