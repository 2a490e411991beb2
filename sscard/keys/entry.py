"""One stored key: reference, version, algorithm and where it sits in the diversification tree.

A store holds roots (``depth`` 0, issuing centre), zone keys (``depth`` =
``levels`` - 1: city-level keys of a service point) or components (dual
control). ``value`` never appears in ``repr`` or in :meth:`KeyEntry.info`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sscard.errors import InvalidInput
from sscard.i18n import _

_REF = re.compile(r"^[A-Z0-9]{2,8}/[A-Z]{2,4}/[0-9A-F]{2}$")


def check_ref(ref: str) -> str:
    """Validate a key reference such as ``SSSE/EAK/01`` (DF / type / hex ID)."""
    if not isinstance(ref, str) or not _REF.match(ref):
        raise InvalidInput(
            _("invalid key reference"), [("ref", _("must look like 'SSSE/EAK/01' (DF/TYPE/ID)"))]
        )
    return ref


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class KeyEntry:
    """A key value with its metadata; compare keys by :attr:`kcv`, never by value."""

    ref: str
    version: int
    algorithm: str
    levels: int
    depth: int
    value: bytes = field(repr=False)
    city: str | None = None

    def __post_init__(self) -> None:
        check_ref(self.ref)
        from sscard.keys.algorithms import check_key  # the ciphers load with the first key

        check_key(self.value, self.algorithm)
        p: list[tuple[str, str]] = []
        if not (isinstance(self.version, int) and 1 <= self.version <= 255):
            p.append(("version", _("must be an integer 1..255")))
        if not (isinstance(self.levels, int) and 0 <= self.levels <= 3):
            p.append(("levels", _("must be an integer 0..3")))
        elif not (isinstance(self.depth, int) and 0 <= self.depth <= self.levels):
            p.append(("depth", _("must be between 0 and levels")))
        if self.depth > 0 and self.city is None:
            p.append(("city", _("a diversified (zone) key must name its city")))
        if p:
            raise InvalidInput(_("invalid key entry {ref}").format(ref=self.ref), p)

    @property
    def kcv(self) -> bytes:
        """Key check value (3 bytes)."""
        from sscard.keys.algorithms import kcv

        return kcv(self.value, algorithm=self.algorithm)

    @property
    def tier(self) -> str:
        """``root``, ``zone`` (city level, one step above the card) or ``card``."""
        if self.depth == 0:
            return "root"
        return "card" if self.depth == self.levels else "zone"

    def info(self) -> dict[str, Any]:
        """Everything but the value, for listings and JSON."""
        return {
            "ref": self.ref,
            "version": self.version,
            "algorithm": self.algorithm,
            "levels": self.levels,
            "depth": self.depth,
            "tier": self.tier,
            "city": self.city,
            "kcv": self.kcv.hex().upper(),
        }

    def __repr__(self) -> str:
        return (
            f"KeyEntry(ref={self.ref!r}, version={self.version}, algorithm={self.algorithm!r}, "
            f"depth={self.depth}/{self.levels}, kcv={self.kcv.hex().upper()}, value=<redacted>)"
        )
