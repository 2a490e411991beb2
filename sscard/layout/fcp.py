"""File control parameters of CREATE FILE (shared/spec/card.md, "Commands", CREATE FILE).

ISO 7816-4 style template ``62 L {82 descriptor, 83 FID, 84 DF name, 88 SFI,
80 size | record count ‖ record length, 86 access conditions}`` [ours for the
details]. Built by the personalization plan from the profile; parsed by the
emulated card. Access conditions are one byte each:

==========  ====================================================
``00``      free
``1k``      EXTERNAL AUTHENTICATE with key ID k of the file's DF
``20``      PIN verified
``30``      line protection (MAC with the STK of the file's DF)
``FF``      never
==========  ====================================================

Tag 86 holds ``n ‖ read conditions (n bytes) ‖ m ‖ write conditions (m bytes)``;
any one condition of a list grants the operation.
"""

from __future__ import annotations

from dataclasses import dataclass

from sscard.errors import InvalidInput
from sscard.layout.model import Access, AccessCondition, FileSpec

DESCRIPTORS = {
    "mf": 0x38,
    "ddf": 0x38,
    "df": 0x38,
    "transparent": 0x01,
    "linear-fixed": 0x02,
    "linear-variable": 0x04,
}
_DESCRIPTOR_KIND = {0x38: "df", 0x01: "transparent", 0x02: "linear-fixed", 0x04: "linear-variable"}

AC_FREE = 0x00
AC_EXT_AUTH = 0x10
AC_PIN = 0x20
AC_SM = 0x30
AC_NEVER = 0xFF


@dataclass(frozen=True, slots=True)
class Fcp:
    """Parsed file control parameters; ``access`` holds the condition bytes."""

    kind: str  # "df", "transparent", "linear-fixed", "linear-variable"
    fid: bytes | None = None
    df_name: bytes | None = None
    sfi: int | None = None
    size: int | None = None
    record_count: int | None = None
    record_length: int | None = None
    read: bytes = bytes((AC_FREE,))
    write: bytes = bytes((AC_NEVER,))

    @property
    def is_df(self) -> bool:
        return self.kind == "df"


def condition_byte(cond: AccessCondition, parent: str) -> int:
    """The one-byte form of ``cond`` for a file whose DF is ``parent``."""
    if cond.kind == "free":
        return AC_FREE
    if cond.kind == "never":
        return AC_NEVER
    if cond.kind == "pin":
        return AC_PIN
    if cond.df != parent:
        raise InvalidInput(
            "access condition not encodable",
            [(str(cond), f"the card checks keys of the file's own DF ({parent}) only")],
        )
    if cond.kind == "ext-auth" and cond.key_id is not None and 0 <= cond.key_id <= 0x0F:
        return AC_EXT_AUTH | cond.key_id
    if cond.kind == "sm":
        return AC_SM
    raise InvalidInput("access condition not encodable", [(str(cond), "unknown kind")])


def _tlv(tag: int, value: bytes) -> bytes:
    if len(value) > 127:
        raise InvalidInput("FCP too long", [(f"tag {tag:02X}", "value over 127 bytes")])
    return bytes((tag, len(value))) + value


def _conditions(access: Access | None, parent: str) -> bytes:
    if access is None:
        return bytes((1, AC_FREE, 1, AC_NEVER))
    read = bytes(condition_byte(c, parent) for c in access.read)
    write = bytes(condition_byte(c, parent) for c in access.write)
    return bytes((len(read),)) + read + bytes((len(write),)) + write


def build_fcp(spec: FileSpec) -> bytes:
    """The CREATE FILE data field for ``spec``."""
    body = _tlv(0x82, bytes((DESCRIPTORS[spec.type],)))
    if spec.fid is not None:
        body += _tlv(0x83, spec.fid)
    if spec.df_name is not None:
        body += _tlv(0x84, spec.df_name)
    if spec.sfi is not None:
        body += _tlv(0x88, bytes((spec.sfi,)))
    if spec.type == "transparent":
        size = spec.size or 0
        body += _tlv(0x80, size.to_bytes(2, "big"))
    elif spec.type in ("linear-fixed", "linear-variable"):
        body += _tlv(0x80, bytes((spec.record_count or 0, spec.record_length or 0)))
    if not spec.is_df:
        body += _tlv(0x86, _conditions(spec.access, spec.parent or "MF"))
    return _tlv(0x62, body)


def parse_fcp(data: bytes) -> Fcp:
    """Parse a CREATE FILE data field; ``ValueError`` saying what is wrong."""
    if len(data) < 2 or data[0] != 0x62 or data[1] != len(data) - 2:
        raise ValueError("FCP must be one template 62 L ... covering the whole data field")
    fields: dict[int, bytes] = {}
    i, body = 0, data[2:]
    while i < len(body):
        if i + 2 > len(body):
            raise ValueError("truncated FCP data object")
        tag, length = body[i], body[i + 1]
        value = body[i + 2 : i + 2 + length]
        if len(value) != length:
            raise ValueError(f"FCP tag {tag:02X} runs past the end")
        if tag in fields:
            raise ValueError(f"FCP tag {tag:02X} appears twice")
        fields[tag] = value
        i += 2 + length
    desc = fields.get(0x82)
    if desc is None or len(desc) != 1 or desc[0] not in _DESCRIPTOR_KIND:
        raise ValueError("FCP needs a known file descriptor (tag 82)")
    kind = _DESCRIPTOR_KIND[desc[0]]
    fid = fields.get(0x83)
    if fid is not None and (len(fid) != 2 or fid in (b"\x3f\x00", b"\xff\xff")):
        raise ValueError("FID (tag 83) must be 2 bytes, not 3F00 or FFFF")
    name = fields.get(0x84)
    if name is not None and not 1 <= len(name) <= 16:
        raise ValueError("DF name (tag 84) must be 1..16 bytes")
    if kind != "df" and fid is None:
        raise ValueError("an EF needs a FID (tag 83)")
    if kind == "df" and fid is None and name is None:
        raise ValueError("a DF needs a FID (tag 83) or a DF name (tag 84)")
    sfi_raw = fields.get(0x88)
    sfi = None
    if sfi_raw is not None:
        if len(sfi_raw) != 1 or not 1 <= sfi_raw[0] <= 30:
            raise ValueError("SFI (tag 88) must be one byte 1..30")
        sfi = sfi_raw[0]
    size = record_count = record_length = None
    sz = fields.get(0x80)
    if kind == "transparent":
        if sz is None or len(sz) != 2:
            raise ValueError("a transparent EF needs its size (tag 80, 2 bytes)")
        size = int.from_bytes(sz, "big")
    elif kind != "df":
        if sz is None or len(sz) != 2 or not sz[0] or not sz[1]:
            raise ValueError("a record EF needs record count and length (tag 80, 2 bytes)")
        record_count, record_length = sz[0], sz[1]
    read, write = bytes((AC_FREE,)), bytes((AC_NEVER,))
    ac = fields.get(0x86)
    if kind != "df":
        n = ac[0] if ac else 0
        if ac is None or len(ac) < 2 + n or len(ac) != 2 + n + ac[1 + n]:
            raise ValueError("an EF needs access conditions (tag 86: n ‖ read ‖ m ‖ write)")
        read, write = ac[1 : 1 + n], ac[2 + n :]
        for c in read + write:
            if c not in (AC_FREE, AC_PIN, AC_SM, AC_NEVER) and c & 0xF0 != AC_EXT_AUTH:
                raise ValueError(f"unknown access condition byte {c:02X}")
    return Fcp(kind, fid, name, sfi, size, record_count, record_length, read, write)
