"""File control parameters: CREATE FILE data and SELECT answers (docs/card.md, "Commands").

ISO 7816-4 style template ``62 L {82 descriptor, 83 FID, 84 DF name, 88 SFI,
80 size, 86 access conditions}`` [ours for the details]. Built by the
personalization plan from the profile; parsed by the emulated card. The file
descriptor (tag 82) is the descriptor byte alone for a DF or a transparent EF;
for a record EF it is, as ISO 7816-4 has it, descriptor byte ‖ data coding byte
(``21``) ‖ maximum record length (2 bytes) ‖ number of records (1 byte). Tag 80
is the size of a transparent EF only.

The emulated card answers SELECT with what :func:`encode_fci` builds from the
same data objects (82, 83, 84, 88, 80; no access conditions), in the FCI
template ``6F`` (P2 ``00``) or the FCP template ``62`` (P2 ``04``), with an
optional proprietary template ``A5`` around extra TLV objects. Access
conditions are one byte each:

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
from sscard.i18n import _
from sscard.layout.model import Access, AccessCondition, FileSpec
from sscard.vocab import FileType

DESCRIPTORS: dict[FileType, int] = {
    FileType.MF: 0x38,
    FileType.DDF: 0x38,
    FileType.DF: 0x38,
    FileType.TRANSPARENT: 0x01,
    FileType.LINEAR_FIXED: 0x02,
    FileType.LINEAR_VARIABLE: 0x04,
}
_DESCRIPTOR_KIND = {
    0x38: FileType.DF,
    0x01: FileType.TRANSPARENT,
    0x02: FileType.LINEAR_FIXED,
    0x04: FileType.LINEAR_VARIABLE,
}

TAG_FCP = 0x62
TAG_FCI = 0x6F
TAG_PROPRIETARY = 0xA5
TAG_SIZE = 0x80
TAG_DESCRIPTOR = 0x82
TAG_FID = 0x83
TAG_DF_NAME = 0x84
TAG_ACCESS = 0x86
TAG_SFI = 0x88

AC_FREE = 0x00
AC_EXT_AUTH = 0x10
AC_PIN = 0x20
AC_SM = 0x30
AC_NEVER = 0xFF

DATA_CODING = 0x21  # ISO 7816-4 data coding byte: proprietary write behaviour, 1-byte units


@dataclass(frozen=True, slots=True)
class Fcp:
    """Parsed file control parameters; ``access`` holds the condition bytes."""

    kind: FileType  # DF, TRANSPARENT, LINEAR_FIXED or LINEAR_VARIABLE
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
        return self.kind == FileType.DF


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
            _("access condition not encodable"),
            [
                (
                    str(cond),
                    _("the card checks keys of the file's own DF ({df}) only").format(df=parent),
                )
            ],
        )
    if cond.kind == "ext-auth" and cond.key_id is not None and 0 <= cond.key_id <= 0x0F:
        return AC_EXT_AUTH | cond.key_id
    if cond.kind == "sm":
        return AC_SM
    raise InvalidInput(_("access condition not encodable"), [(str(cond), _("unknown kind"))])


def _tlv(tag: int, value: bytes) -> bytes:
    if len(value) > 127:
        raise InvalidInput(
            _("FCP too long"),
            [(_("tag {tag:02X}").format(tag=tag), _("value over 127 bytes"))],
        )
    return bytes((tag, len(value))) + value


def _conditions(access: Access | None, parent: str) -> bytes:
    if access is None:
        return bytes((1, AC_FREE, 1, AC_NEVER))
    read = bytes(condition_byte(c, parent) for c in access.read)
    write = bytes(condition_byte(c, parent) for c in access.write)
    return bytes((len(read),)) + read + bytes((len(write),)) + write


def build_fcp(spec: FileSpec) -> bytes:
    """The CREATE FILE data field for ``spec``."""
    body = _body(
        spec.type,
        spec.fid,
        spec.df_name,
        spec.sfi,
        spec.size,
        spec.record_length,
        spec.record_count,
    )
    if not spec.is_df:
        body += _tlv(TAG_ACCESS, _conditions(spec.access, spec.parent or "MF"))
    return _tlv(TAG_FCP, body)


def _body(
    kind: FileType,
    fid: bytes | None,
    df_name: bytes | None,
    sfi: int | None,
    size: int | None,
    length: int | None,
    count: int | None,
) -> bytes:
    """The data objects CREATE FILE and SELECT share: 82, 83, 84, 88, and 80 for a
    transparent EF."""
    body = _tlv(TAG_DESCRIPTOR, _descriptor(kind, length, count))
    if fid is not None:
        body += _tlv(TAG_FID, fid)
    if df_name is not None:
        body += _tlv(TAG_DF_NAME, df_name)
    if sfi is not None:
        body += _tlv(TAG_SFI, bytes((sfi,)))
    if kind == FileType.TRANSPARENT:
        body += _tlv(TAG_SIZE, (size or 0).to_bytes(2, "big"))
    return body


def _descriptor(kind: FileType, length: int | None, count: int | None) -> bytes:
    """Tag 82: the descriptor byte; for a record EF then the data coding byte,
    the maximum record length (2 bytes) and the number of records (1 byte)."""
    descriptor = bytes((DESCRIPTORS[kind],))
    if not kind.is_record:
        return descriptor
    return (
        descriptor + bytes((DATA_CODING,)) + (length or 0).to_bytes(2, "big") + bytes((count or 0,))
    )


def encode_fci(fcp: Fcp, *, template: int = TAG_FCI, proprietary: bytes = b"") -> bytes:
    """What SELECT answers for the file ``fcp`` describes [ours: the data objects].

    ``template`` is ``6F`` (FCI, SELECT P2 ``00``) or ``62`` (FCP, P2 ``04``);
    the body is the same: ``82`` descriptor, ``83`` FID, ``84`` DF name, ``88``
    SFI, ``80`` size (transparent EFs), then ``A5 L proprietary`` when
    ``proprietary`` (already encoded TLV objects) is not empty.
    """
    if template not in (TAG_FCI, TAG_FCP):
        raise ValueError(f"SELECT answers template 6F or 62, not {template:02X}")
    body = _body(
        fcp.kind, fcp.fid, fcp.df_name, fcp.sfi, fcp.size, fcp.record_length, fcp.record_count
    )
    if proprietary:
        body += _tlv(TAG_PROPRIETARY, proprietary)
    return _tlv(template, body)


def parse_fcp(data: bytes) -> Fcp:
    """Parse a CREATE FILE data field; ``ValueError`` saying what is wrong."""
    if len(data) < 2 or data[0] != TAG_FCP or data[1] != len(data) - 2:
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
    desc = fields.get(TAG_DESCRIPTOR)
    if not desc or desc[0] not in _DESCRIPTOR_KIND:
        raise ValueError("FCP needs a known file descriptor (tag 82)")
    kind = _DESCRIPTOR_KIND[desc[0]]
    fid = fields.get(TAG_FID)
    if fid is not None and (len(fid) != 2 or fid in (b"\x3f\x00", b"\xff\xff")):
        raise ValueError("FID (tag 83) must be 2 bytes, not 3F00 or FFFF")
    name = fields.get(TAG_DF_NAME)
    if name is not None and not 1 <= len(name) <= 16:
        raise ValueError("DF name (tag 84) must be 1..16 bytes")
    if kind != FileType.DF and fid is None:
        raise ValueError("an EF needs a FID (tag 83)")
    if kind == FileType.DF and fid is None and name is None:
        raise ValueError("a DF needs a FID (tag 83) or a DF name (tag 84)")
    sfi_raw = fields.get(TAG_SFI)
    sfi = None
    if sfi_raw is not None:
        if len(sfi_raw) != 1 or not 1 <= sfi_raw[0] <= 30:
            raise ValueError("SFI (tag 88) must be one byte 1..30")
        sfi = sfi_raw[0]
    size = record_count = record_length = None
    sz = fields.get(TAG_SIZE)
    if kind.is_record:
        if len(desc) != 5 or sz is not None:
            raise ValueError(
                "a record EF gives its structure in tag 82 (descriptor ‖ data coding ‖ "
                "record length, 2 bytes ‖ record count), not in tag 80"
            )
        record_length, record_count = int.from_bytes(desc[2:4], "big"), desc[4]
        if not 1 <= record_length <= 255 or not record_count:
            raise ValueError("record length (1..255) and record count (1..255) in tag 82")
    elif len(desc) != 1:
        raise ValueError("a DF or a transparent EF has a one-byte descriptor (tag 82)")
    elif kind == FileType.TRANSPARENT:
        if sz is None or len(sz) != 2:
            raise ValueError("a transparent EF needs its size (tag 80, 2 bytes)")
        size = int.from_bytes(sz, "big")
    elif sz is not None:
        raise ValueError("a DF has no size (tag 80)")
    read, write = bytes((AC_FREE,)), bytes((AC_NEVER,))
    ac = fields.get(TAG_ACCESS)
    if kind != FileType.DF:
        n = ac[0] if ac else 0
        if ac is None or len(ac) < 2 + n or len(ac) != 2 + n + ac[1 + n]:
            raise ValueError("an EF needs access conditions (tag 86: n ‖ read ‖ m ‖ write)")
        read, write = ac[1 : 1 + n], ac[2 + n :]
        for c in read + write:
            if c not in (AC_FREE, AC_PIN, AC_SM, AC_NEVER) and c & 0xF0 != AC_EXT_AUTH:
                raise ValueError(f"unknown access condition byte {c:02X}")
    return Fcp(kind, fid, name, sfi, size, record_count, record_length, read, write)
