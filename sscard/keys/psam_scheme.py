"""What a PSAM holds and how its keys are named (docs/keys.md, "PSAM").

A PSAM (the secure element in a service point's SAM slot) holds **city-level**
keys only. Each is named by a key **usage byte**, as PBOC PSAMs do: bits 8..6
the number of diversification levels the PSAM applies below the stored key,
bits 5..1 the key type (the codes below are [ours]); and a version. DELIVERY KEY
names the key by usage and version and gives one 8-byte factor per level.

The records that load keys into a PSAM are ``usage ‖ version ‖ algorithm ‖ error
limit ‖ value (16)``, enciphered and MACed under the PSAM's transport key (PTK),
like the card's WRITE KEY records.
"""

from __future__ import annotations

from dataclasses import dataclass

from sscard.errors import InvalidInput
from sscard.i18n import _
from sscard.keys.algorithms import KEY_LENGTH, check_key
from sscard.vocab import PSAM_KEY_REFS, PSAM_PTK_TYPE, Algorithm

# Card key slot (DF/type/ID) → the PSAM's type code [ours]; the card side's table inverted.
PSAM_TYPES: dict[str, int] = {ref: code for code, ref in PSAM_KEY_REFS.items()}
PTK_TYPE = PSAM_PTK_TYPE
"""The PSAM's own transport key: it loads the others (issuance session)."""

RECORD_LENGTH = 4 + KEY_LENGTH

# What a service point of each kind needs (docs/keys.md, "PSAM"): the refs above.
_STAFF = ("SSSE/EAK/01", "SSSE/IAK/01", "SSSE/PUK/01", "SSSE/RPK/01", "SSSE/STK/01", "SSSE/RK/0A")
_READ = ("SSSE/IAK/01", "SSSE/RK/0A")
KINDS: dict[str, tuple[str, ...]] = {
    "service": _STAFF,  # a counter: PIN reload / unblock, block / unblock, holder update, reads
    "kiosk": _READ,  # cardholders: reads and card authentication (a PIN change needs no key)
    **{
        f"department:DF{n:02d}": (*_READ, f"DF{n:02d}/EAK/01", f"DF{n:02d}/STK/01")
        for n in range(1, 6)
    },
}


def type_code(ref: str) -> int:
    """The PSAM type code of a card key slot reference (``SSSE/RK/0A``)."""
    code = PSAM_TYPES.get(ref)
    if code is None:
        raise InvalidInput(
            _("no PSAM key for this card key"),
            [("key", _("{ref}: a PSAM holds {refs}").format(ref=ref, refs=", ".join(PSAM_TYPES)))],
        )
    return code


def ref_of(code: int) -> str | None:
    """The card key slot reference of a PSAM type code (None: the PTK or unknown)."""
    return PSAM_KEY_REFS.get(code)


def kind_refs(kind: str) -> tuple[str, ...]:
    """The keys a service point of ``kind`` needs."""
    refs = KINDS.get(kind)
    if refs is None:
        raise InvalidInput(
            _("unknown service point kind"),
            [("kind", _("one of {choices}").format(choices=", ".join(KINDS)))],
        )
    return refs


def psam_key_record(
    type_code: int, version: int, algorithm: str, error_limit: int, value: bytes
) -> bytes:
    """The clear record (only ever built inside a security module); the usage byte has 0 levels:
    the PSAM applies as many levels as DELIVERY KEY gives factors."""
    check_key(value, algorithm)
    return bytes((type_code, version, Algorithm(algorithm).code, error_limit)) + bytes(value)


@dataclass(frozen=True, slots=True, repr=False)
class PsamKeyRecord:
    """A parsed PSAM key record; ``value`` stays out of ``repr``."""

    type_code: int
    version: int
    algorithm: Algorithm
    error_limit: int
    value: bytes

    def __repr__(self) -> str:
        return (
            f"PsamKeyRecord(type={self.type_code:02X}, v{self.version}, {self.algorithm}, "
            "value=<redacted>)"
        )


def parse_psam_key_record(record: bytes) -> PsamKeyRecord:
    """Parse a deciphered record; :class:`InvalidInput` when malformed."""
    if len(record) != RECORD_LENGTH:
        raise InvalidInput(
            _("bad PSAM key record"),
            [("record", _("must be {length} bytes").format(length=RECORD_LENGTH))],
        )
    algorithm = Algorithm.from_code(record[2])
    if algorithm is None or not 0 < record[0] <= 0x1F or record[1] == 0:
        raise InvalidInput(
            _("bad PSAM key record"), [("record", _("unknown type, algorithm or version"))]
        )
    return PsamKeyRecord(record[0], record[1], algorithm, record[3], bytes(record[4:]))
