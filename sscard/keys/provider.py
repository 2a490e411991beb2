"""The one place keys come from: a key store specification → a SecurityModule.

GlobalPlatformPro style: callers name a provider, never pass keys around.

* ``dev`` — the development key store (published test keys; refused by a
  production profile);
* ``pkcs11:TOKEN-LABEL`` — a PKCS#11 token (SoftHSM2 by default; module path
  from ``SSCARD_PKCS11_MODULE``), user PIN from the passphrase source;
* ``psam:READER`` — the service point's PSAM in that reader (a PC/SC reader
  name, or ``virtual:PATH`` for an emulated PSAM): city keys that never leave it;
* anything else — the path of a software key store file (``sscard keys init``),
  opened with the passphrase source.

``SSCARD_KEYSTORE`` holds the default specification.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from sscard.errors import KeyStoreMissing
from sscard.i18n import _
from sscard.keys import ENV_KEYSTORE
from sscard.keys.dev import check_production, development_module
from sscard.keys.scheme import KeySlot
from sscard.keys.security_module import SecurityModule, SoftwareSecurityModule
from sscard.keys.software_store import SoftwareKeyStore

DEV = "dev"
PKCS11_PREFIX = "pkcs11:"
PSAM_PREFIX = "psam:"


def keystore_spec(explicit: str | None = None) -> str | None:
    """The key store asked for: ``explicit`` or ``$SSCARD_KEYSTORE``."""
    return explicit or os.environ.get(ENV_KEYSTORE) or None


def open_security_module(
    spec: str | None,
    *,
    slots: Iterable[KeySlot],
    production: bool,
    secret: Callable[[str], str],
    city: str | None = None,
) -> SecurityModule:
    """Open the security module named by ``spec`` for a profile's key ``slots``.

    ``secret(label)`` supplies the store passphrase or token PIN when needed
    (hidden prompt, environment or file descriptor: never argv).
    """
    spec = keystore_spec(spec)
    if spec is None:
        raise KeyStoreMissing(
            _("no key store"),
            [
                (
                    "keystore",
                    _("a key store file, pkcs11:TOKEN, psam:READER, or 'dev' (development keys)"),
                )
            ],
        )
    module: SecurityModule
    if spec.startswith(PSAM_PREFIX):
        from sscard.keys.psam_module import PsamSecurityModule, open_psam

        return PsamSecurityModule(open_psam(spec[len(PSAM_PREFIX) :]), city=city)
    if spec == DEV:
        module = development_module(slots)
    elif spec.startswith(PKCS11_PREFIX):
        from sscard.keys.pkcs11_module import Pkcs11SecurityModule, Pkcs11Token

        label = spec[len(PKCS11_PREFIX) :]
        kwargs = {}
        if os.environ.get("SSCARD_PKCS11_MODULE"):
            kwargs["module"] = os.environ["SSCARD_PKCS11_MODULE"]
        token = Pkcs11Token(
            label, secret(_("User PIN of token {label}").format(label=label)), **kwargs
        )
        module = Pkcs11SecurityModule(token, city=city)
    else:
        store = SoftwareKeyStore.open(spec, secret(_("Passphrase for {path}").format(path=spec)))
        module = SoftwareSecurityModule(store, city=city)
    check_production(module, production=production)
    return module
