"""Key ceremony operations as library functions (docs/keys.md, "Key ceremony").

Generate roots, rotate to a new version, split a key into XOR components for
dual control and combine them back, derive city-level (zone) keys for one
service point. The CLI (``sscard keys ...``) only prompts and prints.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence

from sscard.errors import InvalidInput
from sscard.i18n import N_, _
from sscard.keys.algorithms import card_factors, constant_time_equal, diversify_path, kcv, xor
from sscard.keys.entry import KeyEntry
from sscard.keys.scheme import KeySlot
from sscard.vocab import KeyType


def generate_root(slot: KeySlot, version: int | None = None) -> KeyEntry:
    """A new random root for ``slot`` (at ``version``, default the slot's)."""
    return KeyEntry(
        ref=slot.ref,
        version=slot.version if version is None else version,
        algorithm=slot.algorithm,
        levels=slot.levels,
        depth=0,
        value=secrets.token_bytes(16),
    )


def rotate(entry: KeyEntry, version: int | None = None) -> KeyEntry:
    """A new random root beside ``entry`` (default version: ``entry.version + 1``)."""
    new = entry.version + 1 if version is None else version
    if new == entry.version:
        raise InvalidInput(_("same version"), [("version", _("must differ from the current one"))])
    if entry.depth != 0:
        raise InvalidInput(_("not a root"), [("ref", _("only roots are rotated; re-export zones"))])
    return KeyEntry(entry.ref, new, entry.algorithm, entry.levels, 0, secrets.token_bytes(16))


def split(entry: KeyEntry, parts: int) -> list[KeyEntry]:
    """``parts`` (≥ 2) random components whose XOR is ``entry``; each has its own KCV."""
    if not 2 <= parts <= 9:
        raise InvalidInput(_("wrong number of components"), [("parts", _("must be 2..9"))])
    comps = [secrets.token_bytes(16) for _i in range(parts - 1)]
    last = entry.value
    for c in comps:
        last = xor(last, c)
    comps.append(last)
    return [
        KeyEntry(
            entry.ref, entry.version, entry.algorithm, entry.levels, entry.depth, c, entry.city
        )
        for c in comps
    ]


def combine(components: Sequence[KeyEntry]) -> KeyEntry:
    """XOR ≥ 2 components of the same key back into the key."""
    if len(components) < 2:
        raise InvalidInput(_("too few components"), [("components", _("at least 2 are needed"))])
    first = components[0]
    value = first.value
    for c in components[1:]:
        same = (c.ref, c.version, c.algorithm, c.levels, c.depth, c.city) == (
            first.ref,
            first.version,
            first.algorithm,
            first.levels,
            first.depth,
            first.city,
        )
        if not same:
            raise InvalidInput(
                _("components differ"), [("components", _("not parts of the same key"))]
            )
        value = xor(value, c.value)
    return KeyEntry(
        first.ref, first.version, first.algorithm, first.levels, first.depth, value, first.city
    )


def parse_hex(text: str, length: int, *, field: str, what: str) -> bytes:
    """Exactly ``length`` bytes typed as hex digits (spaces allowed), else :class:`InvalidInput`.

    The error names ``field`` and never repeats what was typed (it may be a key component).
    ``what`` is shown translated: mark it with ``N_()`` where it is written.
    """
    try:
        value = bytes.fromhex("".join(text.split()))
    except ValueError:
        value = b""
    if len(value) != length:
        raise InvalidInput(
            _("not a {what}").format(what=_(what)),
            [
                (
                    field,
                    _("must be {digits} hexadecimal digits ({length} bytes)").format(
                        digits=2 * length, length=length
                    ),
                )
            ],
        )
    return value


def parse_component(text: str) -> bytes:
    """One clear key component as a custodian types it: 32 hex digits, spaces allowed."""
    return parse_hex(text, 16, field="component", what=N_("key component"))


def transport_root(
    slot: KeySlot, components: Sequence[bytes], expected_kcv: bytes, version: int | None = None
) -> KeyEntry:
    """The vendor's transport root for ``slot`` from ≥ 2 clear components (dual control).

    The components are XORed; the result must have the KCV the vendor stated
    (``expected_kcv``, 3 bytes), so a mistyped component is caught before
    anything is stored. Equal or all-zero components defeat dual control and
    are refused.
    """
    if slot.type != KeyType.TK:
        raise InvalidInput(
            _("not a transport key"),
            [("ref", _("{ref} is not a TK slot").format(ref=slot.ref))],
        )
    if len(components) < 2:
        raise InvalidInput(
            _("dual control needs at least 2 components"), [("components", _("at least 2"))]
        )
    if any(c == bytes(len(c)) for c in components) or len(set(components)) != len(components):
        raise InvalidInput(
            _("components must be distinct and non-zero"),
            [("components", _("each custodian holds a different, random component"))],
        )
    value = bytes(16)
    for c in components:
        value = xor(value, c)
    version = slot.version if version is None else version
    entry = KeyEntry(slot.ref, version, slot.algorithm, slot.levels, 0, value)
    if not constant_time_equal(kcv(value, algorithm=slot.algorithm), bytes(expected_kcv)):
        raise InvalidInput(
            _("the combined key does not have the vendor's KCV"),
            [("kcv", _("a component was mistyped, or the components are not of this key"))],
        )
    return entry


def zone_key(root: KeyEntry, city: str) -> KeyEntry:
    """The city-level key of ``root`` for ``city``: all levels but the card serial."""
    if root.depth != 0:
        raise InvalidInput(
            _("not a root"), [("ref", _("{ref} is already diversified").format(ref=root.ref))]
        )
    if root.levels < 2:
        raise InvalidInput(
            _("{ref} has {levels} diversification level(s)").format(
                ref=root.ref, levels=root.levels
            ),
            [
                (
                    "ref",
                    _("a zone key needs at least 2 levels, or the service point would hold a root"),
                )
            ],
        )
    factors = card_factors(city, bytes(8), root.levels)[:-1]
    value = diversify_path(root.value, factors, algorithm=root.algorithm)
    return KeyEntry(
        root.ref, root.version, root.algorithm, root.levels, root.levels - 1, value, city
    )


def export_zone(roots: Iterable[KeyEntry], city: str) -> list[KeyEntry]:
    """Zone keys for every root that can have one (roots with fewer than 2 levels stay home)."""
    return [zone_key(r, city) for r in roots if r.depth == 0 and r.levels >= 2]


def kcv_hex(entry: KeyEntry) -> str:
    """The KCV as upper-case hex."""
    return kcv(entry.value, algorithm=entry.algorithm).hex().upper()
