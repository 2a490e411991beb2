"""TLS contexts for mutual authentication with the exchange platform (regulation art. 15).

Both sides present a certificate issued by the platform CA and verify the
other's; the platform maps the client certificate's subject CN (the service
point id) to a department and its sharing agreement. TLS 1.2 is the minimum.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from sscard.errors import InvalidInput
from sscard.i18n import N_, _


def _load(ctx: ssl.SSLContext, cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    missing = (
        (N_("cannot set up TLS: certificate not found"), cert),
        (N_("cannot set up TLS: private key not found"), key),
        (N_("cannot set up TLS: CA certificate not found"), ca),
    )
    for message, path in missing:
        if not Path(path).is_file():
            raise InvalidInput(_(message), [(str(path), _("no such file"))])
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except ssl.SSLError:
        raise InvalidInput(
            _("cannot set up TLS"), [(str(ca), _("not a PEM CA certificate"))]
        ) from None
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except ssl.SSLError:
        raise InvalidInput(
            _("cannot set up TLS"),
            [
                (
                    str(cert),
                    _("not a PEM certificate matching the private key {key}").format(key=key),
                )
            ],
        ) from None
    return ctx


def server_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """The platform's context: its certificate, and a client certificate is required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return _load(ctx, cert, key, ca)


def client_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """A service point's context: its certificate, and the platform's name is checked."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    return _load(ctx, cert, key, ca)


def common_name(peer_cert: dict[str, Any] | None) -> str | None:
    """The subject CN of a certificate as ``SSLSocket.getpeercert()`` returns it."""
    if not peer_cert:
        return None
    for rdn in peer_cert.get("subject", ()):
        for attr, value in rdn:
            if attr == "commonName":
                return str(value)
    return None
