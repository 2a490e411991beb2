"""CommandApdu / ResponseApdu encodings (ISO/IEC 7816-3 12.1.3, 7816-4 5.1)."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sscard.apdu import CommandApdu, ResponseApdu
from sscard.errors import MalformedResponse


@pytest.mark.parametrize(
    ("apdu", "encoded"),
    [
        # case 1
        (CommandApdu(0x80, 0xEA), "80EA0000"),
        # case 2 short; Le=256 encodes as 00
        (CommandApdu(0x00, 0x84, le=8), "0084000008"),
        (CommandApdu(0x00, 0xB0, le=256), "00B0000000"),
        # case 3 short
        (CommandApdu(0x00, 0xA4, 0, 0, b"\x3f\x00"), "00A40000023F00"),
        # case 4 short
        (
            CommandApdu(0x00, 0xA4, 4, 0, bytes.fromhex("A000000003"), le=256),
            "00A4040005A00000000300",
        ),
        # boundaries of the short form: Lc 255, Le 256
        (CommandApdu(0x00, 0xD6, data=b"\x11" * 255), "00D60000FF" + "11" * 255),
        # case 2 extended: Le 257 and 65536 (0000)
        (CommandApdu(0x00, 0xB0, le=257), "00B00000000101"),
        (CommandApdu(0x00, 0xB0, le=65536), "00B00000000000"),
        # case 3 extended: Lc 256
        (CommandApdu(0x00, 0xD6, data=b"\x22" * 256), "00D6000000" + "0100" + "22" * 256),
        # case 4 extended because of Lc, Le then takes 2 bytes
        (
            CommandApdu(0x00, 0x2A, 0x9E, 0x9A, b"\x33" * 256, le=256),
            "002A9E9A000100" + "33" * 256 + "0100",
        ),
        # case 4 extended because of Le
        (
            CommandApdu(0x00, 0x88, 0, 1, b"\x44" * 8, le=65536),
            "00880001000008" + "44" * 8 + "0000",
        ),
        # forced extended on small lengths
        (CommandApdu(0x00, 0xB0, le=1, extended=True), "00B00000000001"),
    ],
)
def test_encode_and_parse_known_forms(apdu: CommandApdu, encoded: str) -> None:
    raw = bytes.fromhex(encoded)
    assert apdu.encode() == raw
    parsed = CommandApdu.parse(raw)
    assert parsed.encode() == raw
    assert (parsed.cla, parsed.ins, parsed.p1, parsed.p2) == (apdu.cla, apdu.ins, apdu.p1, apdu.p2)
    assert parsed.data == apdu.data
    assert parsed.le == apdu.le
    assert parsed.case == apdu.case


def test_cases() -> None:
    assert CommandApdu(0, 0xA4).case == 1
    assert CommandApdu(0, 0xB0, le=1).case == 2
    assert CommandApdu(0, 0xD6, data=b"x").case == 3
    assert CommandApdu(0, 0xA4, data=b"x", le=1).case == 4


def test_short_limit_picks_extended_automatically() -> None:
    assert not CommandApdu(0, 0xB0, le=256).is_extended
    assert CommandApdu(0, 0xB0, le=257).is_extended
    assert not CommandApdu(0, 0xD6, data=b"a" * 255).is_extended
    assert CommandApdu(0, 0xD6, data=b"a" * 256).is_extended


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": b"a" * 65536}, "Lc can be at most 65535"),
        ({"le": 0}, "Le must be 1..65536"),
        ({"le": 65537}, "Le must be 1..65536"),
        ({"le": True}, "Le must be an integer"),
        ({"data": b"a" * 256, "extended": False}, "short APDU carries at most 255"),
        ({"le": 257, "extended": False}, "short APDU"),
        ({"data": "00A4"}, "data must be bytes"),
    ],
)
def test_impossible_commands_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CommandApdu(0x00, 0xB0, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["cla", "ins", "p1", "p2"])
def test_header_bytes_must_be_bytes(field: str) -> None:
    args = {"cla": 0, "ins": 0xA4, "p1": 0, "p2": 0, field: 256}
    with pytest.raises(ValueError, match=f"{field.upper()} must be one byte"):
        CommandApdu(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("00A400", "at least 4 header bytes"),
        ("00A40000023F", "Lc=2 must be 7 or 8 bytes long"),  # data on a case 1 header? too short
        ("00A40000023F000000", "Lc=2 must be 7 or 8 bytes long"),
        ("00A4000000", None),  # case 2 with Le=00 → 256: valid
        ("00A400000000", "6-byte APDU"),
        ("00A40000000002AA", "Lc=2 must be 9 or 11 bytes long"),
        ("00A400000000000000", "Lc=0000"),
    ],
)
def test_parse_rejects_malformed(encoded: str, message: str | None) -> None:
    raw = bytes.fromhex(encoded)
    if message is None:
        assert CommandApdu.parse(raw).le == 256
        return
    with pytest.raises(ValueError, match=message):
        CommandApdu.parse(raw)


@st.composite
def command_apdus(draw: st.DrawFn) -> CommandApdu:
    data = draw(st.binary(max_size=300))
    le = draw(st.none() | st.integers(1, 256) | st.integers(1, 65536))
    extended = draw(st.none() | st.just(True))
    return CommandApdu(
        draw(st.integers(0, 255)),
        draw(st.integers(0, 255)),
        draw(st.integers(0, 255)),
        draw(st.integers(0, 255)),
        data,
        le,
        extended,
    )


@given(command_apdus())
def test_round_trip_values(apdu: CommandApdu) -> None:
    raw = apdu.encode()
    parsed = CommandApdu.parse(raw)
    assert (parsed.data, parsed.le, parsed.case) == (apdu.data, apdu.le, apdu.case)
    assert parsed.encode() == raw


@given(command_apdus())
def test_round_trip_bytes(apdu: CommandApdu) -> None:
    # bytes -> CommandApdu -> bytes is the identity on every valid encoding
    raw = apdu.encode()
    assert bytes(CommandApdu.parse(raw)) == raw


def test_short_encoding_of_every_length() -> None:
    # The short forms are packed by per-length layouts: each length and Le, byte by byte.
    for n in range(256):
        data = bytes((i * 7) & 0xFF for i in range(n))
        lc = bytes((n,)) + data if n else b""
        for le, le_byte in ((None, b""), (1, b"\x01"), (255, b"\xff"), (256, b"\x00")):
            apdu = CommandApdu(0x84, 0xB2, 0x01, 0x0C, data, le)
            assert apdu.encode() == bytes((0x84, 0xB2, 0x01, 0x0C)) + lc + le_byte
            assert apdu.encode() == CommandApdu(0x84, 0xB2, 0x01, 0x0C, data, le, False).encode()


@given(st.binary(max_size=600))
def test_parse_never_fails_other_than_value_error(raw: bytes) -> None:
    try:
        parsed = CommandApdu.parse(raw)
    except ValueError:
        return
    assert parsed.encode() == raw


def test_response_parse() -> None:
    r = ResponseApdu.parse(bytes.fromhex("0102039000"))
    assert (r.data, r.sw, r.sw1, r.sw2, r.ok) == (b"\x01\x02\x03", 0x9000, 0x90, 0x00, True)
    assert r.encode() == bytes.fromhex("0102039000")
    w = ResponseApdu.parse(bytes.fromhex("63C3"))
    assert (w.data, w.ok, w.tries_left) == (b"", False, 3)


@pytest.mark.parametrize("raw", [b"", b"\x90"])
def test_malformed_responses_are_typed_errors(raw: bytes) -> None:
    with pytest.raises(MalformedResponse, match=f"{len(raw)} byte"):
        ResponseApdu.parse(raw)


def test_repr_of_sensitive_command_hides_data() -> None:
    pin = bytes.fromhex("123456")
    verify = CommandApdu(0x00, 0x20, 0, 0, pin)
    assert "123456" not in repr(verify)
    assert "redacted" in repr(verify)
    select = CommandApdu(0x00, 0xA4, 0, 0, b"\x3f\x00")
    assert "3F00" in repr(select)


def test_encoding_is_kept_and_is_not_part_of_the_value() -> None:
    # encode() packs once; the kept bytes change neither equality, hash, repr nor copies.
    sent = CommandApdu(0x80, 0xEE, 0, 0, b"\x01\x02", le=2)
    fresh = CommandApdu(0x80, 0xEE, 0, 0, b"\x01\x02", le=2)
    raw = sent.encode()
    assert raw == bytes.fromhex("80EE000002010202")
    assert sent.encode() is raw
    assert sent == fresh and hash(sent) == hash(fresh)
    assert repr(sent) == repr(fresh)
    assert pickle.loads(pickle.dumps(sent)) == sent
    assert copy.copy(sent).encode() == raw
    changed = dataclasses.replace(sent, le=None)
    assert changed.encode() == bytes.fromhex("80EE0000020102")
    assert CommandApdu.parse(raw).encode() == raw
