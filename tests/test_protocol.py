"""The transmit pipeline over the in-process transport: T=0 handling, typed errors, SM hook,
redacted traces."""

from __future__ import annotations

import logging

import pytest

from sscard import errors
from sscard.apdu import CommandApdu, ResponseApdu
from sscard.applets import ScriptedCard
from sscard.log import TRACE
from sscard.protocol import ApduProtocol, error_for
from sscard.transport import InProcessTransport


def _protocol(card: ScriptedCard) -> ApduProtocol:
    transport = InProcessTransport(card)
    transport.connect()
    return ApduProtocol(transport)


def _card_answering(sw: str, command: str = "00200000033F3F3F") -> ScriptedCard:
    return ScriptedCard(rules={bytes.fromhex(command): bytes.fromhex(sw)})


def test_t0_get_response_concatenates_chunks() -> None:
    card = ScriptedCard(t0=True)
    r = _protocol(card).transmit(0x80, 0xCB, 0x02, 0x58)  # 600 bytes, no Le: 61xx chain
    assert r.data == bytes(i & 0xFF for i in range(600))
    assert r.sw == 0x9000
    get_responses = [a for a in card.received if a[1] == 0xC0]
    assert len(get_responses) == 3  # 256 + 256 + 88


def test_t0_wrong_le_is_resent_with_exact_le() -> None:
    card = ScriptedCard(t0=True)
    r = _protocol(card).transmit(0x80, 0xEE, 0, 0, b"abc", le=256)
    assert r.data == b"abc"
    assert card.received[-1] == bytes.fromhex("80EE000003616263") + b"\x03"


def test_t0_card_looping_on_61xx_is_a_protocol_error() -> None:
    class Looping(ScriptedCard):
        def _process(self, apdu: bytes) -> bytes:
            return b"\x01\x61\x01"

    with pytest.raises(errors.ProtocolError, match="kept answering 61xx"):
        _protocol(Looping()).transmit(0x80, 0xCB, 0, 1)


@pytest.mark.parametrize(
    ("command", "sw", "error", "tries"),
    [
        ("00200000033F3F3F", "63C2", errors.PinIncorrect, 2),
        ("00200000033F3F3F", "63CA", errors.PinIncorrect, 10),
        ("805E0100073F3F3FFF3F3F3F", "63C1", errors.PinIncorrect, 1),
        ("00200000033F3F3F", "6983", errors.PinBlocked, None),
        ("0082000108" + "3F" * 8, "63C4", errors.AuthenticationFailed, 4),
        ("0082000108" + "3F" * 8, "6983", errors.KeyBlocked, None),
        ("84240000043F3F3F3F", "6983", errors.KeyBlocked, None),
        ("00B2010400", "6982", errors.SecurityStatusNotSatisfied, None),
        ("04DC010408" + "3F" * 8, "6988", errors.BadMac, None),
        ("00A40000023F00", "6A82", errors.FileNotFound, None),
        ("00B2090400", "6A83", errors.RecordNotFound, None),
        ("80E00000023F00", "6985", errors.ConditionsNotSatisfied, None),
        ("00A40000023F00", "6A81", errors.CardBlocked, None),
        ("00A40000023F00", "9303", errors.ApplicationBlocked, None),
        ("00A40000023F00", "6D00", errors.InstructionNotSupported, None),
        ("00A40000023F00", "6700", errors.WrongLength, None),
        ("00A40000023F00", "6A86", errors.WrongParameters, None),
        ("00A40000023F00", "6F00", errors.ApduError, None),
    ],
)
def test_status_words_become_typed_errors(
    command: str, sw: str, error: type[errors.ApduError], tries: int | None
) -> None:
    card = _card_answering(sw, command)
    with pytest.raises(error) as info:
        _protocol(card).send(CommandApdu.parse(bytes.fromhex(command)))
    assert info.value.sw == int(sw, 16)
    assert type(info.value) is error
    assert getattr(info.value, "tries_left", None) == tries
    assert sw in str(info.value)


def test_pin_error_message_never_carries_the_pin() -> None:
    err = error_for(CommandApdu(0x00, 0x20, 0, 0, bytes.fromhex("135791")), 0x63C2)
    text = str(err)
    assert "2 tries left" in text
    assert "135791" not in text and "13 57 91" not in text


def test_check_false_returns_the_raw_status() -> None:
    card = _card_answering("63C2")
    r = _protocol(card).send(CommandApdu(0, 0x20, 0, 0, b"???"), check=False)
    assert (r.sw, r.tries_left) == (0x63C2, 2)


@pytest.mark.parametrize("reply", [b"", b"\x90"])
def test_malformed_response_from_the_card(reply: bytes) -> None:
    class Broken(ScriptedCard):
        def _process(self, apdu: bytes) -> bytes:
            return reply

    with pytest.raises(errors.MalformedResponse):
        _protocol(Broken()).transmit(0, 0xA4, 0, 0, b"\x3f\x00")


class XorSM:
    """A toy secure-messaging scheme: marks CLA with 04 and appends a checksum byte."""

    def wrap(self, command: CommandApdu) -> CommandApdu:
        check = bytes((sum(command.data) & 0xFF,))
        return CommandApdu(
            command.cla | 0x04,
            command.ins,
            command.p1,
            command.p2,
            command.data + check,
            command.le,
        )

    def unwrap(self, command: CommandApdu, response: ResponseApdu) -> ResponseApdu:
        return ResponseApdu(response.data[::-1], response.sw)


def test_secure_messaging_step_wraps_before_encoding_and_unwraps_after_t0() -> None:
    card = ScriptedCard(t0=True)
    protocol = _protocol(card).with_secure_messaging(XorSM())
    r = protocol.send(CommandApdu(0x80, 0xEE, 0, 0, b"\x01\x02", le=256))
    # The card saw the wrapped command (CLA 84, checksum appended) …
    assert card.received[0][:5] == bytes.fromhex("84EE000003")
    assert card.received[0][5:8] == b"\x01\x02\x03"
    # … the T=0 resend carried it too, and the unwrap saw the whole response.
    assert r.data == b"\x03\x02\x01"


def test_trace_redacts_secrets(caplog: pytest.LogCaptureFixture) -> None:
    card = ScriptedCard(
        rules={bytes.fromhex("0088000108" + "A1" * 8 + "00"): bytes.fromhex("C0FFEE" * 3 + "9000")}
    )
    protocol = _protocol(card)
    caplog.set_level(TRACE, logger="sscard")
    protocol.send(CommandApdu(0x00, 0x20, 0, 0, bytes.fromhex("246801")), check=False)
    protocol.send(
        CommandApdu(0x80, 0xD4, 0x01, 0x01, bytes.fromhex("0101010A0F") + b"\xaa" * 16), check=False
    )
    protocol.send(CommandApdu(0x00, 0x88, 0, 1, b"\xa1" * 8, le=256), check=False)
    protocol.send(CommandApdu(0x00, 0xA4, 0, 0, b"\x3f\x00"), check=False)
    text = "\n".join(r.getMessage() for r in caplog.records if r.levelno == TRACE)
    assert "246801" not in text
    assert "AAAAAAAA" not in text
    assert "A1A1A1A1" not in text and "C0FFEE" not in text
    assert text.count("<redacted>") == 4  # VERIFY, WRITE KEY, INT AUTH command and response
    assert "> 00A40000023F00" in text  # the rest is traced in full


def test_trace_shows_every_exchange_of_the_default_pipeline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The default (T=0 only) pipeline runs inline in send: its first exchange and
    # the GET RESPONSE that follows are both traced, and the result is unchanged.
    card = ScriptedCard(t0=True)
    protocol = _protocol(card)
    caplog.set_level(TRACE, logger="sscard")
    r = protocol.transmit(0x80, 0xCB, 0x02, 0x58)
    assert r.data == bytes(i & 0xFF for i in range(600))
    lines = [rec.getMessage() for rec in caplog.records if rec.levelno == TRACE]
    assert lines[0] == "> 80CB0258"
    assert sum(line.startswith("> 00C00000") for line in lines) == 3
    assert len(lines) == 8  # 4 commands, 4 responses


def test_no_trace_cost_when_disabled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sscard")
    _protocol(ScriptedCard()).transmit(0x80, 0xEE, 0, 0, b"hi")
    assert not [r for r in caplog.records if r.levelno == TRACE]


def test_in_process_transport_removal_and_absence() -> None:
    transport = InProcessTransport(None)
    with pytest.raises(errors.NoCard, match="no card in the reader"):
        transport.connect()
    card = ScriptedCard()
    transport.insert(card)
    transport.connect()
    assert transport.atr == card.atr and card.powered
    transport.remove()
    assert not card.powered
    with pytest.raises(errors.CardRemoved, match="removed"):
        transport.transmit(b"\x00\xa4\x00\x00")
