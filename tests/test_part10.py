"""PC/SC part 10 on the host (issue 16 items 1-2): features, PIN pad structures, pad errors.

The expected structures are written out by hand from the field layout of USB
CCID rev 1.1 §6.1.11 (PIN_VERIFY_STRUCTURE) and §6.1.12 (PIN_MODIFY_STRUCTURE)
as pcsc-lite's reader.h declares them, one comment per field. The PC/SC path is
checked down to the ``SCardControl`` call with the binding replaced: vpcd has no
part 10 (vsmartcard issues 264, 276), so no real pcscd reader can answer here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from smartcard import scard

from sscard import errors
from sscard.national import UNCLASSIFIED
from sscard.securepin import (
    secure_change,
    secure_verify,
    social_security_change,
    social_security_verify,
)
from sscard.transport import InProcessTransport, part10, pcsc
from sscard.transport.part10 import (
    CM_IOCTL_GET_FEATURE_REQUEST,
    FEATURE_GET_TLV_PROPERTIES,
    FEATURE_IFD_PIN_PROPERTIES,
    FEATURE_MODIFY_PIN_DIRECT,
    FEATURE_VERIFY_PIN_DIRECT,
    SCARD_CTL_CODE,
    PinEntry,
    has_pin_pad,
    parse_features,
    pin_properties,
    reader_features,
)

# --- the social security card's structures, byte by byte ------------------------

VERIFY_STRUCTURE = bytes(
    [
        0x1E,  # bTimerOut: 30 s
        0x1E,  # bTimerOut2: 30 s after the first key
        0x81,  # bmFormatString: 1 bytes units | 0000 position 0 | 0 left | 01 BCD
        0x03,  # bmPINBlockString: 0000 no PIN length field | 0011 3-byte PIN block
        0x00,  # bmPINLengthFormat: no PIN length in the APDU
        0x06,  # wPINMaxExtraDigit (LE) low byte: maximum 6 digits
        0x06,  # wPINMaxExtraDigit high byte: minimum 6 digits
        0x02,  # bEntryValidationCondition: validation key pressed
        0x01,  # bNumberMessage: one message
        0x04,  # wLangId (LE) low byte: 0x0804 Chinese (PRC)
        0x08,  # wLangId high byte
        0x00,  # bMsgIndex: message 0 ("enter PIN")
        0x00,  # bTeoPrologue[0]
        0x00,  # bTeoPrologue[1]
        0x00,  # bTeoPrologue[2]
        0x08,  # ulDataLength (LE, 4 bytes): 8-byte APDU
        0x00,
        0x00,
        0x00,
        # abData: VERIFY 00 20 00 00, Lc 03, PIN placeholder FF FF FF
        0x00,
        0x20,
        0x00,
        0x00,
        0x03,
        0xFF,
        0xFF,
        0xFF,
    ]
)

MODIFY_STRUCTURE = bytes(
    [
        0x1E,  # bTimerOut: 30 s
        0x1E,  # bTimerOut2: 30 s after the first key
        0x81,  # bmFormatString: bytes units, position 0 (the offsets place the PINs), left, BCD
        0x03,  # bmPINBlockString: no PIN length field, 3-byte PIN block
        0x00,  # bmPINLengthFormat: no PIN length in the APDU
        0x00,  # bInsertionOffsetOld: current PIN at data offset 0
        0x04,  # bInsertionOffsetNew: new PIN at data offset 4 (after old ‖ FF)
        0x06,  # wPINMaxExtraDigit (LE) low byte: maximum 6 digits
        0x06,  # wPINMaxExtraDigit high byte: minimum 6 digits
        0x03,  # bConfirmPIN: bit 0 confirm the new PIN | bit 1 enter the current PIN
        0x02,  # bEntryValidationCondition: validation key pressed
        0x03,  # bNumberMessage: three messages
        0x04,  # wLangId (LE) low byte: 0x0804 Chinese (PRC)
        0x08,  # wLangId high byte
        0x00,  # bMsgIndex1: "enter the current PIN"
        0x01,  # bMsgIndex2: "enter the new PIN"
        0x02,  # bMsgIndex3: "enter the new PIN again"
        0x00,  # bTeoPrologue[0]
        0x00,  # bTeoPrologue[1]
        0x00,  # bTeoPrologue[2]
        0x0C,  # ulDataLength (LE, 4 bytes): 12-byte APDU
        0x00,
        0x00,
        0x00,
        # abData: CHANGE PIN 80 5E 01 00, Lc 07, old FF FF FF, separator FF, new FF FF FF
        0x80,
        0x5E,
        0x01,
        0x00,
        0x07,
        0xFF,
        0xFF,
        0xFF,
        0xFF,
        0xFF,
        0xFF,
        0xFF,
    ]
)


def test_the_verify_structure_of_the_social_security_card() -> None:
    assert social_security_verify() == VERIFY_STRUCTURE
    assert len(VERIFY_STRUCTURE) == part10.VERIFY_HEADER + 8


def test_the_modify_structure_of_the_social_security_card() -> None:
    assert social_security_change() == MODIFY_STRUCTURE
    assert len(MODIFY_STRUCTURE) == part10.MODIFY_HEADER + 12


def test_the_timeout_is_the_callers() -> None:
    assert social_security_verify(timeout=90)[:2] == b"\x5a\x5a"  # bTimerOut, bTimerOut2
    assert social_security_change(timeout=0)[:2] == b"\x00\x00"  # 0: the reader's default


def test_the_generic_builders_place_every_field() -> None:
    entry = PinEntry(
        format_string=part10.format_string(position=2, pin_format=part10.PIN_ASCII, right=True),
        block_string=part10.block_string(block_bytes=8, length_bits=4),
        length_format=0x11,
        min_digits=4,
        max_digits=8,
        validation=part10.VALIDATE_MAX_SIZE | part10.VALIDATE_KEY,
        lang_id=0x0409,
        timeout=15,
        timeout2=5,
    )
    template = bytes.fromhex("0020008108FFFFFFFFFFFFFFFF")
    v = part10.verify_structure(template, entry, messages=0xFF, msg_index=0)
    assert v[:19] == bytes(
        [
            15,  # bTimerOut
            5,  # bTimerOut2
            0x80 | 2 << 3 | 0x04 | 0x02,  # bmFormatString 0x96: bytes, position 2, right, ASCII
            0x48,  # bmPINBlockString: 4-bit length field, 8-byte block
            0x11,  # bmPINLengthFormat: bytes units, length at position 1
            8,  # wPINMaxExtraDigit low byte: maximum
            4,  # wPINMaxExtraDigit high byte: minimum
            0x03,  # bEntryValidationCondition: max size reached or key
            0xFF,  # bNumberMessage: the reader's default message
            0x09,  # wLangId low byte (0x0409)
            0x04,  # wLangId high byte
            0x00,  # bMsgIndex
            0,  # bTeoPrologue
            0,
            0,
            13,  # ulDataLength
            0,
            0,
            0,
        ]
    )
    assert v[19:] == template
    m = part10.modify_structure(
        template, entry, offset_old=0, offset_new=8, confirm=part10.CONFIRM_NEW_PIN, messages=2
    )
    assert m[5:7] == b"\x00\x08"  # bInsertionOffsetOld, bInsertionOffsetNew
    assert m[7:9] == b"\x08\x04"  # wPINMaxExtraDigit
    assert m[9] == 0x01 and m[11] == 0x02  # bConfirmPIN, bNumberMessage
    assert m[14:17] == b"\x00\x01\x02"  # bMsgIndex1..3
    assert m[20:24] == (13).to_bytes(4, "little") and m[24:] == template


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_digits": 0, "max_digits": 6},
        {"min_digits": 8, "max_digits": 6},
        {"min_digits": 6, "max_digits": 6, "lang_id": 0x10000},
        {"min_digits": 6, "max_digits": 6, "timeout": 256},
    ],
)
def test_a_pin_entry_out_of_range_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        PinEntry(format_string=0x81, block_string=0x03, **kwargs)


def test_a_template_shorter_than_a_header_is_refused() -> None:
    entry = PinEntry(format_string=0x81, block_string=0x03, min_digits=6, max_digits=6)
    with pytest.raises(ValueError, match="CLA INS P1 P2"):
        part10.verify_structure(b"\x00\x20\x00", entry)
    with pytest.raises(ValueError):
        part10.format_string(position=16, pin_format=part10.PIN_BCD)


# --- the feature list -------------------------------------------------------------

# The CCID driver numbers its features SCARD_CTL_CODE(0x330000 + tag).
CCID_FEATURES = bytes.fromhex(
    "06 04 42 33 00 06"  # FEATURE_VERIFY_PIN_DIRECT → 0x42330006
    "07 04 42 33 00 07"  # FEATURE_MODIFY_PIN_DIRECT → 0x42330007
    "0A 04 42 33 00 0A"  # FEATURE_IFD_PIN_PROPERTIES
    "12 04 42 33 00 12"  # FEATURE_GET_TLV_PROPERTIES
)


def test_the_feature_list_parses_to_tags_and_control_codes() -> None:
    assert CM_IOCTL_GET_FEATURE_REQUEST == 0x42000D48 == SCARD_CTL_CODE(3400)
    features = parse_features(CCID_FEATURES)
    assert features == {
        FEATURE_VERIFY_PIN_DIRECT: 0x42330006,
        FEATURE_MODIFY_PIN_DIRECT: 0x42330007,
        FEATURE_IFD_PIN_PROPERTIES: 0x4233000A,
        FEATURE_GET_TLV_PROPERTIES: 0x42330012,
    }
    assert has_pin_pad(features)
    assert parse_features(b"") == {} and not has_pin_pad({})
    assert not has_pin_pad({FEATURE_GET_TLV_PROPERTIES: 1})


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (CCID_FEATURES[:-1], "truncated"),  # the last control code is cut
        (CCID_FEATURES + b"\x13", "truncated"),  # a tag without a length
        (bytes.fromhex("06 02 42 33"), "2-byte value"),  # a length other than 4
        (b"\xde\xad\xbe\xef\x00\x01\x02", "value"),  # garbage
        (CCID_FEATURES[:6] * 2, "twice"),
    ],
)
def test_a_malformed_feature_list_is_a_protocol_error(answer: bytes, words: str) -> None:
    with pytest.raises(errors.ProtocolError, match=words) as raised:
        parse_features(answer)
    assert "feature list" in str(raised.value)


class FakeReader:
    """A Transport double: records control calls and answers from a table."""

    name = "fake pad"
    atr = b"\x3b\x00"
    connected = True

    def __init__(self, answers: dict[int, bytes]) -> None:
        self.answers = answers
        self.calls: list[tuple[int, bytes]] = []

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def reconnect(self, *, reset: bool = False) -> None: ...

    def transmit(self, apdu: bytes) -> bytes:
        raise AssertionError("a PIN pad command never goes through transmit")

    def control(self, code: int, data: bytes = b"") -> bytes:
        self.calls.append((code, bytes(data)))
        if code not in self.answers:
            raise errors.ReaderControlUnsupported(f"unknown control code {code:#x}")
        return self.answers[code]


def test_reader_features_asks_with_the_feature_request() -> None:
    reader = FakeReader({CM_IOCTL_GET_FEATURE_REQUEST: CCID_FEATURES})
    assert reader_features(reader)[FEATURE_VERIFY_PIN_DIRECT] == 0x42330006
    assert reader.calls == [(0x42000D48, b"")]
    assert reader_features(FakeReader({})) == {}  # no control interface: no features


def test_an_in_process_reader_has_no_control_interface() -> None:
    transport = InProcessTransport(None, name="counter 3")
    with pytest.raises(errors.ReaderControlUnsupported, match="no control interface") as raised:
        transport.control(CM_IOCTL_GET_FEATURE_REQUEST)
    assert "counter 3" in str(raised.value) and "0x42000D48" in str(raised.value)
    assert raised.value.national_code == UNCLASSIFIED  # −28416: no national word for it
    assert reader_features(transport) == {}


# --- PIN properties ---------------------------------------------------------------


def test_tlv_properties_are_read_little_endian() -> None:
    answer = bytes.fromhex(
        "01 02 10 02"  # wLcdLayout 0x0210: 2 lines of 16 characters
        "02 01 02"  # bEntryValidationCondition: key
        "03 01 1E"  # bTimeOut2 30 s
        "06 01 04"  # bMinPINSize 4
        "07 01 0C"  # bMaxPINSize 12
        "08 04 41 42 31 32"  # sFirmwareID "AB12"
        "0A 04 00 01 00 00"  # dwMaxAPDUDataSize 256
    )
    reader = FakeReader(
        {CM_IOCTL_GET_FEATURE_REQUEST: CCID_FEATURES, 0x42330012: answer, 0x4233000A: b"x"}
    )
    props = pin_properties(reader)
    assert props is not None
    assert (props.lcd_layout, props.entry_validation, props.timeout2) == (0x0210, 2, 30)
    assert (props.min_pin_size, props.max_pin_size, props.firmware) == (4, 12, "AB12")
    assert props.values[part10.PROPERTY_dwMaxAPDUDataSize] == 256
    assert reader.calls[-1] == (0x42330012, b"")  # TLV preferred over IFD_PIN_PROPERTIES
    with pytest.raises(errors.ProtocolError, match="truncated"):
        part10.parse_tlv_properties(answer[:-1])


def test_ifd_pin_properties_when_no_tlv_and_none_without_either() -> None:
    features = {FEATURE_IFD_PIN_PROPERTIES: 0x4233000A}
    reader = FakeReader({0x4233000A: bytes.fromhex("0000 02 0F")})  # no display, key, 15 s
    props = pin_properties(reader, features)
    assert props is not None
    assert (props.lcd_layout, props.entry_validation, props.timeout2) == (0, 2, 15)
    assert props.min_pin_size is None and props.firmware is None
    with pytest.raises(errors.ProtocolError, match="PIN_PROPERTIES_STRUCTURE"):
        pin_properties(FakeReader({0x4233000A: b"\x00\x00\x02"}), features)
    assert pin_properties(FakeReader({}), {FEATURE_VERIFY_PIN_DIRECT: 1}) is None


# --- secure VERIFY / CHANGE PIN and the pad's status words -------------------------

PAD = parse_features(CCID_FEATURES)


def test_secure_verify_sends_the_structure_to_the_verify_feature() -> None:
    reader = FakeReader({0x42330006: b"\x90\x00"})
    assert secure_verify(reader, PAD) == b"\x90\x00"
    assert reader.calls == [(0x42330006, VERIFY_STRUCTURE)]


def test_secure_change_sends_the_structure_to_the_modify_feature() -> None:
    reader = FakeReader({0x42330007: b"\x90\x00"})
    assert secure_change(reader, PAD) == b"\x90\x00"
    assert reader.calls == [(0x42330007, MODIFY_STRUCTURE)]


@pytest.mark.parametrize("answer", [b"\x63\xc2", b"\x69\x83", b"\x69\x85", b"\x01\x02\x90\x00"])
def test_the_cards_answer_is_returned_as_it_is(answer: bytes) -> None:
    reader = FakeReader({0x42330006: answer, 0x42330007: answer})
    assert secure_verify(reader, PAD) == answer
    assert secure_change(reader, PAD) == answer


@pytest.mark.parametrize(
    ("sw", "error", "code"),
    [
        (0x6400, errors.PinEntryTimedOut, -32),
        (0x6401, errors.PinEntryCancelled, -31),
        (0x6402, errors.PinsDiffer, -34),
        (0x6403, errors.PinLengthWrong, -33),
    ],
)
def test_the_pads_status_words_are_typed_errors(
    sw: int, error: type[errors.PinEntryFailed], code: int
) -> None:
    reader = FakeReader({0x42330007: sw.to_bytes(2, "big")})
    with pytest.raises(error) as raised:
        secure_change(reader, PAD)
    assert raised.value.sw == sw and raised.value.national_code == code
    assert isinstance(raised.value, errors.PinEntryFailed)
    assert f"SW {sw:04X}" in str(raised.value)


def test_a_short_answer_is_malformed_and_a_missing_feature_unsupported() -> None:
    with pytest.raises(errors.MalformedResponse):
        secure_verify(FakeReader({0x42330006: b"\x90"}), PAD)
    reader = FakeReader({})
    with pytest.raises(errors.ReaderControlUnsupported, match="no PIN pad"):
        secure_verify(reader, {FEATURE_GET_TLV_PROPERTIES: 0x42330012})
    with pytest.raises(errors.ReaderControlUnsupported, match="feature 0x07"):
        secure_change(reader, {FEATURE_VERIFY_PIN_DIRECT: 0x42330006})
    assert reader.calls == []


# --- the PC/SC path down to SCardControl ---------------------------------------------


class FakeScard:
    """pyscard's SCard* functions for one reader holding a card; records SCardControl."""

    def __init__(self, answers: dict[int, tuple[int, list[int]]]) -> None:
        self.answers = answers
        self.controls: list[tuple[int, int, list[int]]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(scard, "SCardEstablishContext", lambda scope: (0, 7))
        monkeypatch.setattr(scard, "SCardReleaseContext", lambda ctx: 0)
        monkeypatch.setattr(scard, "SCardConnect", lambda ctx, reader, share, protocols: (0, 99, 2))
        monkeypatch.setattr(scard, "SCardStatus", lambda card: (0, "Pad 00 00", 0, 2, [0x3B, 0x00]))
        monkeypatch.setattr(scard, "SCardDisconnect", lambda card, disposition: 0)
        monkeypatch.setattr(scard, "SCardControl", self.control)

    def control(self, card: int, code: int, data: list[int]) -> tuple[int, list[int]]:
        self.controls.append((card, code, list(data)))
        return self.answers.get(code, (scard.SCARD_E_UNSUPPORTED_FEATURE, []))


def test_pcsc_control_goes_to_scardcontrol(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeScard(
        {
            0x42000D48: (0, list(CCID_FEATURES)),
            0x42330006: (0, [0x63, 0xC1]),
            0x42330007: (0, [0x64, 0x01]),
        }
    )
    fake.install(monkeypatch)
    with pcsc.PcscTransport("Pad 00 00") as transport:
        features = reader_features(transport)
        assert has_pin_pad(features)
        assert secure_verify(transport, features) == b"\x63\xc1"
        with pytest.raises(errors.PinEntryCancelled):
            secure_change(transport, features)
    assert fake.controls == [
        (99, 0x42000D48, []),
        (99, 0x42330006, list(VERIFY_STRUCTURE)),
        (99, 0x42330007, list(MODIFY_STRUCTURE)),
    ]


@pytest.mark.parametrize(
    ("hresult", "error"),
    [
        (scard.SCARD_E_UNSUPPORTED_FEATURE, errors.ReaderControlUnsupported),
        (scard.SCARD_W_REMOVED_CARD, errors.CardRemoved),
        (scard.SCARD_E_NO_SERVICE, errors.NoService),
        (scard.SCARD_E_NOT_TRANSACTED, errors.CommunicationError),
    ],
)
def test_pcsc_control_errors_are_mapped(
    monkeypatch: pytest.MonkeyPatch, hresult: int, error: type[errors.SscardError]
) -> None:
    FakeScard({0x42000D48: (hresult, [])}).install(monkeypatch)
    with pcsc.PcscTransport("Pad 00 00") as transport, pytest.raises(error) as raised:
        transport.control(CM_IOCTL_GET_FEATURE_REQUEST)
    assert "Pad 00 00" in str(raised.value)


def test_pcsc_control_needs_a_connection() -> None:
    with pytest.raises(errors.NoCard, match="connect first"):
        pcsc.PcscTransport("Pad 00 00").control(CM_IOCTL_GET_FEATURE_REQUEST)


def test_readers_shows_the_pin_pad(monkeypatch: pytest.MonkeyPatch) -> None:
    from sscard.cli.main import cli

    FakeScard({0x42000D48: (0, list(CCID_FEATURES))}).install(monkeypatch)
    states = [
        pcsc.ReaderState("Pad 00 00", True, b"\x3b\x00"),
        pcsc.ReaderState("Empty 00 01", False, None),
        pcsc.ReaderState("Busy 00 02", True, b"\x3b\x00", in_use_exclusively=True),
    ]
    monkeypatch.setattr(pcsc, "reader_states", lambda names=None: states)
    env: dict[str, Any] = {"SSCARD_READER": None}
    result = CliRunner().invoke(cli, ["--json", "readers"], env=env)
    assert result.exit_code == 0, result.output
    pads = {r["name"]: r["pin_pad"] for r in json.loads(result.output)}
    assert pads == {"Pad 00 00": True, "Empty 00 01": None, "Busy 00 02": None}
    text = CliRunner().invoke(cli, ["readers"], env=env).output
    assert "Pad 00 00    card  3B00  PIN pad" in text
    assert "Empty 00 01  empty\n" in text
