"""Reader slots for batch issuance: PC/SC readers, and in-process emulated readers.

A PC/SC reader is a :class:`sscard.transport.slot.ReaderSlot`; ``--virtual N``
readers are :class:`VirtualSlot` s, each always holding a fresh blank
emulated card.
"""

from __future__ import annotations

from sscard.applets.cos import Latency
from sscard.applets.factory import TransportKeys, new_memory_card
from sscard.transport import InProcessTransport
from sscard.transport.slot import ReaderSlot, StandingSlot

__all__ = ["ReaderSlot", "VirtualSlot"]


class VirtualSlot(StandingSlot):
    """An in-process reader that always holds a fresh blank emulated card (``--virtual N``)."""

    in_memory = True  # its cards die with this process

    def __init__(
        self,
        name: str,
        profile: str,
        latency: Latency | None = None,
        transport: TransportKeys | None = None,
    ) -> None:
        super().__init__(name, self._new_card)
        self.profile = profile
        self.latency = latency
        self.transport = transport  # the vendor's transport keys (default: development)

    def _new_card(self) -> InProcessTransport:
        card = new_memory_card(self.profile, latency=self.latency, transport=self.transport)
        return InProcessTransport(card, self.name)
