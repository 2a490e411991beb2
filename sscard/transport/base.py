"""The :class:`Transport` protocol every link to a card implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Transport(Protocol):
    """A connection to one card in one reader.

    ``transmit`` takes an encoded command APDU and returns the raw response
    (data ‖ SW1 SW2). Errors are the typed ``TransportError`` subclasses.
    """

    @property
    def name(self) -> str:
        """Reader name (for messages)."""
        ...

    @property
    def atr(self) -> bytes:
        """The card's answer-to-reset; requires a connection."""
        ...

    @property
    def connected(self) -> bool: ...

    def connect(self) -> None:
        """Power the card up and open the link (idempotent)."""
        ...

    def disconnect(self) -> None:
        """Close the link (idempotent)."""
        ...

    def reconnect(self, *, reset: bool = False) -> None:
        """Reopen the link; with ``reset`` the card is reset (security state lost)."""
        ...

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU and return the response bytes."""
        ...


@runtime_checkable
class CardLike(Protocol):
    """A card implemented in Python that the in-process transport drives."""

    @property
    def atr(self) -> bytes:
        """The answer-to-reset (available without powering the card)."""
        ...

    def power_on(self) -> bytes:
        """Power up (cold reset) and return the ATR."""
        ...

    def power_off(self) -> None:
        """Power down: volatile state is lost."""
        ...

    def process(self, apdu: bytes) -> bytes:
        """Handle one command APDU; return response data ‖ SW1 SW2."""
        ...
