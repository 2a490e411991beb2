"""PC/SC part 10 on the host side: reader features, PIN properties, PIN pad structures.

A reader lists what it can do beyond APDUs in answer to
``CM_IOCTL_GET_FEATURE_REQUEST`` (sent with :meth:`Transport.control`): a TLV
list of feature tags, each with the control code that invokes it. A PIN pad
offers FEATURE_VERIFY_PIN_DIRECT and FEATURE_MODIFY_PIN_DIRECT, which take a
PIN_VERIFY_STRUCTURE / PIN_MODIFY_STRUCTURE (USB CCID rev 1.1 §6.1.11–12)
holding the APDU template; the pad reads the digits, inserts them into the
template and sends the APDU to the card itself, so the host never sees the PIN.

The values follow pcsc-lite's ``src/PCSC/reader.h`` (SCARD_CTL_CODE, the
feature tags, the two structures, the FEATURE_GET_TLV_PROPERTIES property
tags) and pyscard's ``smartcard.pcsc.PCSCPart10`` (how the feature list and the
TLV properties are read). The builders here are generic; the social security
card's templates are in :mod:`sscard.securepin` (docs/card.md, "PIN pads").

Multi-byte fields of the structures are little-endian (the CCID wire order;
pcsc-lite's reader.h: "Since CCID 1.4.1 the byte order is no more important",
the driver takes the host order of a little-endian machine). The feature list's
control codes are big-endian (PC/SC part 10 §2.2, quoted in reader.h's
PCSC_TLV_STRUCTURE).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from sscard.errors import (
    MalformedResponse,
    PinEntryCancelled,
    PinEntryFailed,
    PinEntryTimedOut,
    PinLengthWrong,
    PinsDiffer,
    ProtocolError,
    ReaderControlUnsupported,
)
from sscard.i18n import _
from sscard.transport.base import Transport


def SCARD_CTL_CODE(code: int) -> int:
    """A reader control code as pcsc-lite numbers it: ``0x42000000 + code`` (reader.h)."""
    return 0x42000000 + code


CM_IOCTL_GET_FEATURE_REQUEST: Final = SCARD_CTL_CODE(3400)
"""Asks the reader for its feature list (0x42000D48)."""

# Feature tags (PC/SC part 10 v2.02.07; pcsc-lite reader.h).
FEATURE_VERIFY_PIN_START: Final = 0x01
FEATURE_VERIFY_PIN_FINISH: Final = 0x02
FEATURE_MODIFY_PIN_START: Final = 0x03
FEATURE_MODIFY_PIN_FINISH: Final = 0x04
FEATURE_GET_KEY_PRESSED: Final = 0x05
FEATURE_VERIFY_PIN_DIRECT: Final = 0x06
FEATURE_MODIFY_PIN_DIRECT: Final = 0x07
FEATURE_MCT_READER_DIRECT: Final = 0x08
FEATURE_MCT_UNIVERSAL: Final = 0x09
FEATURE_IFD_PIN_PROPERTIES: Final = 0x0A
FEATURE_ABORT: Final = 0x0B
FEATURE_SET_SPE_MESSAGE: Final = 0x0C
FEATURE_VERIFY_PIN_DIRECT_APP_ID: Final = 0x0D
FEATURE_MODIFY_PIN_DIRECT_APP_ID: Final = 0x0E
FEATURE_WRITE_DISPLAY: Final = 0x0F
FEATURE_GET_KEY: Final = 0x10
FEATURE_IFD_DISPLAY_PROPERTIES: Final = 0x11
FEATURE_GET_TLV_PROPERTIES: Final = 0x12
FEATURE_CCID_ESC_COMMAND: Final = 0x13
FEATURE_EXECUTE_PACE: Final = 0x20

# Properties in the FEATURE_GET_TLV_PROPERTIES answer (reader.h PCSCv2_PART10_PROPERTY_*),
# named after the specification's fields.
PROPERTY_wLcdLayout: Final = 0x01
PROPERTY_bEntryValidationCondition: Final = 0x02
PROPERTY_bTimeOut2: Final = 0x03
PROPERTY_wLcdMaxCharacters: Final = 0x04
PROPERTY_wLcdMaxLines: Final = 0x05
PROPERTY_bMinPINSize: Final = 0x06
PROPERTY_bMaxPINSize: Final = 0x07
PROPERTY_sFirmwareID: Final = 0x08
PROPERTY_bPPDUSupport: Final = 0x09
PROPERTY_dwMaxAPDUDataSize: Final = 0x0A
PROPERTY_wIdVendor: Final = 0x0B
PROPERTY_wIdProduct: Final = 0x0C

# Status words a PIN pad answers instead of the card's (PC/SC part 10, the
# result of VERIFY / MODIFY PIN DIRECT; the CCID driver's CCID_Receive turns
# the reader's bError EF / F0 into 6401 / 6400).
SW_PIN_TIMEOUT: Final = 0x6400
SW_PIN_CANCELLED: Final = 0x6401
SW_PINS_DIFFER: Final = 0x6402
SW_PIN_LENGTH_WRONG: Final = 0x6403

PAD_ERRORS: Final[dict[int, Callable[[int], PinEntryFailed]]] = {
    SW_PIN_TIMEOUT: PinEntryTimedOut,
    SW_PIN_CANCELLED: PinEntryCancelled,
    SW_PINS_DIFFER: PinsDiffer,
    SW_PIN_LENGTH_WRONG: PinLengthWrong,
}
"""The typed error for each status word of the pad (national −32, −31, −34, −33)."""

# bmFormatString (CCID §6.1.11): bit 7 system units, bits 6-3 PIN position,
# bit 2 justification, bits 1-0 PIN format.
UNITS_BYTES: Final = 0x80
JUSTIFY_RIGHT: Final = 0x04
PIN_BINARY: Final = 0x00
PIN_BCD: Final = 0x01
PIN_ASCII: Final = 0x02

# bEntryValidationCondition (CCID §6.1.11): when PIN entry is complete.
VALIDATE_MAX_SIZE: Final = 0x01
VALIDATE_KEY: Final = 0x02
VALIDATE_TIMEOUT: Final = 0x04

# bConfirmPIN (CCID §6.1.12).
CONFIRM_NEW_PIN: Final = 0x01
ENTER_CURRENT_PIN: Final = 0x02

VERIFY_HEADER: Final = 19
"""Bytes of a PIN_VERIFY_STRUCTURE before abData."""
MODIFY_HEADER: Final = 24
"""Bytes of a PIN_MODIFY_STRUCTURE before abData."""


def format_string(*, position: int = 0, pin_format: int, right: bool = False) -> int:
    """bmFormatString with byte units: PIN ``position`` in the APDU data, justification, format."""
    if not 0 <= position <= 15:
        raise ValueError(f"PIN position must be 0..15 bytes, got {position}")
    if pin_format not in (PIN_BINARY, PIN_BCD, PIN_ASCII):
        raise ValueError(f"PIN format must be binary, BCD or ASCII, got {pin_format}")
    return UNITS_BYTES | position << 3 | (JUSTIFY_RIGHT if right else 0) | pin_format


def block_string(*, block_bytes: int, length_bits: int = 0) -> int:
    """bmPINBlockString: bits 7-4 size of a PIN length field (0: none), bits 3-0 block bytes."""
    if not 0 <= block_bytes <= 15 or not 0 <= length_bits <= 15:
        raise ValueError("PIN block size and length field size must be 0..15")
    return length_bits << 4 | block_bytes


@dataclass(frozen=True)
class PinEntry:
    """The fields PIN_VERIFY_STRUCTURE and PIN_MODIFY_STRUCTURE share (CCID §6.1.11–12).

    ``timeout`` is bTimerOut, ``timeout2`` bTimerOut2 (seconds; 0: the
    reader's default); ``min_digits`` / ``max_digits`` make wPINMaxExtraDigit
    (``0xXXYY``, XX minimum, YY maximum); ``lang_id`` is wLangId (a Windows
    language identifier: 0x0804 Chinese (PRC), 0x0409 English (US)).
    """

    format_string: int
    block_string: int
    min_digits: int
    max_digits: int
    length_format: int = 0x00
    validation: int = VALIDATE_KEY
    lang_id: int = 0x0409
    timeout: int = 0
    timeout2: int = 0
    teo_prologue: bytes = field(default=b"\x00\x00\x00")

    def __post_init__(self) -> None:
        for name in ("format_string", "block_string", "length_format", "validation"):
            _byte(name, getattr(self, name))
        for name in ("min_digits", "max_digits", "timeout", "timeout2"):
            _byte(name, getattr(self, name))
        if not 0 < self.min_digits <= self.max_digits:
            raise ValueError("PIN digits: need 0 < min_digits <= max_digits")
        if not 0 <= self.lang_id <= 0xFFFF:
            raise ValueError(f"wLangId must be 16 bits, got {self.lang_id:#x}")
        if len(self.teo_prologue) != 3:
            raise ValueError("bTeoPrologue is 3 bytes")

    @property
    def max_extra_digit(self) -> int:
        """wPINMaxExtraDigit: minimum digits in the high byte, maximum in the low byte."""
        return self.min_digits << 8 | self.max_digits


def _byte(name: str, value: int) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must be one byte, got {value}")
    return value


def _template(template: bytes) -> bytes:
    if len(template) < 4:
        raise ValueError(f"the APDU template needs at least CLA INS P1 P2, got {len(template)} B")
    return bytes(template)


def verify_structure(
    template: bytes, entry: PinEntry, *, messages: int = 1, msg_index: int = 0
) -> bytes:
    """A PIN_VERIFY_STRUCTURE (CCID rev 1.1 §6.1.11; pcsc-lite reader.h) for ``template``.

    ``messages`` is bNumberMessage, ``msg_index`` bMsgIndex; ``template`` (the
    whole command APDU, placeholder bytes where the PIN goes) is abData and
    its length ulDataLength.
    """
    apdu = _template(template)
    return (
        struct.pack(
            "<BBBBBHBBHB3sI",
            entry.timeout,  # bTimerOut
            entry.timeout2,  # bTimerOut2
            entry.format_string,  # bmFormatString
            entry.block_string,  # bmPINBlockString
            entry.length_format,  # bmPINLengthFormat
            entry.max_extra_digit,  # wPINMaxExtraDigit
            entry.validation,  # bEntryValidationCondition
            _byte("bNumberMessage", messages),
            entry.lang_id,  # wLangId
            _byte("bMsgIndex", msg_index),
            entry.teo_prologue,  # bTeoPrologue[3]
            len(apdu),  # ulDataLength
        )
        + apdu  # abData
    )


def modify_structure(
    template: bytes,
    entry: PinEntry,
    *,
    offset_old: int,
    offset_new: int,
    confirm: int = CONFIRM_NEW_PIN | ENTER_CURRENT_PIN,
    messages: int = 3,
    msg_indexes: tuple[int, int, int] = (0, 1, 2),
) -> bytes:
    """A PIN_MODIFY_STRUCTURE (CCID rev 1.1 §6.1.12; pcsc-lite reader.h) for ``template``.

    ``offset_old`` / ``offset_new`` are bInsertionOffsetOld / New (bytes, in
    the APDU data field, on top of bmFormatString's position); ``confirm`` is
    bConfirmPIN (bit 0: the new PIN is typed twice, bit 1: the current PIN is
    typed first); ``messages`` bNumberMessage, ``msg_indexes`` bMsgIndex1..3.
    """
    apdu = _template(template)
    first, second, third = (_byte("bMsgIndex", i) for i in msg_indexes)
    return (
        struct.pack(
            "<BBBBBBBHBBBHBBB3sI",
            entry.timeout,  # bTimerOut
            entry.timeout2,  # bTimerOut2
            entry.format_string,  # bmFormatString
            entry.block_string,  # bmPINBlockString
            entry.length_format,  # bmPINLengthFormat
            _byte("bInsertionOffsetOld", offset_old),
            _byte("bInsertionOffsetNew", offset_new),
            entry.max_extra_digit,  # wPINMaxExtraDigit
            _byte("bConfirmPIN", confirm),
            entry.validation,  # bEntryValidationCondition
            _byte("bNumberMessage", messages),
            entry.lang_id,  # wLangId
            first,  # bMsgIndex1
            second,  # bMsgIndex2
            third,  # bMsgIndex3
            entry.teo_prologue,  # bTeoPrologue[3]
            len(apdu),  # ulDataLength
        )
        + apdu  # abData
    )


# --- reading what a reader offers ----------------------------------------------


def parse_features(answer: bytes) -> dict[int, int]:
    """Feature tag → control code from a CM_IOCTL_GET_FEATURE_REQUEST answer.

    Each entry is tag (1 byte) ‖ length 04 ‖ control code (4 bytes, big-endian);
    an answer that does not split into such entries is a :class:`ProtocolError`.
    """
    features: dict[int, int] = {}
    rest = bytes(answer)
    while rest:
        if len(rest) < 2:
            raise ProtocolError(
                _("the reader's feature list is truncated: {count} byte(s) left over").format(
                    count=len(rest)
                )
            )
        tag, length = rest[0], rest[1]
        if length != 4:
            raise ProtocolError(
                _(
                    "the reader's feature list is malformed: feature 0x{tag:02X} has a "
                    "{length}-byte value, a control code has 4"
                ).format(tag=tag, length=length)
            )
        if len(rest) < 6:
            raise ProtocolError(
                _("the reader's feature list is truncated inside feature 0x{tag:02X}").format(
                    tag=tag
                )
            )
        if tag in features:
            raise ProtocolError(
                _("the reader's feature list names feature 0x{tag:02X} twice").format(tag=tag)
            )
        features[tag] = int.from_bytes(rest[2:6], "big")
        rest = rest[6:]
    return features


def reader_features(transport: Transport) -> dict[int, int]:
    """The reader's features (tag → control code); empty when it has no control interface."""
    try:
        answer = transport.control(CM_IOCTL_GET_FEATURE_REQUEST)
    except ReaderControlUnsupported:
        return {}
    return parse_features(answer)


def has_pin_pad(features: dict[int, int]) -> bool:
    """Whether the reader verifies a PIN typed on its own keypad (FEATURE_VERIFY_PIN_DIRECT)."""
    return FEATURE_VERIFY_PIN_DIRECT in features


@dataclass(frozen=True)
class PinProperties:
    """What the reader says about its PIN pad (FEATURE_GET_TLV_PROPERTIES or _IFD_PIN_PROPERTIES).

    ``values`` holds every property read, by its tag (integers little-endian,
    sFirmwareID as text); the named fields are None when the reader left them out.
    """

    values: dict[int, int | str]

    def _int(self, tag: int) -> int | None:
        value = self.values.get(tag)
        return value if isinstance(value, int) else None

    @property
    def lcd_layout(self) -> int | None:
        """wLcdLayout: 0 no display, else (lines << 8 | characters per line)."""
        return self._int(PROPERTY_wLcdLayout)

    @property
    def entry_validation(self) -> int | None:
        """bEntryValidationCondition the reader supports."""
        return self._int(PROPERTY_bEntryValidationCondition)

    @property
    def timeout2(self) -> int | None:
        """bTimeOut2: seconds after the first key stroke."""
        return self._int(PROPERTY_bTimeOut2)

    @property
    def min_pin_size(self) -> int | None:
        return self._int(PROPERTY_bMinPINSize)

    @property
    def max_pin_size(self) -> int | None:
        return self._int(PROPERTY_bMaxPINSize)

    @property
    def firmware(self) -> str | None:
        value = self.values.get(PROPERTY_sFirmwareID)
        return value if isinstance(value, str) else None


def parse_tlv_properties(answer: bytes) -> PinProperties:
    """The FEATURE_GET_TLV_PROPERTIES answer: tag ‖ length ‖ value, integers little-endian."""
    values: dict[int, int | str] = {}
    rest = bytes(answer)
    while rest:
        if len(rest) < 2 or len(rest) < 2 + rest[1]:
            raise ProtocolError(_("the reader's PIN pad properties are truncated"))
        tag, length = rest[0], rest[1]
        raw = rest[2 : 2 + length]
        if tag == PROPERTY_sFirmwareID:
            values[tag] = raw.decode("ascii", errors="replace")
        else:
            values[tag] = int.from_bytes(raw, "little")
        rest = rest[2 + length :]
    return PinProperties(values)


def parse_pin_properties(answer: bytes) -> PinProperties:
    """The FEATURE_IFD_PIN_PROPERTIES answer: PIN_PROPERTIES_STRUCTURE (reader.h).

    wLcdLayout (2 bytes, little-endian) ‖ bEntryValidationCondition ‖ bTimeOut2.
    """
    if len(answer) != 4:
        raise ProtocolError(
            _(
                "the reader's PIN properties are {count} byte(s), PIN_PROPERTIES_STRUCTURE is 4"
            ).format(count=len(answer))
        )
    layout, validation, timeout2 = struct.unpack("<HBB", answer)
    return PinProperties(
        {
            PROPERTY_wLcdLayout: layout,
            PROPERTY_bEntryValidationCondition: validation,
            PROPERTY_bTimeOut2: timeout2,
        }
    )


def pin_properties(
    transport: Transport, features: dict[int, int] | None = None
) -> PinProperties | None:
    """The PIN pad's properties where the reader offers them (TLV first), else None."""
    if features is None:
        features = reader_features(transport)
    if FEATURE_GET_TLV_PROPERTIES in features:
        return parse_tlv_properties(transport.control(features[FEATURE_GET_TLV_PROPERTIES]))
    if FEATURE_IFD_PIN_PROPERTIES in features:
        return parse_pin_properties(transport.control(features[FEATURE_IFD_PIN_PROPERTIES]))
    return None


def check_pad_answer(answer: bytes) -> bytes:
    """The card's response from a VERIFY / MODIFY PIN DIRECT answer, else the pad's typed error.

    6400 timeout, 6401 cancelled, 6402 the new PINs differ, 6403 wrong PIN
    length: the pad's own words (the card got no command). Any other answer is
    the card's response (data ‖ SW) and is returned as it is.
    """
    if len(answer) < 2:
        raise MalformedResponse(len(answer))
    if len(answer) == 2:
        sw = int.from_bytes(answer, "big")
        error = PAD_ERRORS.get(sw)
        if error is not None:
            raise error(sw)
    return bytes(answer)


def pin_pad_control(
    transport: Transport, features: dict[int, int], feature: int, structure: bytes
) -> bytes:
    """Send ``structure`` to the control code of ``feature``; the card's response, checked."""
    code = features.get(feature)
    if code is None:
        raise ReaderControlUnsupported(
            _(
                "{reader}: the reader has no PIN pad for this (feature 0x{feature:02X} "
                "missing from its feature list)"
            ).format(reader=transport.name, feature=feature)
        )
    return check_pad_answer(transport.control(code, structure))
