"""Helpers for the agent's tests: readers around emulated cards, a service on them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sscard.agent.reader import CardReader
from sscard.agent.service import AgentSettings, CardService, KeySource
from sscard.applets.cos import EmulatedCard
from sscard.applets.pinpad import EmulatedPinPad
from sscard.db import open_store
from sscard.transport import InProcessTransport
from sscard.transport.base import Transport
from tests.cardkit import dev_module


def pad_reader(pad: EmulatedPinPad, *, poll: float = 0.05) -> CardReader:
    """The agent's reader around an emulated PIN pad: present while the pad holds a card
    (``pad.pull_card`` / ``pad.insert`` are the holder's hands)."""

    def connect() -> Transport:
        pad.connect()
        return pad

    return CardReader(pad.name, connect, lambda: pad.card is not None, poll=poll)


class PlainSlot:
    """A reader without a PIN pad whose card the test can take out and put back."""

    def __init__(self, card: EmulatedCard | None, name: str = "emulated reader") -> None:
        self.card = card
        self.name = name

    def reader(self, *, poll: float = 0.05) -> CardReader:
        def connect() -> Transport:
            transport = InProcessTransport(self.card, self.name)
            transport.connect()
            return transport

        return CardReader(self.name, connect, lambda: self.card is not None, poll=poll)


def dev_keys() -> KeySource:
    """The published development keys (emulated cards only) as the agent's key source."""
    return lambda profile: dev_module(profile.name)


def service(
    reader: CardReader,
    store: Path,
    *,
    keys: KeySource | None = None,
    busy_wait: float = 0.5,
    pinpad: str = "auto",
) -> CardService:
    """A card service on ``reader`` with its local store at ``store``."""

    def connect() -> sqlite3.Connection:
        return open_store(store)

    settings = AgentSettings(service_point="sp-test", busy_wait=busy_wait, pinpad=pinpad)
    return CardService(reader, settings, keys=keys, store=connect)
