"""Record codecs: every codec class's own vectors, the never-written record, malformed records."""

from __future__ import annotations

import pytest

from sscard.errors import RecordDecodeError, RecordEncodeError
from sscard.layout import RecordCodec, codec_for, load_profile
from sscard.layout.codecs import CardId
from sscard.layout.loader import card_profiles, profile_schema

CASES = [
    pytest.param(cls, vector, id=f"{encoding}-{n}")
    for encoding, cls in sorted(RecordCodec.registry.items())
    for n, vector in enumerate(cls.vectors)
]


@pytest.mark.parametrize(("cls", "vector"), CASES)
def test_record_class_vectors_round_trip(cls: type[RecordCodec], vector: tuple) -> None:
    tag, length, hex_record, value = vector
    codec = cls(tag, length, "EFxx record 1 (test)")
    raw = bytes.fromhex(hex_record)
    assert len(raw) == 2 + length, "vector length must match its declared record length"
    assert codec.decode(raw) == value
    assert codec.encode(value) == raw


@pytest.mark.parametrize(("cls", "vector"), CASES)
def test_never_written_record_reads_as_absent(cls: type[RecordCodec], vector: tuple) -> None:
    tag, length, _, _ = vector
    codec = cls(tag, length)
    blank = bytes([tag, length]) + b"\xff" * length
    assert codec.decode(blank) is None
    assert codec.encode(None) == blank


@pytest.mark.parametrize(("cls", "vector"), CASES)
def test_malformed_records_raise_typed_error_naming_the_record(
    cls: type[RecordCodec], vector: tuple
) -> None:
    tag, length, hex_record, _ = vector
    raw = bytes.fromhex(hex_record)
    codec = cls(tag, length, "EF06 record 9 (example)")
    malformed = {
        "short": raw[:-1],
        "long": raw + b"\x00",
        "tag": bytes([tag ^ 0xFF]) + raw[1:],
        "length": raw[:1] + bytes([length + 1]) + raw[2:],
        "empty": b"",
    }
    for what, data in malformed.items():
        with pytest.raises(RecordDecodeError) as info:
            codec.decode(data)
        assert info.value.record == "EF06 record 9 (example)", what
        assert "EF06 record 9 (example)" in str(info.value)


def test_every_schema_encoding_has_a_codec_with_vectors() -> None:
    declared = set(profile_schema()["$defs"]["record"]["properties"]["encoding"]["enum"])
    assert declared == set(RecordCodec.registry)
    assert all(cls.vectors for cls in RecordCodec.registry.values())


def test_padding_bytes_are_zero_and_stripped() -> None:
    codec = codec_for("gbk", 0x09, 30, "EF06 record 2 (name)")
    raw = codec.encode("李四")
    assert raw[2:6] == "李四".encode("gbk")
    assert raw[6:] == b"\x00" * 26
    assert codec.decode(raw) == "李四"
    ascii_codec = codec_for("ascii", 0x41, 6)
    assert ascii_codec.encode("AB") == bytes.fromhex("4106") + b"AB" + b"\x00" * 4


def test_gbk_name_too_long_says_so() -> None:
    codec = codec_for("gbk", 0x09, 30, "EF06 record 2 (name)")
    codec.encode("张" * 15)  # 30 bytes fit exactly
    with pytest.raises(RecordEncodeError) as info:
        codec.encode("张" * 16)
    (field, message), *_ = info.value.problems
    assert field == "EF06 record 2 (name)"
    assert "32 bytes" in message and "30" in message


def test_gbk_unencodable_character_says_which() -> None:
    codec = codec_for("gbk", 0x09, 30, "EF06 record 2 (name)")
    with pytest.raises(RecordEncodeError) as info:
        codec.encode("王\U00020000")
    assert "U+20000" in str(info.value) and "GBK" in str(info.value)


def test_rare_characters_fit_the_name_extension_codec() -> None:
    codec = codec_for("gb18030", 0x4E, 20, "EF06 record 3 (name_ext)")
    raw = codec.encode("王\U00020000")
    assert codec.decode(raw) == "王\U00020000"


@pytest.mark.parametrize(
    ("encoding", "length", "value"),
    [
        ("bcd-date", 4, "20240131"),
        ("bcd-division", 3, "31000"),
        ("bcd-division", 3, "31000A"),
        ("code", 1, 256),
        ("ascii", 4, "3.000"),
        ("ascii", 4, "é"),
        ("binary", 1, b"\x01\x02"),
    ],
)
def test_values_that_do_not_fit_raise_encode_error(
    encoding: str, length: int, value: object
) -> None:
    with pytest.raises(RecordEncodeError):
        codec_for(encoding, 0x01, length, "EF05 record 1 (x)").encode(value)


@pytest.mark.parametrize("value_hex", ["20241331", "20230229", "2024013A", "00000000"])
def test_bcd_date_that_is_not_a_real_date_is_a_decode_error(value_hex: str) -> None:
    codec = codec_for("bcd-date", 0x05, 4, "EF05 record 5 (issue_date)")
    with pytest.raises(RecordDecodeError, match="EF05 record 5"):
        codec.decode(bytes.fromhex("0504" + value_hex))


def test_card_id_with_wrong_rid_is_a_decode_error() -> None:
    codec = codec_for("card-id", 0x01, 16, "EF05 record 1 (card_id)")
    raw = bytes.fromhex("0110" + "310000" + "A000000005" + "0011223344556677")
    with pytest.raises(RecordDecodeError, match="EF05 record 1"):
        codec.decode(raw)


PUBLIC_CARD_ID = "441800D1560000053030737878EC1A84"  # a real code, docs/card.md


def test_card_id_codec_reads_the_public_vector() -> None:
    codec = codec_for("card-id", 0x01, 16, "EF05 record 1 (card_id)")
    raw = bytes.fromhex("0110" + PUBLIC_CARD_ID)
    card_id = codec.decode(raw)
    assert card_id == CardId("441800", bytes.fromhex("30307378"), bytes.fromhex("78EC1A84"))
    assert card_id.hex == PUBLIC_CARD_ID and card_id.code == raw[2:]
    assert codec.encode(card_id) == raw
    assert any(v[2] == "0110" + PUBLIC_CARD_ID for v in type(codec).vectors)


def test_card_id_sequence_and_mac_input() -> None:
    serial = bytes.fromhex("0102030405060708")
    assert CardId.sequence_of(serial) == bytes.fromhex("05060708")  # last 4 bytes [ours]
    card_id = CardId("310000", CardId.sequence_of(serial), bytes(4))
    # region || RID || card sequence || chip serial; the MAC itself is not covered
    assert card_id.mac_input(serial) == bytes.fromhex("310000D15600000505060708") + serial


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (CardId("31000", bytes(4), bytes(4)), "6 digits"),
        (CardId("310000", bytes(3), bytes(4)), "4 bytes"),
        (CardId("310000", bytes(4), bytes(5)), "4 bytes"),
        ("441800D1560000053030737878EC1A84", "CardId"),
    ],
)
def test_malformed_card_ids_do_not_encode(value: object, words: str) -> None:
    codec = codec_for("card-id", 0x01, 16, "EF05 record 1 (card_id)")
    with pytest.raises(RecordEncodeError, match=words):
        codec.encode(value)


def test_card_id_with_a_region_that_is_not_bcd_is_a_decode_error() -> None:
    codec = codec_for("card-id", 0x01, 16, "EF05 record 1 (card_id)")
    with pytest.raises(RecordDecodeError, match="BCD"):
        codec.decode(bytes.fromhex("0110" + "3A0000" + PUBLIC_CARD_ID[6:]))


@pytest.mark.parametrize("name", card_profiles())
def test_every_profile_record_round_trips_blank_and_constant(name: str) -> None:
    profile = load_profile(name)
    assert profile.records()
    for item in profile.records():
        codec = item.codec
        blank = codec.encode(None)
        assert len(blank) == item.length + 2
        assert codec.decode(blank) is None
        if item.constant is not None:
            assert codec.decode(codec.encode(item.constant)) == item.constant


@pytest.mark.parametrize("byte", [0x00, 0x0A, 0x1B, 0x7F])
def test_ascii_records_with_control_bytes_do_not_decode(byte: int) -> None:
    """ssn and card number are ASCII records: a control byte inside is a decode error, so
    only the GBK/GB 18030 text records can bring control characters from a card."""
    codec = codec_for("ascii", 0x07, 9, "EF05 record 7 (card_number)")
    with pytest.raises(RecordDecodeError, match="printable"):
        codec.decode(b"\x07\x09A1234" + bytes([byte]) + b"678")


@pytest.mark.parametrize("encoding", sorted(RecordCodec.registry))
@pytest.mark.parametrize("value", [object(), 3.5, [1], "", b"", -1, 2**70])
def test_a_value_of_the_wrong_kind_is_an_encode_error(encoding: str, value: object) -> None:
    """Never a bare TypeError/ValueError: every refusal names the record."""
    cls = RecordCodec.registry[encoding]
    tag, length, _hex, _value = cls.vectors[0]
    codec = cls(tag, length, "EF05 record 9 (x)")
    try:
        raw = codec.encode(value)
    except RecordEncodeError as exc:
        assert exc.problems[0][0] == "EF05 record 9 (x)"
    else:  # only the text records take the empty string (an empty, 00-padded value)
        assert value == "" and encoding in ("ascii", "gbk", "gb18030")
        assert raw == bytes([tag, length]) + bytes(length)


def test_card_id_errors_say_what_is_wrong() -> None:
    codec = codec_for("card-id", 0x01, 16, "EF05 record 1 (card_id)")
    with pytest.raises(RecordDecodeError, match="RID A000000005, expected D156000005"):
        codec.decode(bytes.fromhex("0110" + "310000" + "A000000005" + "0011223344556677"))
    with pytest.raises(RecordEncodeError, match="4 bytes"):
        codec.encode(CardId("310000", "abcd", bytes(4)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("encoding", "length", "value", "words"),
    [
        ("bcd-division", 3, "3100001", "7 digits, the record holds 6"),
        ("bcd-institution", 12, "31", "2 digits, the record holds 24"),
        ("code", 1, 256, "0 to 255"),
        ("binary", 1, b"\x01\x02", "2 bytes, the record holds 1"),
        ("binary", 1, "31", "must be bytes"),
    ],
)
def test_encode_errors_say_what_is_wrong(
    encoding: str, length: int, value: object, words: str
) -> None:
    with pytest.raises(RecordEncodeError, match=words):
        codec_for(encoding, 0x01, length, "EF05 record 1 (x)").encode(value)


@pytest.mark.parametrize("record", ["0704" + "C9E7BBE1", "0704" + "4142FF43"])
def test_ascii_records_with_bytes_outside_ascii_do_not_decode(record: str) -> None:
    with pytest.raises(RecordDecodeError, match="printable ASCII"):
        codec_for("ascii", 0x07, 4, "EF05 record 7 (x)").decode(bytes.fromhex(record))
