"""Helpers for tests on the emulated card: a sample holder and issued cards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sscard.applets.cos import EmulatedCard
from sscard.applets.factory import new_memory_card
from sscard.card import SocialSecurityCard
from sscard.issuance.plan import build_plan
from sscard.keys.dev import development_module
from sscard.keys.security_module import SecurityModule
from sscard.layout import load_profile
from sscard.transport import InProcessTransport
from sscard.transport.base import CardLike, Transport

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLE_HOLDER: dict[str, Any] = json.loads((EXAMPLES / "holder.json").read_text(encoding="utf-8"))
PIN = "135790"
SERIALS = {
    "national-3": bytes.fromhex("5353430300000001"),
    "national-2": bytes.fromhex("5353430200000001"),
}
PROFILES = ("national-3", "national-2")

_modules: dict[str, SecurityModule] = {}


def dev_module(profile: str) -> SecurityModule:
    """The development security module for a profile (built once per test session)."""
    if profile not in _modules:
        _modules[profile] = development_module(load_profile(profile).key_scheme.slots)
    return _modules[profile]


def session(transport: Transport, profile: str) -> SocialSecurityCard:
    """A card session with the development keys."""
    return SocialSecurityCard.open(transport, load_profile(profile), security=dev_module(profile))


def issue(card: EmulatedCard, profile: str, holder: dict[str, Any] | None = None) -> None:
    """Personalize ``card`` in-process with the sample holder and :data:`PIN`."""
    transport = InProcessTransport(card)
    transport.connect()
    try:
        c = session(transport, profile)
        build_plan(c.profile, holder or SAMPLE_HOLDER, c.serial, pin=PIN, sign=c.sign_card_id).run(
            c
        )
    finally:
        transport.disconnect()


def issued_card(profile: str = "national-3", serial: bytes | None = None) -> EmulatedCard:
    """A freshly issued card with its EEPROM in memory."""
    card = new_memory_card(profile, serial or SERIALS[profile])
    issue(card, profile)
    return card


def pin_works(card: CardLike, pin: str) -> bool:
    """Whether ``pin`` is the card's PIN (a fresh in-process session; a wrong one spends a try)."""
    from sscard import errors
    from sscard.pin import PinManager

    transport = InProcessTransport(card)
    transport.connect()
    try:
        PinManager(SocialSecurityCard.open(transport)).verify(pin)
        return True
    except errors.PinIncorrect:
        return False
    finally:
        transport.disconnect()


def tries_left(card: CardLike) -> int | None:
    """The PIN tries left, read in a fresh in-process session without spending one."""
    transport = InProcessTransport(card)
    transport.connect()
    try:
        return SocialSecurityCard.open(transport).pin_tries_left()
    finally:
        transport.disconnect()


class Slot:
    """A card socket for the vpcd bridge whose card can be swapped between tests."""

    def __init__(self, card: EmulatedCard) -> None:
        self.card = card

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def power_on(self) -> bytes:
        return self.card.power_on()

    def power_off(self) -> None:
        self.card.power_off()

    def process(self, apdu: bytes) -> bytes:
        return self.card.process(apdu)
