"""Reader slots for batch issuance: PC/SC readers, and in-process emulated readers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from sscard import errors
from sscard.applets.cos import Latency
from sscard.applets.factory import TransportKeys, new_memory_card
from sscard.card import SocialSecurityCard
from sscard.transport import InProcessTransport, pcsc

POLL = 0.5


class PcscSlot:
    """A PC/SC reader: waits for a card to be inserted, then for it to be taken out."""

    in_memory = False  # a physical card outlives this process: its issuance stays resumable

    def __init__(self, name: str) -> None:
        self.name = name

    def next_card(self, stop: threading.Event) -> AbstractContextManager[SocialSecurityCard] | None:
        while not stop.is_set():
            try:
                pcsc.wait_for_card(self.name, POLL)
            except errors.NoCard:
                continue
            return self._open()
        return None

    @contextmanager
    def _open(self) -> Iterator[SocialSecurityCard]:
        transport = pcsc.PcscTransport(self.name)
        transport.connect()
        try:
            yield SocialSecurityCard.open(transport)
        finally:
            transport.disconnect()

    def wait_removal(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                pcsc.wait_for_card(self.name, POLL, present=False)
                return
            except errors.CardNotRemoved:
                continue


class VirtualSlot:
    """An in-process reader that always holds a fresh blank emulated card (``--virtual N``)."""

    in_memory = True  # its cards die with this process

    def __init__(
        self,
        name: str,
        profile: str,
        latency: Latency | None = None,
        transport: TransportKeys | None = None,
    ) -> None:
        self.name = name
        self.profile = profile
        self.latency = latency
        self.transport = transport  # the vendor's transport keys (default: development)

    def next_card(self, stop: threading.Event) -> AbstractContextManager[SocialSecurityCard] | None:
        if stop.is_set():
            return None
        return self._open()

    @contextmanager
    def _open(self) -> Iterator[SocialSecurityCard]:
        transport = InProcessTransport(
            new_memory_card(self.profile, latency=self.latency, transport=self.transport),
            self.name,
        )
        transport.connect()
        try:
            yield SocialSecurityCard.open(transport)
        finally:
            transport.disconnect()

    def wait_removal(self, stop: threading.Event) -> None:
        return None
