"""Line protection as a pipeline step: the command the card gets, computed independently."""

from __future__ import annotations

import pytest

from sscard import errors
from sscard.apdu import CommandApdu, ResponseApdu
from sscard.keys.algorithms import encipher_record, line_mac
from sscard.keys.dev import development_card_key
from sscard.layout import load_profile
from sscard.sm import LineProtection
from tests.cardkit import SERIALS, dev_module

CHALLENGE = bytes.fromhex("0102030405060708")


@pytest.mark.parametrize("profile", ["national-3", "national-2"])
@pytest.mark.parametrize("encipher", [False, True])
def test_line_protected_command_matches_the_spec(profile: str, encipher: bool) -> None:
    p = load_profile(profile)
    serial = SERIALS[profile]
    slot = p.key_scheme.find("SSSE", "RPK" if encipher else "STK", 1)
    sent: list[CommandApdu] = []

    def send(command: CommandApdu) -> ResponseApdu:
        sent.append(command)
        if command.ins == 0x84:
            return ResponseApdu(CHALLENGE, 0x9000)
        return ResponseApdu(b"", 0x9000)

    step = LineProtection(dev_module(profile), serial, slot, encipher=encipher)
    data = bytes.fromhex("135790") if encipher else b"\x07\x09B00000001"
    ins = 0x5E if encipher else 0xDC
    step(CommandApdu(0x80 if encipher else 0x00, ins, 0x07, 0x2C, data), send)

    assert sent[0] == CommandApdu(0x00, 0x84, 0x00, 0x00, le=8)
    final = sent[1]
    key = development_card_key(slot, serial)  # the card's own key, derived independently
    body = encipher_record(key, data, algorithm=p.algorithm) if encipher else data
    header = bytes((final.cla, ins, 0x07, 0x2C))
    assert final.cla == (0x84 if encipher else 0x04)
    mac = line_mac(
        key, header + bytes((len(body) + 4,)) + body, iv=CHALLENGE, algorithm=p.algorithm
    )
    assert final.data == body + mac


def test_a_refused_challenge_is_a_typed_error() -> None:
    p = load_profile("national-3")
    step = LineProtection(
        dev_module("national-3"), SERIALS["national-3"], p.key_scheme.find("SSSE", "STK", 1)
    )
    with pytest.raises(errors.ConditionsNotSatisfied):
        step(CommandApdu(0x80, 0x16, 0, 0), lambda c: ResponseApdu(b"", 0x6985))
    assert "value" not in repr(step)
