"""The emulated PIN pad reader (sscard.applets.pinpad): part 10 features, the CCID
PIN_VERIFY / PIN_MODIFY structures, scripted key presses, pulls, and secrecy.

The structures are written byte by byte from CCID rev 1.1 §6.1.11–12 here, on
purpose independent of the host side's builders.
"""

from __future__ import annotations

import pytest

from sscard.applets.cos import EmulatedCard
from sscard.applets.pinpad import (
    CM_IOCTL_GET_FEATURE_REQUEST,
    EmulatedPinPad,
    Feature,
    Key,
    PullAt,
)
from sscard.errors import CardRemoved, OperationFailed
from sscard.layout import load_profile
from tests.cardkit import PIN, issued_card, pin_works, session, tries_left

NEW_PIN = "246813"
WRONG_PIN = "111111"
LIMIT = load_profile("national-3").pin.try_limit

VERIFY_TEMPLATE = bytes.fromhex("00 20 00 00 03 FF FF FF")  # VERIFY, 3-byte BCD PIN
CHANGE_TEMPLATE = bytes.fromhex("80 5E 01 00 07 FF FF FF FF FF FF FF")  # old ‖ FF ‖ new


def verify_structure(
    template: bytes = VERIFY_TEMPLATE,
    *,
    format_string: int = 0x81,
    block_string: int = 0x03,
    length_format: int = 0x00,
    min_max: tuple[int, int] = (6, 6),
    validation: int = 0x02,
    number_message: int = 0x01,
    lang_id: int = 0x0804,
    data_length: int | None = None,
) -> bytes:
    """PIN_VERIFY_STRUCTURE, CCID rev 1.1 §6.1.11 (multi-byte fields little-endian)."""
    length = len(template) if data_length is None else data_length
    return (
        bytes(
            [
                0x1E,  # bTimerOut: 30 s
                0x00,  # bTimerOut2
                format_string,  # bmFormatString: 0x81 = bytes, position 0, left, BCD
                block_string,  # bmPINBlockString: no length field, 3-byte block
                length_format,  # bmPINLengthFormat: no PIN length in the APDU
                min_max[1],  # wPINMaxExtraDigit low byte: maximum digits
                min_max[0],  # wPINMaxExtraDigit high byte: minimum digits
                validation,  # bEntryValidationCondition: 02 validation key pressed
                number_message,  # bNumberMessage: one message
            ]
        )
        + lang_id.to_bytes(2, "little")  # wLangId: 0x0804 → 04 08
        + bytes([0x00])  # bMsgIndex: "enter PIN"
        + bytes(3)  # bTeoPrologue
        + length.to_bytes(4, "little")  # ulDataLength
        + template  # abData: the APDU template
    )


def modify_structure(
    template: bytes = CHANGE_TEMPLATE,
    *,
    format_string: int = 0x81,
    confirm: int = 0x03,
    number_message: int = 0x03,
    lang_id: int = 0x0804,
    offsets: tuple[int, int] = (0, 4),
    data_length: int | None = None,
) -> bytes:
    """PIN_MODIFY_STRUCTURE, CCID rev 1.1 §6.1.12 (multi-byte fields little-endian)."""
    length = len(template) if data_length is None else data_length
    return (
        bytes(
            [
                0x1E,  # bTimerOut
                0x00,  # bTimerOut2
                format_string,  # bmFormatString: bytes, position 0, left, BCD
                0x03,  # bmPINBlockString: 3-byte block, no length field
                0x00,  # bmPINLengthFormat
                offsets[0],  # bInsertionOffsetOld: old PIN at data byte 0
                offsets[1],  # bInsertionOffsetNew: new PIN at data byte 4
                0x06,  # wPINMaxExtraDigit low byte: maximum 6
                0x06,  # wPINMaxExtraDigit high byte: minimum 6
                confirm,  # bConfirmPIN: 01 confirm the new PIN, 02 enter the current one
                0x02,  # bEntryValidationCondition: validation key pressed
                number_message,  # bNumberMessage: three messages
            ]
        )
        + lang_id.to_bytes(2, "little")  # wLangId
        + bytes([0x00, 0x01, 0x02])  # bMsgIndex1..3: enter PIN, new PIN, new PIN again
        + bytes(3)  # bTeoPrologue
        + length.to_bytes(4, "little")  # ulDataLength
        + template  # abData
    )


def features(pad: EmulatedPinPad) -> dict[int, int]:
    """The feature TLV list (tag ‖ 04 ‖ control code big-endian) as tag → code."""
    answer = pad.control(CM_IOCTL_GET_FEATURE_REQUEST)
    found: dict[int, int] = {}
    for i in range(0, len(answer), 6):
        tag, length, value = answer[i], answer[i + 1], answer[i + 2 : i + 6]
        assert length == 4
        found[tag] = int.from_bytes(value, "big")
    return found


VERIFY_PIN_DIRECT, MODIFY_PIN_DIRECT = 0x06, 0x07
IFD_PIN_PROPERTIES, GET_TLV_PROPERTIES = 0x0A, 0x12


@pytest.fixture
def card() -> EmulatedCard:
    return issued_card("national-3")


@pytest.fixture
def pad(card: EmulatedCard) -> EmulatedPinPad:
    """The pad connected to an issued card, its PIN's DF selected."""
    reader = EmulatedPinPad(card)
    reader.connect()
    c = session(reader, "national-3")
    c.select(c.profile.pin.df)
    return reader


def verify(pad: EmulatedPinPad, structure: bytes | None = None) -> bytes:
    return pad.control(features(pad)[VERIFY_PIN_DIRECT], structure or verify_structure())


def modify(pad: EmulatedPinPad, structure: bytes | None = None) -> bytes:
    return pad.control(features(pad)[MODIFY_PIN_DIRECT], structure or modify_structure())


def wrong_pin_sw() -> bytes:
    """63Cx after the first wrong PIN: x = the tries left."""
    return bytes((0x63, 0xC0 | (LIMIT - 1)))


# --- features and properties ---------------------------------------------------------


def test_feature_list_names_every_feature_with_its_control_code(pad: EmulatedPinPad) -> None:
    found = features(pad)
    assert set(found) == {VERIFY_PIN_DIRECT, MODIFY_PIN_DIRECT, IFD_PIN_PROPERTIES, 0x12}
    for tag, code in found.items():
        assert code == 0x42000000 + 3500 + tag  # SCARD_CTL_CODE(3500 + tag)
    assert CM_IOCTL_GET_FEATURE_REQUEST == 0x42000000 + 3400


def test_pin_properties_and_tlv_properties(pad: EmulatedPinPad) -> None:
    props = pad.control(features(pad)[IFD_PIN_PROPERTIES])
    assert len(props) == 4  # wLcdLayout (LE), bEntryValidationCondition, bTimeOut2
    assert props[2] & 0x02  # the validation key ends an entry
    tlv = pad.control(features(pad)[GET_TLV_PROPERTIES])
    values: dict[int, bytes] = {}
    i = 0
    while i < len(tlv):
        values[tlv[i]] = tlv[i + 2 : i + 2 + tlv[i + 1]]
        i += 2 + tlv[i + 1]
    assert values[0x06][0] <= 6 <= values[0x07][0]  # bMinPINSize, bMaxPINSize
    assert values[0x02] == props[2:3]  # bEntryValidationCondition
    assert values[0x01] == props[0:2]  # wLcdLayout


def test_a_pad_offers_only_the_features_it_has(card: EmulatedCard) -> None:
    pad = EmulatedPinPad(card, features=(Feature.VERIFY_PIN_DIRECT,))
    assert set(features(pad)) == {VERIFY_PIN_DIRECT}
    with pytest.raises(OperationFailed, match="no reader control code"):
        pad.control(0x42000000 + 3500 + MODIFY_PIN_DIRECT, modify_structure())


# --- VERIFY -----------------------------------------------------------------------------


def test_verify_with_the_right_pin(pad: EmulatedPinPad, card: EmulatedCard) -> None:
    pad.press(PIN)
    assert verify(pad) == bytes.fromhex("9000")
    assert [p.text for p in pad.prompts] == ["请输入密码"]
    assert pad.queued == 0
    assert tries_left(card) == LIMIT


def test_verify_with_a_wrong_pin_spends_a_try(pad: EmulatedPinPad, card: EmulatedCard) -> None:
    pad.press(WRONG_PIN)
    assert verify(pad) == wrong_pin_sw()
    assert tries_left(card) == LIMIT - 1


def test_cancel_answers_6401_and_spends_no_try(pad: EmulatedPinPad, card: EmulatedCard) -> None:
    pad.press(Key.CANCEL)
    assert verify(pad) == bytes.fromhex("6401")
    assert tries_left(card) == LIMIT


@pytest.mark.parametrize("keys", [(Key.TIMEOUT,), ()], ids=["timeout", "nobody-types"])
def test_timeout_answers_6400(pad: EmulatedPinPad, card: EmulatedCard, keys: tuple[Key]) -> None:
    pad.press(*keys)
    assert verify(pad) == bytes.fromhex("6400")
    assert tries_left(card) == LIMIT


@pytest.mark.parametrize("typed", ["12345", "1234567", ""])
def test_wrong_length_answers_6403(pad: EmulatedPinPad, card: EmulatedCard, typed: str) -> None:
    pad.press(typed)
    assert verify(pad) == bytes.fromhex("6403")
    assert tries_left(card) == LIMIT


def test_max_size_reached_validates_without_ok(pad: EmulatedPinPad) -> None:
    pad.press(PIN + "9")  # the seventh key is never taken: the sixth validated
    assert verify(pad, verify_structure(validation=0x01)) == bytes.fromhex("9000")


def test_english_prompt_for_another_language(pad: EmulatedPinPad) -> None:
    pad.press(PIN)
    assert verify(pad, verify_structure(lang_id=0x0409)) == bytes.fromhex("9000")
    assert [p.text for p in pad.prompts] == ["Enter PIN"]
    assert pad.prompts[0].zh == "请输入密码"


def test_no_message_shows_no_prompt(pad: EmulatedPinPad) -> None:
    pad.press(PIN)
    assert verify(pad, verify_structure(number_message=0x00)) == bytes.fromhex("9000")
    assert pad.prompts == []


# --- CHANGE PIN (MODIFY) -------------------------------------------------------------------


def test_modify_changes_the_pin(pad: EmulatedPinPad, card: EmulatedCard) -> None:
    pad.press(PIN, NEW_PIN, NEW_PIN)
    assert modify(pad) == bytes.fromhex("9000")
    assert [p.text for p in pad.prompts] == ["请输入密码", "请输入新密码", "请再次输入新密码"]
    assert pin_works(card, NEW_PIN)
    assert not pin_works(card, PIN)


def test_modify_confirmation_differing_answers_6402(
    pad: EmulatedPinPad, card: EmulatedCard
) -> None:
    pad.press(PIN, NEW_PIN, "246814")
    assert modify(pad) == bytes.fromhex("6402")
    assert tries_left(card) == LIMIT
    assert pin_works(card, PIN)


def test_modify_with_a_wrong_current_pin(pad: EmulatedPinPad, card: EmulatedCard) -> None:
    pad.press(WRONG_PIN, NEW_PIN, NEW_PIN)
    assert modify(pad) == wrong_pin_sw()
    assert pin_works(card, PIN)


def test_modify_cancel_on_the_second_entry(pad: EmulatedPinPad, card: EmulatedCard) -> None:
    pad.press(PIN, Key.CANCEL, NEW_PIN)
    assert modify(pad) == bytes.fromhex("6401")
    assert pad.queued == 1  # the pad stopped at the cancel
    assert pin_works(card, PIN)


def test_modify_new_pin_of_wrong_length(pad: EmulatedPinPad, card: EmulatedCard) -> None:
    pad.press(PIN, "24681", "24681")
    assert modify(pad) == bytes.fromhex("6403")
    assert pin_works(card, PIN)


def test_modify_without_confirmation_asks_twice(pad: EmulatedPinPad, card: EmulatedCard) -> None:
    pad.press(PIN, NEW_PIN)
    assert modify(pad, modify_structure(confirm=0x02, number_message=0x02)) == bytes.fromhex("9000")
    assert [p.msg_index for p in pad.prompts] == [0x00, 0x01]
    assert pin_works(card, NEW_PIN)


# --- formatting other than the social security card's ------------------------------------


class Recorder:
    """A card that answers 9000 and keeps the APDUs it got."""

    atr = bytes.fromhex("3B00")

    def __init__(self) -> None:
        self.apdus: list[bytes] = []

    def power_on(self) -> bytes:
        return self.atr

    def power_off(self) -> None:
        return None

    def process(self, apdu: bytes) -> bytes:
        self.apdus.append(bytes(apdu))
        return bytes.fromhex("9000")


def recorded(structure: bytes, *keys: str) -> bytes:
    card = Recorder()
    pad = EmulatedPinPad(card)
    pad.connect()
    pad.press(*keys)
    assert pad.control(features(pad)[VERIFY_PIN_DIRECT], structure) == bytes.fromhex("9000")
    return card.apdus[-1]


def test_iso_format_2_block_with_a_length_field_in_bits() -> None:
    structure = verify_structure(
        bytes.fromhex("00 20 00 81 08 20 FF FF FF FF FF FF FF"),
        format_string=0x89,  # bytes, PIN at data byte 1, left justified, BCD
        block_string=0x47,  # a 4-bit PIN length field; a 7-byte block
        length_format=0x04,  # the length at bit 4 (system units: bits)
        min_max=(4, 12),
    )
    assert recorded(structure, "1234") == bytes.fromhex("00 20 00 81 08 24 12 34 FF FF FF FF FF")


def test_ascii_right_justified() -> None:
    structure = verify_structure(
        bytes.fromhex("00 20 00 01 08") + b" " * 8,
        format_string=0x86,  # bytes, position 0, right justified, ASCII
        block_string=0x08,  # 8-byte block
        min_max=(4, 8),
    )
    assert recorded(structure, "1234") == bytes.fromhex("00 20 00 01 08") + b"    1234"


def test_position_in_bits() -> None:
    structure = verify_structure(
        bytes.fromhex("00 20 00 00 04 FF FF FF FF"),
        format_string=0x21,  # bits, PIN at bit 4, left justified, BCD
        block_string=0x03,
        min_max=(4, 6),
    )
    assert recorded(structure, "1234") == bytes.fromhex("00 20 00 00 04 F1 23 4F FF")


# --- malformed structures: an error status, nothing sent, no key taken -------------------


MALFORMED_VERIFY = {
    "ulDataLength-too-big": (verify_structure(data_length=9), "6700"),
    "ulDataLength-too-small": (verify_structure(data_length=7), "6700"),
    "too-short": (verify_structure()[:20], "6700"),
    "RFU-PIN-type": (verify_structure(format_string=0x83), "6A80"),
    "binary-PIN-type": (verify_structure(format_string=0x80), "6A80"),
    "block-outside-data": (verify_structure(format_string=0x81 | (2 << 3)), "6A80"),
    "block-too-small": (verify_structure(block_string=0x02), "6A80"),
    "min-above-max": (verify_structure(min_max=(8, 6)), "6A80"),
    "bad-bNumberMessage": (verify_structure(number_message=0x02), "6A80"),
    "Lc-incoherent": (verify_structure(bytes.fromhex("00 20 00 00 05 FF FF FF")), "6700"),
}


@pytest.mark.parametrize("name", list(MALFORMED_VERIFY))
def test_malformed_verify_structure_gets_an_error_status(
    pad: EmulatedPinPad, card: EmulatedCard, name: str
) -> None:
    structure, sw = MALFORMED_VERIFY[name]
    pad.press(WRONG_PIN)
    assert verify(pad, structure) == bytes.fromhex(sw)
    assert pad.queued == 1  # no entry was taken
    assert pad.refusals
    assert tries_left(card) == LIMIT


MALFORMED_MODIFY = {
    "ulDataLength": (modify_structure(data_length=11), "6700"),
    "bNumberMessage": (modify_structure(number_message=0x04), "6A80"),
    "bConfirmPIN": (modify_structure(confirm=0x04), "6A80"),
    "new-offset-outside": (modify_structure(offsets=(0, 5)), "6A80"),
    "RFU-PIN-type": (modify_structure(format_string=0x83), "6A80"),
}


@pytest.mark.parametrize("name", list(MALFORMED_MODIFY))
def test_malformed_modify_structure_gets_an_error_status(
    pad: EmulatedPinPad, card: EmulatedCard, name: str
) -> None:
    structure, sw = MALFORMED_MODIFY[name]
    pad.press(PIN, NEW_PIN, NEW_PIN)
    assert modify(pad, structure) == bytes.fromhex(sw)
    assert pad.queued == 3
    assert pin_works(card, PIN)


# --- pulling the card ----------------------------------------------------------------------


def test_pull_while_typing_raises_card_removed_and_spends_no_try(
    pad: EmulatedPinPad, card: EmulatedCard
) -> None:
    pad.press(WRONG_PIN)
    pad.pull_card(PullAt.ENTRY)
    with pytest.raises(CardRemoved):
        verify(pad)
    assert pad.card is None
    assert tries_left(card) == LIMIT
    assert pad.queued == 1  # the holder's entry was never taken


def test_no_card_in_the_reader_takes_no_entry(card: EmulatedCard) -> None:
    pad = EmulatedPinPad(None)
    pad.press(PIN)
    with pytest.raises(CardRemoved):
        pad.control(features(pad)[VERIFY_PIN_DIRECT], verify_structure())
    assert pad.queued == 1


@pytest.mark.parametrize("after", [0, 1, 2])
def test_pull_between_modify_entries(pad: EmulatedPinPad, card: EmulatedCard, after: int) -> None:
    pad.press(PIN, NEW_PIN, NEW_PIN)
    pad.pull_card(PullAt.ENTRY, after=after)
    with pytest.raises(CardRemoved):
        modify(pad)
    assert len(pad.prompts) == after
    assert pin_works(card, PIN)
    assert tries_left(card) == LIMIT


@pytest.mark.parametrize("writes", [0, 1, 2])
def test_tear_during_change_pin_leaves_one_pin(
    pad: EmulatedPinPad, card: EmulatedCard, writes: int
) -> None:
    pad.press(PIN, NEW_PIN, NEW_PIN)
    pad.pull_card(PullAt.APDU, after=writes)
    with pytest.raises(CardRemoved):
        modify(pad)
    assert pad.card is None
    assert pin_works(card, PIN) != pin_works(card, NEW_PIN)


def test_after_a_pull_the_card_goes_back_and_the_pad_works(
    pad: EmulatedPinPad, card: EmulatedCard
) -> None:
    pad.pull_card(PullAt.ENTRY)
    with pytest.raises(CardRemoved):
        verify(pad)
    pad.insert(card)
    pad.connect()
    c = session(pad, "national-3")
    c.select(c.profile.pin.df)
    pad.press(PIN)
    assert verify(pad) == bytes.fromhex("9000")


# --- secrecy ---------------------------------------------------------------------------------


def test_no_digit_in_logs_or_repr(
    pad: EmulatedPinPad, card: EmulatedCard, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(1)
    pad.press(PIN, PIN, NEW_PIN, NEW_PIN, WRONG_PIN)
    shown = [repr(pad), str(pad)]
    assert verify(pad) == bytes.fromhex("9000")
    assert modify(pad) == bytes.fromhex("9000")
    shown += [repr(pad), repr(pad._keys)]
    assert verify(pad) == wrong_pin_sw()
    assert verify(pad, verify_structure(data_length=3)) == bytes.fromhex("6700")
    text = caplog.text + "\n".join(shown) + repr(pad.prompts) + repr(pad.refusals)
    assert "queued=5" in shown[0]
    for secret in (PIN, NEW_PIN, WRONG_PIN):
        assert secret not in text
        assert " ".join(secret[i : i + 2] for i in range(0, 6, 2)) not in text
    assert caplog.records  # the pad did log its outcomes


def test_press_refuses_non_digits_without_echoing_them() -> None:
    pad = EmulatedPinPad(None)
    with pytest.raises(ValueError) as info:
        pad.press("12ab56")
    assert "12ab56" not in str(info.value)
