"""The key scheme as data: which keys exist in which DF (docs/card.md, docs/keys.md).

A :class:`KeySlot` names one key on the card by DF, type and ID, with its
version, algorithm, number of diversification levels below the root and error
limit. The card profile (``sscard.layout``) carries the slots; this module
validates them and answers lookups. Key types and algorithms are the enums of
:mod:`sscard.vocab`; a slot built from strings holds the members.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sscard.errors import InvalidInput
from sscard.i18n import _
from sscard.vocab import Algorithm, KeyType

KEY_TYPES: dict[str, str] = {t.value: t.description for t in KeyType}
ALGORITHMS = tuple(a.value for a in Algorithm)
_FIELDS = {"df", "type", "id", "version", "algorithm", "levels", "error_limit"}


@dataclass(frozen=True, slots=True)
class KeySlot:
    """One key on the card: where it lives and how it is derived."""

    df: str
    type: KeyType
    id: int
    version: int
    algorithm: Algorithm
    levels: int = 3
    error_limit: int = 15

    def __post_init__(self) -> None:
        # Strings (profile JSON, key stores) become the enum members; unknown ones
        # stay as they are for check() to report.
        if isinstance(self.type, str) and self.type in KEY_TYPES:
            object.__setattr__(self, "type", KeyType(self.type))
        if isinstance(self.algorithm, str) and self.algorithm in ALGORITHMS:
            object.__setattr__(self, "algorithm", Algorithm(self.algorithm))

    @property
    def ref(self) -> str:
        """Stable reference, e.g. ``SSSE/EAK/01``."""
        return f"{self.df}/{self.type}/{self.id:02X}"

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "key") -> KeySlot:
        """Build a slot from profile data, reporting every problem with its field path."""
        problems: list[tuple[str, str]] = []
        unknown = sorted(set(data) - _FIELDS)
        for name in unknown:
            problems.append((f"{where}.{name}", _("unknown field")))
        for name in ("df", "type", "id", "version", "algorithm"):
            if name not in data:
                problems.append((f"{where}.{name}", _("missing")))
        if problems:
            raise InvalidInput(_("invalid key slot"), problems)
        slot = cls(
            df=data["df"],
            type=data["type"],
            id=data["id"],
            version=data["version"],
            algorithm=data["algorithm"],
            levels=data.get("levels", 3),
            error_limit=data.get("error_limit", 15),
        )
        slot.check(where)
        return slot

    def check(self, where: str = "key") -> None:
        """Raise :class:`InvalidInput` listing every out-of-range field."""
        p: list[tuple[str, str]] = []
        if not isinstance(self.df, str) or not self.df:
            p.append((f"{where}.df", _("must be a DF name such as 'SSSE' or 'DF01'")))
        if self.type not in KEY_TYPES:
            p.append(
                (
                    f"{where}.type",
                    _("must be one of {choices}").format(choices=", ".join(KEY_TYPES)),
                )
            )
        if not _int_in(self.id, 0, 0x0F):
            p.append((f"{where}.id", _("must be an integer 0..15")))
        if not _int_in(self.version, 1, 255):
            p.append((f"{where}.version", _("must be an integer 1..255")))
        if self.algorithm not in ALGORITHMS:
            p.append(
                (
                    f"{where}.algorithm",
                    _("must be one of {choices}").format(choices=", ".join(ALGORITHMS)),
                )
            )
        if not _int_in(self.levels, 0, 3):
            p.append((f"{where}.levels", _("must be an integer 0..3 (diversification levels)")))
        if not _int_in(self.error_limit, 1, 15):
            p.append((f"{where}.error_limit", _("must be an integer 1..15")))
        if p:
            raise InvalidInput(_("invalid key slot"), p)


@dataclass(frozen=True, slots=True)
class KeyScheme:
    """All key slots of a card profile; (df, type, id) is unique."""

    slots: tuple[KeySlot, ...]

    def __post_init__(self) -> None:
        seen: set[tuple[str, str, int]] = set()
        for slot in self.slots:
            key = (slot.df, slot.type, slot.id)
            if key in seen:
                raise InvalidInput(_("invalid key scheme"), [(slot.ref, _("defined twice"))])
            seen.add(key)

    @classmethod
    def from_data(cls, items: Iterable[Mapping[str, Any]]) -> KeyScheme:
        """Build and validate a scheme from a list of slot mappings."""
        return cls(tuple(KeySlot.from_data(d, f"keys[{i}]") for i, d in enumerate(items)))

    def find(self, df: str, type: KeyType | str, id: int) -> KeySlot:
        """The slot for (df, type, id); :class:`KeyError` naming the reference if absent."""
        for slot in self.slots:
            if (slot.df, slot.type, slot.id) == (df, type, id):
                return slot
        raise KeyError(f"{df}/{type}/{id:02X}")

    def in_df(self, df: str) -> tuple[KeySlot, ...]:
        """The slots of one DF, in profile order."""
        return tuple(s for s in self.slots if s.df == df)


def _int_in(value: object, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
