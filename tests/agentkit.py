"""Helpers for the agent's tests: readers around emulated cards, a service on them."""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from starlette.routing import BaseRoute

from sscard.agent.app import AgentConfig, serve
from sscard.agent.reader import CardReader
from sscard.agent.service import AgentSettings, CardService, KeySource
from sscard.applets.cos import EmulatedCard
from sscard.applets.pinpad import EmulatedPinPad
from sscard.auth import OperatorStore
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


TOKEN = "agent-test-token-0123456789abcdefghijklmnopqrstuvwxyz"
"""The API token of the agents the tests start in-process."""


@contextlib.contextmanager
def running_agent(
    card_service: CardService,
    store: Path,
    *,
    token: str = TOKEN,
    origins: tuple[str, ...] = (),
    kiosk: bool = False,
    pin_attempts: int = 50,
    pin_window: float = 60.0,
    routes: Sequence[BaseRoute] = (),
) -> Iterator[str]:
    """The agent on ``card_service`` served by uvicorn in a thread of this process, on a
    free loopback port; yields its base URL (``http://127.0.0.1:PORT``), stops after."""
    config = AgentConfig(
        port=0,
        token=token,
        allowed_origins=origins,
        kiosk=kiosk,
        pin_attempts=pin_attempts,
        pin_window=pin_window,
    )
    urls: queue.Queue[str] = queue.Queue()
    stop = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            serve(
                config,
                card_service,
                lambda: OperatorStore.open(store),
                ready=urls.put,
                stop=stop,
                routes=routes,
            )
        except BaseException as exc:  # reported to the test below
            failed.append(exc)
            urls.put("")

    thread = threading.Thread(target=run, name="agent", daemon=True)
    thread.start()
    url = urls.get(timeout=30)
    if not url:
        raise RuntimeError(f"the agent did not start: {failed!r}")
    try:
        yield url
    finally:
        stop.set()
        thread.join(15)
