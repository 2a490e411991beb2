"""Record codecs: one class per record encoding (spec/card.md, "EF05", "EF06").

Every record is one fixed-length TLV, ``tag ‖ len ‖ value``; a record never
written reads as ``tag ‖ len ‖ FF…`` and decodes to ``None`` ("absent").
Each codec class carries its own test vectors (``vectors``: hand-made from the
spec tables), which one generic test checks for every class.

The value layouts are a few bytes of BCD, text or binary each, written out as
plain ``bytes`` code: a layout library would cost every ``sscard read`` more
start-up time than the whole card conversation (issue 19).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any, ClassVar, NamedTuple

from sscard.errors import RecordDecodeError, RecordEncodeError
from sscard.i18n import N_, _

# (tag, length, record hex, decoded value); the value ``None`` is never used here:
# the generic test checks the all-FF record of every class itself.
Vector = tuple[int, int, str, Any]


CARD_ID_RID = bytes.fromhex("D156000005")
"""The RID inside every card identification code."""


class CardId(NamedTuple):
    """The card identification code (卡识别码, EF05 record 01, docs/card.md):
    region (3 B BCD) ‖ RID ``D1 56 00 00 05`` ‖ card sequence (4 B) ‖ MAC (4 B)."""

    region: str
    sequence: bytes
    mac: bytes

    @property
    def code(self) -> bytes:
        """The 16 bytes on the card."""
        return bytes.fromhex(self.region) + CARD_ID_RID + self.sequence + self.mac

    @property
    def hex(self) -> str:
        """The 32 hexadecimal digits terminals show (``iReadCardBas``)."""
        return self.code.hex().upper()

    def mac_input(self, chip_serial: bytes) -> bytes:
        """What the MAC covers [ours]: region ‖ RID ‖ card sequence ‖ chip serial."""
        return self.code[:12] + bytes(chip_serial)

    @classmethod
    def sequence_of(cls, chip_serial: bytes) -> bytes:
        """The card sequence of a chip [ours]: the last 4 bytes of its serial."""
        return bytes(chip_serial[-4:])


_DOES_NOT_FIT = N_("value does not fit its card record")


class _ValueError(Exception):
    """A value layout refused bytes or a value; wrapped into the typed errors below."""


def _bcd_digits(value: bytes) -> str:
    """Packed BCD bytes as their digits; :class:`_ValueError` if a nibble is not 0-9."""
    text = value.hex().upper()
    if not text.isdigit():
        raise _ValueError(_("not BCD digits: {digits}").format(digits=text))
    return text


def _bcd_bytes(value: object, length: int) -> bytes:
    """``2 * length`` decimal digits as packed BCD."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise _ValueError(_("must be a string of digits"))
    if len(value) != 2 * length:
        raise _ValueError(
            _("{count} digits, the record holds {expected}").format(
                count=len(value), expected=2 * length
            )
        )
    return bytes.fromhex(value)


def _padded(raw: bytes, length: int, what: str) -> bytes:
    """``raw`` right-padded with 00 to ``length`` bytes; :class:`_ValueError` if longer."""
    if len(raw) > length:
        raise _ValueError(
            _("{size} bytes in {encoding}, the record holds {length}").format(
                size=len(raw), encoding=what, length=length
            )
        )
    return raw.ljust(length, b"\x00")


class RecordCodec:
    """A TLV record of fixed length whose value has one encoding.

    ``name`` says which record this is in errors, e.g. ``EF06 record 2 (name)``.
    A subclass turns the value bytes into a Python value and back
    (:meth:`decode_value`, :meth:`encode_value`); the tag, the length byte and
    the never-written (all-FF) value are handled here for every class.
    """

    encoding: ClassVar[str]
    vectors: ClassVar[tuple[Vector, ...]]
    registry: ClassVar[dict[str, type[RecordCodec]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        RecordCodec.registry[cls.encoding] = cls

    def __init__(self, tag: int, length: int, name: str = "record") -> None:
        self.tag = tag
        self.length = length
        self.name = name
        self._head = bytes([tag, length])
        self._absent = b"\xff" * length

    def decode_value(self, value: bytes) -> Any:
        """The Python value of ``length`` value bytes (not all FF)."""
        raise NotImplementedError

    def encode_value(self, value: Any) -> bytes:
        """The value bytes of ``value`` (not ``None``), exactly ``length`` of them."""
        raise NotImplementedError

    def check_length(self) -> str | None:
        """Why this class cannot have ``self.length`` bytes, or ``None`` if it can."""
        return None

    @property
    def size(self) -> int:
        """Bytes of the whole record (tag, length, value)."""
        return 2 + self.length

    def decode(self, data: bytes) -> Any:
        """The value of a record read from the card; ``None`` if never written."""
        if len(data) != self.size:
            if len(data) < self.size:
                problem = _("record too short: {size} bytes, expected {expected}")
            else:
                problem = _("record too long: {size} bytes, expected {expected}")
            raise RecordDecodeError(self.name, problem.format(size=len(data), expected=self.size))
        if data[0] != self.tag:
            raise RecordDecodeError(
                self.name,
                _("wrong tag {tag:02X}, expected {expected:02X}").format(
                    tag=data[0], expected=self.tag
                ),
            )
        if data[1] != self.length:
            raise RecordDecodeError(
                self.name,
                _("wrong length byte {length:02X}, expected {expected:02X}").format(
                    length=data[1], expected=self.length
                ),
            )
        value = bytes(data[2:])
        if value == self._absent:
            return None
        try:
            return self.decode_value(value)
        except _ValueError as exc:
            raise RecordDecodeError(self.name, str(exc)) from None

    def encode(self, value: Any) -> bytes:
        """The record bytes for ``value``; ``None`` gives the never-written record."""
        if value is None:
            return self._head + self._absent
        try:
            raw = self.encode_value(value)
            if len(raw) != self.length:  # a subclass's slip, or raw bytes of another length
                raise _ValueError(
                    _("{size} bytes, the record holds {length}").format(
                        size=len(raw), length=self.length
                    )
                )
        except _ValueError as exc:
            raise RecordEncodeError(_(_DOES_NOT_FIT), [(self.name, str(exc))]) from None
        return self._head + raw


class BinaryRecord(RecordCodec):
    """Raw bytes of the record's length (e.g. card type ``31``)."""

    encoding = "binary"
    vectors = ((0x02, 1, "020131", b"\x31"), (0x02, 2, "02020A0B", b"\x0a\x0b"))

    def decode_value(self, value: bytes) -> bytes:
        return value

    def encode_value(self, value: Any) -> bytes:
        if not isinstance(value, bytes | bytearray):
            raise _ValueError(_("must be bytes"))
        return bytes(value)


class AsciiRecord(RecordCodec):
    """ASCII text, right-padded with 00 when shorter than the record."""

    encoding = "ascii"
    vectors = (
        (0x03, 4, "0304332E3030", "3.00"),
        (0x07, 9, "0709413132333435363738", "A12345678"),
        (0x0A, 1, "0A0131", "1"),
        (0x41, 4, "4104" + "41420000", "AB"),
    )

    def decode_value(self, value: bytes) -> str:
        text = value.rstrip(b"\x00")
        if not text.isascii() or not text.decode("ascii").isprintable():
            raise _ValueError(_("not printable ASCII"))
        return text.decode("ascii")

    def encode_value(self, value: Any) -> bytes:
        if not isinstance(value, str) or not value.isascii() or not value.isprintable():
            raise _ValueError(_("must be printable ASCII text"))
        if len(value) > self.length:
            raise _ValueError(
                _("{count} characters, the record holds {length}").format(
                    count=len(value), length=self.length
                )
            )
        return value.encode("ascii").ljust(self.length, b"\x00")


class GbkRecord(RecordCodec):
    """GBK text right-padded with 00 (EF06 name)."""

    encoding = "gbk"
    text_encoding = "gbk"
    vectors: ClassVar[tuple[Vector, ...]]
    # 张三 in GBK is D5C5 C8FD; 社会保障 is C9E7 BBE1 B1A3 D5CF (spec DF name).
    vectors = (
        (0x09, 30, "091E" + "D5C5C8FD" + "00" * 26, "张三"),
        (0x09, 8, "0908" + "C9E7BBE1B1A3D5CF", "社会保障"),
        (0x09, 4, "0904" + "41" + "000000", "A"),
    )

    def decode_value(self, value: bytes) -> str:
        try:
            return value.rstrip(b"\x00").decode(self.text_encoding)
        except UnicodeDecodeError:
            raise _ValueError(
                _("not valid {encoding} text").format(encoding=self.text_encoding.upper())
            ) from None

    def encode_value(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise _ValueError(_("must be text"))
        try:
            raw = value.encode(self.text_encoding)
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            raise _ValueError(
                _("character {char} (U+{code:04X}) cannot be encoded in {encoding}").format(
                    char=repr(bad), code=ord(bad), encoding=self.text_encoding.upper()
                )
            ) from None
        if b"\x00" in raw:
            raise _ValueError(_("must not contain NUL characters"))
        return _padded(raw, self.length, self.text_encoding.upper())


class Gb18030Record(GbkRecord):
    """GB 18030 text right-padded with 00 (name extension: characters outside GBK)."""

    encoding = "gb18030"
    text_encoding = "gb18030"
    # U+20000 (CJK Ext. B) is the four-byte GB 18030 sequence 95 32 82 36.
    vectors = (
        (0x4E, 20, "4E14" + "95328236" + "00" * 16, "\U00020000"),
        (0x4E, 6, "4E06" + "D5C5" + "95328236", "张\U00020000"),
    )


class BcdDateRecord(RecordCodec):
    """A date as packed BCD ``YYYYMMDD``."""

    encoding = "bcd-date"
    vectors = (
        (0x05, 4, "050420240131", dt.date(2024, 1, 31)),
        (0x0D, 4, "0D0419491231", dt.date(1949, 12, 31)),
        (0x0D, 4, "0D0420000229", dt.date(2000, 2, 29)),
    )

    def decode_value(self, value: bytes) -> dt.date:
        digits = _bcd_digits(value)
        try:
            return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
        except ValueError:
            raise _ValueError(_("not a real date: {digits}").format(digits=digits)) from None

    def encode_value(self, value: Any) -> bytes:
        if not isinstance(value, dt.date):
            raise _ValueError(_("must be a date"))
        return _bcd_bytes(f"{value.year:04d}{value.month:02d}{value.day:02d}", self.length)

    def check_length(self) -> str | None:
        return None if self.length == 4 else _("a BCD date is 4 bytes")


class BcdDivisionRecord(RecordCodec):
    """An administrative division code (GB/T 2260), 6 digits in 3 bytes of BCD."""

    encoding = "bcd-division"
    vectors = ((0x0C, 3, "0C03310000", "310000"), (0x0C, 3, "0C03110105", "110105"))

    def decode_value(self, value: bytes) -> str:
        return _bcd_digits(value)

    def encode_value(self, value: Any) -> bytes:
        return _bcd_bytes(value, self.length)

    def check_length(self) -> str | None:
        return None if self.length == 3 else _("a division code is 3 bytes")


class BcdInstitutionRecord(RecordCodec):
    """An institution code: all BCD digits of the record (24 digits in 12 bytes)."""

    encoding = "bcd-institution"
    vectors = ((0x04, 12, "040C" + "310000000000000000000001", "310000000000000000000001"),)

    def decode_value(self, value: bytes) -> str:
        return _bcd_digits(value)

    def encode_value(self, value: Any) -> bytes:
        return _bcd_bytes(value, self.length)


class CodeRecord(RecordCodec):
    """A one-byte binary code (e.g. ethnicity 1..56, 0x61 = 97 other, 0x62 = 98 foreign origin)."""

    encoding = "code"
    vectors = (
        (0x0B, 1, "0B0101", 1),
        (0x0B, 1, "0B0138", 56),
        (0x0B, 1, "0B0161", 97),
        (0x0B, 1, "0B0162", 98),
    )

    def decode_value(self, value: bytes) -> int:
        return value[0]

    def encode_value(self, value: Any) -> bytes:
        if not isinstance(value, int) or not 0 <= value <= 0xFF:
            raise _ValueError(_("must be a whole number from 0 to 255"))
        return bytes([value])

    def check_length(self) -> str | None:
        return None if self.length == 1 else _("a code is 1 byte")


class CardIdRecord(RecordCodec):
    """Card identification code: region (3 B BCD) ‖ ``D1 56 00 00 05`` ‖ sequence ‖ MAC."""

    encoding = "card-id"
    vectors = (
        (
            0x01,
            16,
            "0110" + "310000" + "D156000005" + "0011223344556677",
            CardId("310000", bytes.fromhex("00112233"), bytes.fromhex("44556677")),
        ),
        # A real code, from a public personalization script generator (CScript::GetCardID).
        (
            0x01,
            16,
            "0110" + "441800D1560000053030737878EC1A84",
            CardId("441800", bytes.fromhex("30307378"), bytes.fromhex("78EC1A84")),
        ),
    )

    def decode_value(self, value: bytes) -> CardId:
        region = _bcd_digits(value[:3])
        rid = value[3:8]
        if rid != CARD_ID_RID:
            raise _ValueError(
                _("RID {rid}, expected {expected}").format(
                    rid=rid.hex().upper(), expected=CARD_ID_RID.hex().upper()
                )
            )
        return CardId(region, value[8:12], value[12:])

    def encode_value(self, value: Any) -> bytes:
        if not isinstance(value, CardId):
            raise _ValueError(_("must be a CardId"))
        if not isinstance(value.region, str) or len(value.region) != 6:
            raise _ValueError(_("region must be 6 digits"))
        parts = (value.sequence, value.mac)
        if not all(isinstance(part, bytes | bytearray) and len(part) == 4 for part in parts):
            raise _ValueError(_("sequence and MAC must be 4 bytes each"))
        return _bcd_bytes(value.region, 3) + CARD_ID_RID + bytes(value.sequence) + bytes(value.mac)

    def check_length(self) -> str | None:
        return None if self.length == 16 else _("a card identification code is 16 bytes")


@lru_cache(maxsize=512)
def codec_for(encoding: str, tag: int, length: int, name: str = "record") -> RecordCodec:
    """The codec of one record as the profile declares it (built once, then shared)."""
    return RecordCodec.registry[encoding](tag, length, name)
