"""An emulated PIN pad reader: PC/SC part 10 secure PIN entry, in process, for tests.

vsmartcard's vpcd has no part 10 (no ``SCardControl`` features), so the PIN pad
path is exercised here: :class:`EmulatedPinPad` is an in-process reader (an
:class:`~sscard.transport.inprocess.InProcessTransport`) with ``control``. It
answers ``CM_IOCTL_GET_FEATURE_REQUEST`` with its features and their control
codes, answers the PIN properties, and for FEATURE_VERIFY_PIN_DIRECT /
FEATURE_MODIFY_PIN_DIRECT parses the PIN_VERIFY_STRUCTURE /
PIN_MODIFY_STRUCTURE of CCID rev 1.1 §6.1.11–12 field by field (little-endian,
``ulDataLength`` must match), takes the next scripted key presses
(:meth:`EmulatedPinPad.press`), formats the digits (BCD or ASCII, left or right
justified, position in bytes or bits), inserts them into the APDU template and
sends it to the card. The answer is the card's response, or the reader's own
status word: 6400 timeout, 6401 cancelled, 6402 the new PINs differ, 6403 PIN
length wrong. A malformed structure gets 6700 (lengths) or 6A80 (a field this
pad cannot honour) and sends nothing to the card.

The digits never reach a log, a message or a repr (docs/card.md, "The emulated
PIN pad").
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntEnum

from sscard.errors import CardRemoved, NoCard, OperationFailed
from sscard.i18n import _
from sscard.transport.base import CardLike
from sscard.transport.inprocess import InProcessTransport
from sscard.vocab import SW

log = logging.getLogger("sscard.applets.pinpad")


def scard_ctl_code(code: int) -> int:
    """pcsc-lite's ``SCARD_CTL_CODE(code)``: the control code of a reader IOCTL."""
    return 0x42000000 + code


CM_IOCTL_GET_FEATURE_REQUEST = scard_ctl_code(3400)
"""Asks a reader for its part 10 features (answer: tag ‖ 04 ‖ control code, big-endian)."""


class Feature(IntEnum):
    """PC/SC part 10 feature tags this pad offers."""

    VERIFY_PIN_DIRECT = 0x06
    MODIFY_PIN_DIRECT = 0x07
    IFD_PIN_PROPERTIES = 0x0A
    GET_TLV_PROPERTIES = 0x12


class Property(IntEnum):
    """Tags of the FEATURE_GET_TLV_PROPERTIES answer (value little-endian)."""

    wLcdLayout = 0x01
    bEntryValidationCondition = 0x02
    bTimeOut2 = 0x03
    wLcdMaxCharacters = 0x04
    wLcdMaxLines = 0x05
    bMinPINSize = 0x06
    bMaxPINSize = 0x07
    sFirmwareID = 0x08
    bPPDUSupport = 0x09
    dwMaxAPDUDataSize = 0x0A


class PadStatus(IntEnum):
    """Status words the reader answers instead of the card's (CCID, part 10)."""

    TIMEOUT = 0x6400
    CANCELLED = 0x6401
    PINS_DIFFER = 0x6402
    LENGTH_WRONG = 0x6403


class Key(Enum):
    """Scripted key presses other than a PIN (a PIN is given as a digit string)."""

    CANCEL = "cancel"
    TIMEOUT = "timeout"  # the holder types nothing until the pad gives up


class PullAt(Enum):
    """When :meth:`EmulatedPinPad.pull_card` takes the card out."""

    ENTRY = "entry"  # while the holder types: the APDU never reaches the card
    APDU = "apdu"  # during the card's command: the power is cut (a tear)


MESSAGES: dict[int, tuple[str, str]] = {
    0x00: ("请输入密码", "Enter PIN"),
    0x01: ("请输入新密码", "Enter new PIN"),
    0x02: ("请再次输入新密码", "Enter new PIN again"),
}
"""The pad's message table by ``bMsgIndex``: (Chinese, English)."""

LANG_ZH_CN = 0x0804
"""``wLangId`` of Simplified Chinese; any other language gets the English text."""

LCD_LAYOUT = 0x0210  # 2 lines (high byte) of 16 characters (low byte)
VALIDATION_CONDITIONS = 0x07  # max size reached, validation key, timeout
MIN_PIN_SIZE, MAX_PIN_SIZE = 4, 12
FIRMWARE_ID = b"sscard emulated PIN pad"

_VERIFY_HEADER = 19  # bytes before abData in PIN_VERIFY_STRUCTURE
_MODIFY_HEADER = 24  # bytes before abData in PIN_MODIFY_STRUCTURE


@dataclass(frozen=True)
class Prompt:
    """A message the pad showed, by ``bMsgIndex``; ``text`` in the language asked."""

    msg_index: int
    lang_id: int
    zh: str
    en: str

    @property
    def text(self) -> str:
        return self.zh if self.lang_id == LANG_ZH_CN else self.en


class _Typed:
    """One scripted PIN entry (digits then OK); its repr hides the digits."""

    __slots__ = ("digits",)

    def __init__(self, digits: str) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return "_Typed(<hidden>)"


class _Refused(Exception):
    """Internal: the structure is malformed; answer ``sw`` and send nothing."""

    def __init__(self, sw: int, reason: str) -> None:
        super().__init__(reason)
        self.sw = sw
        self.reason = reason


class _Outcome(Exception):
    """Internal: the entry ended without a PIN; answer this reader status word."""

    def __init__(self, status: PadStatus) -> None:
        self.status = status


@dataclass(frozen=True)
class PinFormat:
    """The fields both structures share: how the digits are entered, checked and placed."""

    timer_out: int  # bTimerOut (s; 0: the pad's default)
    timer_out2: int  # bTimerOut2 (s after the first key)
    format_string: int  # bmFormatString
    block_string: int  # bmPINBlockString
    length_format: int  # bmPINLengthFormat
    min_digits: int  # wPINMaxExtraDigit high byte
    max_digits: int  # wPINMaxExtraDigit low byte
    validation: int  # bEntryValidationCondition (libccid's correction applied)
    lang_id: int  # wLangId

    @property
    def unit_bits(self) -> int:
        """bmFormatString bit 7: system units are bytes (1) or bits (0)."""
        return 8 if self.format_string & 0x80 else 1

    @property
    def position_bits(self) -> int:
        """bmFormatString bits 6–3: the PIN position in the APDU data, in system units."""
        return ((self.format_string >> 3) & 0x0F) * self.unit_bits

    @property
    def right_justified(self) -> bool:
        return bool(self.format_string & 0x04)

    @property
    def pin_type(self) -> int:
        """bmFormatString bits 1–0: 00 binary, 01 BCD, 10 ASCII, 11 RFU."""
        return self.format_string & 0x03

    @property
    def digit_bits(self) -> int:
        return 4 if self.pin_type == 0x01 else 8

    @property
    def block_bits(self) -> int:
        """bmPINBlockString bits 3–0: the PIN block size in bytes."""
        return (self.block_string & 0x0F) * 8

    @property
    def length_bits(self) -> int:
        """bmPINBlockString bits 7–4: size of the PIN length field in bits (0: none)."""
        return self.block_string >> 4

    @property
    def length_position_bits(self) -> int:
        """bmPINLengthFormat: bit 4 units are bytes, bits 3–0 the position in those units."""
        unit = 8 if self.length_format & 0x10 else 1
        return (self.length_format & 0x0F) * unit


@dataclass(frozen=True)
class VerifyStructure:
    """A parsed PIN_VERIFY_STRUCTURE (CCID rev 1.1 §6.1.11)."""

    fmt: PinFormat
    number_message: int  # bNumberMessage
    msg_index: int  # bMsgIndex
    teo_prologue: bytes  # bTeoPrologue[3]
    apdu: bytes  # abData (ulDataLength bytes)


@dataclass(frozen=True)
class ModifyStructure:
    """A parsed PIN_MODIFY_STRUCTURE (CCID rev 1.1 §6.1.12)."""

    fmt: PinFormat
    offset_old: int  # bInsertionOffsetOld (bytes)
    offset_new: int  # bInsertionOffsetNew (bytes)
    confirm_pin: int  # bConfirmPIN: bit 0 confirm the new PIN, bit 1 enter the current PIN
    number_message: int  # bNumberMessage
    msg_indexes: tuple[int, int, int]  # bMsgIndex1..3
    teo_prologue: bytes  # bTeoPrologue[3]
    apdu: bytes  # abData (ulDataLength bytes)


def _le(data: bytes, offset: int, size: int) -> int:
    return int.from_bytes(data[offset : offset + size], "little")


def _pin_format(data: bytes, *, extra_digit_at: int, validation_at: int, lang_at: int) -> PinFormat:
    """The shared fields; ``*_at``: where the two structures place the ones that move."""
    extra = _le(data, extra_digit_at, 2)
    validation = data[validation_at]
    if validation == 0 or validation > 0x07:  # libccid corrects it to "validation key"
        validation = 0x02
    return PinFormat(
        timer_out=data[0],
        timer_out2=data[1],
        format_string=data[2],
        block_string=data[3],
        length_format=data[4],
        min_digits=extra >> 8,
        max_digits=extra & 0xFF,
        validation=validation,
        lang_id=_le(data, lang_at, 2),
    )


def _template(data: bytes, header: int) -> bytes:
    """abData after checking ``ulDataLength`` (the 4 bytes before it) against the rest."""
    if len(data) < header + 4:
        raise _Refused(SW.WRONG_LENGTH, f"structure of {len(data)} bytes is too short")
    declared = _le(data, header - 4, 4)
    if declared != len(data) - header:
        raise _Refused(
            SW.WRONG_LENGTH,
            f"ulDataLength {declared} does not match the {len(data) - header} bytes of abData",
        )
    return data[header:]


def parse_verify(data: bytes) -> VerifyStructure:
    """Parse a PIN_VERIFY_STRUCTURE; :class:`_Refused` when malformed."""
    apdu = _template(data, _VERIFY_HEADER)
    fmt = _pin_format(data, extra_digit_at=5, validation_at=7, lang_at=9)
    structure = VerifyStructure(fmt, data[8], data[11], bytes(data[12:15]), apdu)
    if structure.number_message not in (0x00, 0x01, 0xFF):
        raise _Refused(SW.WRONG_DATA, f"bNumberMessage {structure.number_message:#04x}")
    if structure.number_message == 0x01:
        _check_message(structure.msg_index)
    _check_format(fmt, apdu, (0,))
    return structure


def parse_modify(data: bytes) -> ModifyStructure:
    """Parse a PIN_MODIFY_STRUCTURE; :class:`_Refused` when malformed."""
    apdu = _template(data, _MODIFY_HEADER)
    fmt = _pin_format(data, extra_digit_at=7, validation_at=10, lang_at=12)
    structure = ModifyStructure(
        fmt,
        offset_old=data[5],
        offset_new=data[6],
        confirm_pin=data[9],
        number_message=data[11],
        msg_indexes=(data[14], data[15], data[16]),
        teo_prologue=bytes(data[17:20]),
        apdu=apdu,
    )
    if structure.confirm_pin > 0x03:
        raise _Refused(SW.WRONG_DATA, f"bConfirmPIN {structure.confirm_pin:#04x}")
    if structure.number_message > 3 and structure.number_message != 0xFF:
        raise _Refused(SW.WRONG_DATA, f"bNumberMessage {structure.number_message:#04x}")
    if structure.number_message != 0xFF:
        for index in structure.msg_indexes[: structure.number_message]:
            _check_message(index)
    offsets: tuple[int, ...] = (structure.offset_new,)
    if structure.confirm_pin & 0x02:
        offsets = (structure.offset_old, structure.offset_new)
    _check_format(fmt, apdu, offsets)
    return structure


def _check_message(index: int) -> None:
    if index not in MESSAGES:
        raise _Refused(SW.WRONG_DATA, f"bMsgIndex {index:#04x} is not in the pad's table")


def _check_format(fmt: PinFormat, apdu: bytes, offsets: tuple[int, ...]) -> None:
    """Refuse what this pad cannot do: unknown PIN type, sizes, blocks outside the data."""
    if fmt.pin_type not in (0x01, 0x02):
        kind = "binary" if fmt.pin_type == 0 else "RFU"
        raise _Refused(SW.WRONG_DATA, f"bmFormatString {fmt.format_string:#04x}: {kind} PIN type")
    if fmt.length_format & 0xE0:
        raise _Refused(SW.WRONG_DATA, f"bmPINLengthFormat {fmt.length_format:#04x}: RFU bits")
    if not MIN_PIN_SIZE <= fmt.min_digits <= fmt.max_digits <= MAX_PIN_SIZE:
        raise _Refused(
            SW.WRONG_DATA,
            f"wPINMaxExtraDigit {fmt.min_digits}..{fmt.max_digits} is not within "
            f"{MIN_PIN_SIZE}..{MAX_PIN_SIZE}",
        )
    if fmt.max_digits * fmt.digit_bits > fmt.block_bits:
        raise _Refused(
            SW.WRONG_DATA, f"bmPINBlockString {fmt.block_string:#04x}: the block is too small"
        )
    if fmt.length_bits and (1 << fmt.length_bits) <= fmt.max_digits:
        raise _Refused(
            SW.WRONG_DATA, f"bmPINBlockString {fmt.block_string:#04x}: length field too small"
        )
    data_bits = len(_apdu_data(apdu)) * 8
    for offset in offsets:
        base = fmt.position_bits + offset * 8
        if base + fmt.block_bits > data_bits:
            raise _Refused(SW.WRONG_DATA, "the PIN block lies outside the APDU data")
        length_end = offset * 8 + fmt.length_position_bits + fmt.length_bits
        if fmt.length_bits and length_end > data_bits:
            raise _Refused(SW.WRONG_DATA, "the PIN length field lies outside the APDU data")


def _apdu_data(apdu: bytes) -> bytes:
    """The data field of a short command APDU template; :class:`_Refused` if incoherent."""
    if len(apdu) < 4:
        raise _Refused(SW.WRONG_LENGTH, f"abData of {len(apdu)} bytes is no command APDU")
    if len(apdu) == 4:
        return b""
    lc = apdu[4]
    if lc == 0 or len(apdu) not in (5 + lc, 6 + lc):
        raise _Refused(SW.WRONG_LENGTH, f"abData: Lc {lc} does not match {len(apdu)} bytes")
    return apdu[5 : 5 + lc]


def _write_bits(field: bytearray, at: int, size: int, value: int) -> None:
    """Write ``value`` as ``size`` bits at bit ``at`` (counted from the first byte's MSB)."""
    total = len(field) * 8
    number = int.from_bytes(field, "big")
    shift = total - at - size
    mask = ((1 << size) - 1) << shift
    number = (number & ~mask) | ((value << shift) & mask)
    field[:] = number.to_bytes(len(field), "big")


def _insert(data: bytearray, fmt: PinFormat, offset: int, digits: str) -> None:
    """Place ``digits`` (and their count, when asked) into the APDU data ``data``."""
    base = fmt.position_bits + offset * 8
    pin_bits = len(digits) * fmt.digit_bits
    start = base + fmt.block_bits - pin_bits if fmt.right_justified else base
    for i, digit in enumerate(digits):
        value = int(digit) if fmt.pin_type == 0x01 else ord(digit)
        _write_bits(data, start + i * fmt.digit_bits, fmt.digit_bits, value)
    if fmt.length_bits:
        at = offset * 8 + fmt.length_position_bits  # like the PIN's, from the data's start
        _write_bits(data, at, fmt.length_bits, len(digits))


class EmulatedPinPad(InProcessTransport):
    """An in-process reader with a PIN pad (PC/SC part 10) in front of ``card``.

    Script the cardholder with :meth:`press`; the pad shows :attr:`prompts`;
    :meth:`pull_card` takes the card out at a chosen moment. ``features``
    limits what the pad offers (all four by default); ``codes`` maps a feature
    to its control code (default ``SCARD_CTL_CODE(3500 + tag)``).
    """

    def __init__(
        self,
        card: CardLike | None,
        name: str = "emulated PIN pad",
        *,
        features: tuple[Feature, ...] = tuple(Feature),
        codes: dict[Feature, int] | None = None,
    ) -> None:
        super().__init__(card, name)
        chosen = codes or {}
        self.codes: dict[Feature, int] = {
            f: chosen.get(f, scard_ctl_code(3500 + f)) for f in features
        }
        self.prompts: list[Prompt] = []
        self.refusals: list[str] = []
        """Why structures were refused, in order (no digit ever appears here)."""
        self._keys: deque[_Typed | Key] = deque()
        self._pull: tuple[PullAt, int] | None = None

    # --- the cardholder -------------------------------------------------------------

    def press(self, *keys: str | Key) -> None:
        """Queue key presses: a string is one PIN entry (its digits, then OK); ``Key``
        events cancel or let the pad time out. An empty queue times out."""
        for key in keys:
            if isinstance(key, Key):
                self._keys.append(key)
            elif key == "" or (key.isascii() and key.isdigit()):
                self._keys.append(_Typed(key))
            else:
                raise ValueError("a PIN pad has only digit keys")  # never echo the input

    @property
    def queued(self) -> int:
        """Scripted entries and key events not yet consumed."""
        return len(self._keys)

    def clear_keys(self) -> None:
        """Forget the scripted entries not yet consumed."""
        self._keys.clear()

    def pull_card(self, at: PullAt = PullAt.ENTRY, *, after: int = 0) -> None:
        """Take the card out during the next PIN operation (one shot).

        ``PullAt.ENTRY``: after ``after`` PIN entries of that operation are typed
        (0: before the first): no APDU reaches the card. ``PullAt.APDU``: during the
        card's command, after ``after`` of its EEPROM writes (a tear; a card that
        cannot tear is pulled just before the command). Either way the operation
        raises :class:`~sscard.errors.CardRemoved` and the reader is empty; put the
        card back with :meth:`insert`.
        """
        self._pull = (at, after)

    # --- part 10 ---------------------------------------------------------------------

    def control(self, code: int, data: bytes = b"") -> bytes:
        """``SCardControl``: the feature list, the PIN properties, or a secure PIN entry."""
        if code == CM_IOCTL_GET_FEATURE_REQUEST:
            return b"".join(bytes((f, 4)) + c.to_bytes(4, "big") for f, c in self.codes.items())
        feature = next((f for f, c in self.codes.items() if c == code), None)
        if feature is Feature.IFD_PIN_PROPERTIES:
            return LCD_LAYOUT.to_bytes(2, "little") + bytes((VALIDATION_CONDITIONS, 0))
        if feature is Feature.GET_TLV_PROPERTIES:
            return self._tlv_properties()
        if feature is Feature.VERIFY_PIN_DIRECT:
            return self._secure(bytes(data), self._verify)
        if feature is Feature.MODIFY_PIN_DIRECT:
            return self._secure(bytes(data), self._modify)
        raise OperationFailed(
            _("{reader}: no reader control code {code:#010x}").format(reader=self.name, code=code)
        )

    def _tlv_properties(self) -> bytes:
        values: list[tuple[Property, bytes]] = [
            (Property.wLcdLayout, LCD_LAYOUT.to_bytes(2, "little")),
            (Property.bEntryValidationCondition, bytes((VALIDATION_CONDITIONS,))),
            (Property.bTimeOut2, b"\x00"),
            (Property.wLcdMaxCharacters, (LCD_LAYOUT & 0xFF).to_bytes(2, "little")),
            (Property.wLcdMaxLines, (LCD_LAYOUT >> 8).to_bytes(2, "little")),
            (Property.bMinPINSize, bytes((MIN_PIN_SIZE,))),
            (Property.bMaxPINSize, bytes((MAX_PIN_SIZE,))),
            (Property.sFirmwareID, FIRMWARE_ID),
            (Property.bPPDUSupport, b"\x00"),
            (Property.dwMaxAPDUDataSize, (0).to_bytes(4, "little")),  # short APDUs only
        ]
        return b"".join(bytes((tag, len(value))) + value for tag, value in values)

    def _secure(self, data: bytes, operation: Callable[[bytes], bytes]) -> bytes:
        """Run a secure PIN operation; reader outcomes and refusals become status words."""
        if self.card is None:
            raise CardRemoved(
                _("{reader}: the card was removed; reinsert it and retry").format(reader=self.name)
            )
        if not self.connected:
            raise NoCard(
                _("{reader}: not connected to a card; connect first").format(reader=self.name)
            )
        try:
            response = operation(data)
        except _Refused as refused:
            self.refusals.append(refused.reason)
            log.warning(_("%s: structure refused (%s)"), self.name, refused.reason)
            return SW(refused.sw).encode()
        except _Outcome as outcome:
            log.info("%s: PIN entry ended: %s", self.name, outcome.status.name.lower())
            return outcome.status.to_bytes(2, "big")
        finally:
            self._pull = None
        log.info("%s: the card answered %s", self.name, response[-2:].hex().upper())
        return response

    def _verify(self, data: bytes) -> bytes:
        structure = parse_verify(data)
        fmt = structure.fmt
        index = {0x00: None, 0x01: structure.msg_index, 0xFF: 0x00}[structure.number_message]
        pin = self._entry(fmt, index, entered=0)
        apdu = bytearray(structure.apdu)
        body = bytearray(_apdu_data(structure.apdu))
        _insert(body, fmt, 0, pin)
        apdu[5 : 5 + len(body)] = body
        return self._send(bytes(apdu))

    def _modify(self, data: bytes) -> bytes:
        structure = parse_modify(data)
        fmt = structure.fmt
        steps = (["old"] if structure.confirm_pin & 0x02 else []) + ["new"]
        if structure.confirm_pin & 0x01:
            steps.append("confirm")
        defaults = {"old": 0x00, "new": 0x01, "confirm": 0x02}
        typed: dict[str, str] = {}
        for n, step in enumerate(steps):
            if structure.number_message == 0xFF:
                index: int | None = defaults[step]
            elif n < structure.number_message:
                index = structure.msg_indexes[n]
            else:
                index = None
            typed[step] = self._entry(fmt, index, entered=n)
        if "confirm" in typed and typed["confirm"] != typed["new"]:
            raise _Outcome(PadStatus.PINS_DIFFER)
        apdu = bytearray(structure.apdu)
        body = bytearray(_apdu_data(structure.apdu))
        if "old" in typed:
            _insert(body, fmt, structure.offset_old, typed["old"])
        _insert(body, fmt, structure.offset_new, typed["new"])
        apdu[5 : 5 + len(body)] = body
        return self._send(bytes(apdu))

    def _entry(self, fmt: PinFormat, msg_index: int | None, *, entered: int) -> str:
        """Show the prompt and take one PIN entry from the script, validated as ``fmt`` asks."""
        if self._pull is not None and self._pull == (PullAt.ENTRY, entered):
            self._pull = None
            self.remove()
            raise CardRemoved(
                _("{reader}: the card was pulled during PIN entry").format(reader=self.name)
            )
        if msg_index is not None:
            zh, en = MESSAGES[msg_index]
            self.prompts.append(Prompt(msg_index, fmt.lang_id, zh, en))
        key = self._keys.popleft() if self._keys else Key.TIMEOUT
        if key is Key.CANCEL:
            raise _Outcome(PadStatus.CANCELLED)
        if key is Key.TIMEOUT:
            raise _Outcome(PadStatus.TIMEOUT)
        assert isinstance(key, _Typed)
        digits = key.digits
        if fmt.validation & 0x01 and len(digits) >= fmt.max_digits:
            digits = digits[: fmt.max_digits]  # validated when the maximum is reached
        elif not fmt.validation & 0x06:  # neither OK nor the timer validates the entry
            raise _Outcome(PadStatus.TIMEOUT)
        if not fmt.min_digits <= len(digits) <= fmt.max_digits:
            raise _Outcome(PadStatus.LENGTH_WRONG)
        return digits

    def _send(self, apdu: bytes) -> bytes:
        """The formatted command to the card; a pull armed at the APDU tears it."""
        pull, self._pull = self._pull, None
        card = self.card
        if pull is not None and pull[0] is PullAt.APDU:
            arm = getattr(card, "arm_tear", None)
            if not callable(arm):
                self.remove()
            else:
                arm(1, pull[1])
                try:
                    return self.transmit(apdu)
                except CardRemoved:
                    self.remove()
                    raise
        return self.transmit(apdu)

    def __repr__(self) -> str:
        return f"EmulatedPinPad({self.name!r}, connected={self.connected}, queued={self.queued})"
