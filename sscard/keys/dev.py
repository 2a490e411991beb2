"""The development key store: fixed, published test keys (docs/keys.md, "Development keys").

FOR DEVELOPMENT ONLY: the emulated card, the tests and the demo use these keys;
every one of them is printed in docs/keys.md, so a card personalized with them
has no security at all. A production profile refuses them through
:func:`check_production`.

Root of a slot = first 16 bytes of
``SHA-256("sscard development root|" ‖ ref ‖ "|" ‖ version ‖ "|" ‖ algorithm)``
(ref like ``SSSE/EAK/01``, version in decimal); city ``310100``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

from sscard.errors import DevelopmentKeysRefused
from sscard.i18n import N_, _
from sscard.keys.algorithms import card_factors, diversify_path
from sscard.keys.entry import KeyEntry
from sscard.keys.scheme import KeySlot
from sscard.keys.security_module import SecurityModule, SoftwareSecurityModule
from sscard.keys.software_store import SoftwareKeyStore

DEV_CITY = "310100"
BANNER = N_(
    "DEVELOPMENT KEY STORE IN USE: its keys are published in docs/keys.md; "
    "never personalize a real card with it"
)
_log = logging.getLogger("sscard.keys")


def development_root(ref: str, version: int, algorithm: str) -> bytes:
    """The published development root key of one slot."""
    seed = f"sscard development root|{ref}|{version}|{algorithm}".encode("ascii")
    return hashlib.sha256(seed).digest()[:16]


def development_card_key(slot: KeySlot, serial: bytes) -> bytes:
    """The development key one emulated card holds for ``slot`` (e.g. its blank-card TK)."""
    root = development_root(slot.ref, slot.version, slot.algorithm)
    factors = card_factors(DEV_CITY, bytes(serial), slot.levels)
    return diversify_path(root, factors, algorithm=slot.algorithm)


class DevelopmentKeyStore(SoftwareKeyStore):
    """An in-memory root store holding the published development keys; never saved."""

    development = True

    def __init__(self, slots: Iterable[KeySlot]) -> None:
        super().__init__(kind="root", city=None)
        for s in slots:
            self.add(
                KeyEntry(
                    ref=s.ref,
                    version=s.version,
                    algorithm=s.algorithm,
                    levels=s.levels,
                    depth=0,
                    value=development_root(s.ref, s.version, s.algorithm),
                )
            )
        _log.warning(_(BANNER))

    def __repr__(self) -> str:
        return f"DevelopmentKeyStore(keys={len(self.entries())}, DEVELOPMENT ONLY)"

    def save(self) -> None:
        """Refused: development keys are derived, never written to a store file."""
        raise DevelopmentKeysRefused(_("the development key store is never written to a file"))


def development_module(slots: Iterable[KeySlot], *, city: str = DEV_CITY) -> SecurityModule:
    """A security module over the development keys for ``slots`` (logs a loud warning)."""
    return SoftwareSecurityModule(DevelopmentKeyStore(slots), city=city)


def check_production(module: SecurityModule | SoftwareKeyStore, *, production: bool) -> None:
    """Hook for the profile layer: a production profile refuses development keys."""
    if production and getattr(module, "development", False):
        raise DevelopmentKeysRefused(
            _("this profile is a production profile and refuses the development key store")
        ).with_hint(_("use a key store of your own (created by the key ceremony)"))
