"""WRITE KEY key records (shared/spec/card.md, "Commands", WRITE KEY).

key-record = type ‖ ID ‖ version ‖ algorithm ‖ error limit ‖ key value (16 B).
The one-byte codes for type and algorithm are [ours] (docs/keys.md); the
emulated card parses records with :func:`parse_key_record`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sscard.errors import InvalidInput
from sscard.keys.algorithms import KEY_LENGTH, check_key
from sscard.keys.scheme import KeySlot

TYPE_CODES: dict[str, int] = {
    "MK": 0x01,
    "EAK": 0x02,
    "IAK": 0x03,
    "PUK": 0x04,
    "RPK": 0x05,
    "STK": 0x06,
    "TK": 0x07,
}
ALGORITHM_CODES: dict[str, int] = {"3des": 0x01, "sm4": 0x02}
RECORD_LENGTH = 5 + KEY_LENGTH


def key_record(slot: KeySlot, value: bytes) -> bytes:
    """The clear key record for ``slot`` (only ever built inside a security module)."""
    check_key(value, slot.algorithm)
    return (
        bytes(
            [
                TYPE_CODES[slot.type],
                slot.id,
                slot.version,
                ALGORITHM_CODES[slot.algorithm],
                slot.error_limit,
            ]
        )
        + value
    )


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class ParsedKeyRecord:
    """A key record as the card reads it; ``value`` is redacted from ``repr``."""

    type: str
    id: int
    version: int
    algorithm: str
    error_limit: int
    value: bytes

    def __repr__(self) -> str:
        return (
            f"ParsedKeyRecord(type={self.type!r}, id={self.id}, version={self.version}, "
            f"algorithm={self.algorithm!r}, error_limit={self.error_limit}, value=<redacted>)"
        )


def parse_key_record(record: bytes) -> ParsedKeyRecord:
    """Parse a clear key record; :class:`InvalidInput` naming the bad field."""
    if len(record) != RECORD_LENGTH:
        raise InvalidInput("bad key record", [("record", f"must be {RECORD_LENGTH} bytes")])
    types = {v: k for k, v in TYPE_CODES.items()}
    algs = {v: k for k, v in ALGORITHM_CODES.items()}
    p: list[tuple[str, str]] = []
    if record[0] not in types:
        p.append(("type", "unknown key type code"))
    if record[3] not in algs:
        p.append(("algorithm", "unknown algorithm code"))
    if not 1 <= record[2] <= 255:
        p.append(("version", "must be 1..255"))
    if p:
        raise InvalidInput("bad key record", p)
    return ParsedKeyRecord(
        type=types[record[0]],
        id=record[1],
        version=record[2],
        algorithm=algs[record[3]],
        error_limit=record[4],
        value=bytes(record[5:]),
    )
