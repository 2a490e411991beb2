"""WRITE KEY key records (docs/card.md, "Commands", WRITE KEY).

key-record = type ‖ ID ‖ version ‖ algorithm ‖ error limit ‖ key value (16 B).
The one-byte codes for type and algorithm are [ours] (docs/keys.md) and live on
the enums (``KeyType.code``, ``Algorithm.code`` in :mod:`sscard.vocab`); the
emulated card parses records with :func:`parse_key_record`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sscard.errors import InvalidInput
from sscard.i18n import _
from sscard.keys.algorithms import KEY_LENGTH, check_key
from sscard.keys.scheme import KeySlot
from sscard.vocab import Algorithm, KeyType

RECORD_LENGTH = 5 + KEY_LENGTH


def key_record(slot: KeySlot, value: bytes) -> bytes:
    """The clear key record for ``slot`` (only ever built inside a security module)."""
    check_key(value, slot.algorithm)
    return (
        bytes(
            [
                KeyType(slot.type).code,
                slot.id,
                slot.version,
                Algorithm(slot.algorithm).code,
                slot.error_limit,
            ]
        )
        + value
    )


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class ParsedKeyRecord:
    """A key record as the card reads it; ``value`` is redacted from ``repr``."""

    type: KeyType
    id: int
    version: int
    algorithm: Algorithm
    error_limit: int
    value: bytes

    def __repr__(self) -> str:
        return (
            f"ParsedKeyRecord(type={self.type.value!r}, id={self.id}, version={self.version}, "
            f"algorithm={self.algorithm.value!r}, error_limit={self.error_limit}, value=<redacted>)"
        )


def parse_key_record(record: bytes) -> ParsedKeyRecord:
    """Parse a clear key record; :class:`InvalidInput` naming the bad field."""
    if len(record) != RECORD_LENGTH:
        raise InvalidInput(
            _("bad key record"),
            [("record", _("must be {length} bytes").format(length=RECORD_LENGTH))],
        )
    key_type = KeyType.from_code(record[0])
    algorithm = Algorithm.from_code(record[3])
    p: list[tuple[str, str]] = []
    if key_type is None:
        p.append(("type", _("unknown key type code")))
    if algorithm is None:
        p.append(("algorithm", _("unknown algorithm code")))
    if not 1 <= record[2] <= 255:
        p.append(("version", _("must be 1..255")))
    if p or key_type is None or algorithm is None:
        raise InvalidInput(_("bad key record"), p)
    return ParsedKeyRecord(
        type=key_type,
        id=record[1],
        version=record[2],
        algorithm=algorithm,
        error_limit=record[4],
        value=bytes(record[5:]),
    )
