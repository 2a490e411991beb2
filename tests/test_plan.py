"""Personalization plan steps carry the APDUs they send (issue 13, item 9)."""

from __future__ import annotations

import pytest

from sscard.apdu import CommandApdu
from sscard.applets.factory import new_memory_card
from sscard.card import SocialSecurityCard
from sscard.issuance.plan import build_plan
from sscard.layout import load_profile
from sscard.transport import InProcessTransport
from sscard.transport.base import CardLike
from tests.cardkit import PIN, PROFILES, SAMPLE_HOLDER, SERIALS, dev_module


class Recording(InProcessTransport):
    """An in-process transport that keeps every command APDU it sends."""

    def __init__(self, card: CardLike) -> None:
        super().__init__(card)
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(bytes(apdu))
        return super().transmit(apdu)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_step_sends_the_command_it_carries(profile: str) -> None:
    transport = Recording(new_memory_card(profile, SERIALS[profile]))
    transport.connect()
    # a blank card has no application to recognise: issuance names the profile
    card = SocialSecurityCard.open(transport, load_profile(profile), security=dev_module(profile))
    assert card.recognized is None and card.profile.name == profile
    plan = build_plan(card.profile, SAMPLE_HOLDER, card.serial, pin=PIN, sign=card.sign_card_id)
    seen: list[tuple[int, int]] = []
    plan.run(card, progress=lambda _i, _s: seen.append((_i, len(transport.sent))))
    assert [i for i, _ in seen] == list(range(len(plan.steps)))
    ends = [n for _, n in seen[1:]] + [len(transport.sent)]
    for (step, (_, begin)), end in zip(zip(plan.steps, seen, strict=True), ends, strict=True):
        assert isinstance(step.command, CommandApdu)
        sent = transport.sent[begin:end]
        if step.computed is None:  # literal: sent byte for byte
            assert step.command.encode() in sent, step
        else:  # a template: header as sent, data computed at run time
            assert any(a[:4] == step.command.header() for a in sent), step
            assert not step.command.data


def test_dry_run_text_derives_from_the_commands_and_keeps_secrets_out() -> None:
    plan = build_plan(
        load_profile("national-3"),
        SAMPLE_HOLDER,
        SERIALS["national-3"],
        pin=PIN,
        sign=lambda _: bytes.fromhex("A1B2C3D4"),
    )
    described = plan.describe()
    text = "\n".join(d["command"] for d in described) + repr(plan.steps)
    for step, d in zip(plan.steps, described, strict=True):
        assert d["command"].startswith(step.command.header().hex(" ").upper())
    assert PIN not in text and bytes.fromhex(PIN).hex().upper() not in text
    name = next(v for (ef, no), v in plan.records.items() if ef == "EF06" and no == 2)
    assert name.hex().upper() not in text  # holder data is shown by field name
    assert "A1B2C3D4" not in text  # so is the card identification code and its MAC
    records = [d["command"] for d in described if d["phase"] == "records"]
    assert records[0].endswith("<card_id>")
    # UPDATE RECORD addresses the EF by its SFI, as the card session sends it.
    assert records[0].startswith("00 DC 01 2C ")
