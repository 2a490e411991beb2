"""A transport that drives a Python card object directly, in the same process."""

from __future__ import annotations

from sscard.errors import CardRemoved, NoCard, ReaderControlUnsupported
from sscard.i18n import _
from sscard.transport.base import CardLike


class InProcessTransport:
    """The fastest link: calls ``card.process(apdu)``; no reader, no sockets.

    ``card`` may be ``None`` (an empty reader); :meth:`insert` and :meth:`remove`
    model a cardholder putting a card in and pulling it out.
    """

    def __init__(self, card: CardLike | None, name: str = "in-process") -> None:
        self._card = card
        self._name = name
        self._atr: bytes | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def card(self) -> CardLike | None:
        return self._card

    @property
    def connected(self) -> bool:
        return self._atr is not None

    @property
    def atr(self) -> bytes:
        if self._atr is None:
            raise NoCard(
                _("{reader}: not connected to a card; connect first").format(reader=self._name)
            )
        return self._atr

    def connect(self) -> None:
        if self._atr is not None:
            return
        if self._card is None:
            raise NoCard(
                _("{reader}: no card in the reader; insert a card").format(reader=self._name)
            )
        self._atr = bytes(self._card.power_on())

    def disconnect(self) -> None:
        if self._atr is not None and self._card is not None:
            self._card.power_off()
        self._atr = None

    def reconnect(self, *, reset: bool = False) -> None:
        if reset:
            self.disconnect()
        self.connect()

    def insert(self, card: CardLike) -> None:
        """Put ``card`` into the (empty) reader; it is powered at the next connect."""
        self.disconnect()
        self._card = card

    def remove(self) -> None:
        """Pull the card out: the next transmit raises :class:`CardRemoved`."""
        if self._card is not None and self._atr is not None:
            self._card.power_off()
        self._card = None

    def transmit(self, apdu: bytes) -> bytes:
        card = self._card
        if card is None:
            raise CardRemoved(
                _("{reader}: the card was removed; reinsert it and retry").format(reader=self._name)
            )
        if self._atr is None:
            raise NoCard(
                _("{reader}: not connected to a card; connect first").format(reader=self._name)
            )
        try:
            return card.process(apdu)
        except CardRemoved:  # the card lost power mid-command (a tear): the link is gone
            self._atr = None
            raise

    def control(self, code: int, data: bytes = b"") -> bytes:
        """An in-process card sits in a plain reader: no control interface, no PIN pad."""
        raise ReaderControlUnsupported(
            _(
                "{reader}: this reader has no control interface (no PIN pad); "
                "control code 0x{code:08X} refused"
            ).format(reader=self._name, code=code & 0xFFFFFFFF)
        )

    def __repr__(self) -> str:
        return f"InProcessTransport({self._name!r}, connected={self.connected})"
