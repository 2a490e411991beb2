"""The :class:`Transport` protocol every link to a card implements, and card-file forms.

A card implemented in Python (:class:`CardLike`) can be named as a reader:
``--reader virtual:PATH`` opens the card stored at PATH. The transport layer
knows no card; the card side registers the forms it can open
(:func:`register_card_files`; ``sscard.applets`` registers ``virtual:`` when it
is imported). The CLI registers loaders that import ``sscard.applets`` only when
such a reader is opened, so a command that talks to a real reader never loads
the emulator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable


@runtime_checkable
class Transport(Protocol):
    """A connection to one card in one reader.

    ``transmit`` takes an encoded command APDU and returns the raw response
    (data ‖ SW1 SW2); ``control`` talks to the reader (PIN pads). Errors are
    the typed ``TransportError`` subclasses.
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

    def control(self, code: int, data: bytes = b"") -> bytes:
        """Send a control command to the reader itself (PC/SC ``SCardControl``).

        ``code`` is the reader's control code (:mod:`sscard.transport.part10`:
        the feature request, a PIN pad's VERIFY / MODIFY PIN DIRECT); returns
        the reader's answer. A reader without a control interface raises
        :class:`~sscard.errors.ReaderControlUnsupported`.
        """
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


VIRTUAL_PREFIX = "virtual:"
"""The reader form of an emulated card stored in a file: ``virtual:PATH``."""

PINPAD_PREFIX = "pinpad:"
"""The reader form of an emulated card behind an emulated PIN pad: ``pinpad:PATH``."""

CardLoader = Callable[[str], CardLike]
"""Opens the card stored at a path."""

_CARD_FILES: dict[str, CardLoader] = {}


ReaderOpener = Callable[[str], "Transport"]
"""Opens a reader of a registered form from the rest of its name."""

_READER_FORMS: dict[str, ReaderOpener] = {}


def register_reader_form(prefix: str, opener: ReaderOpener) -> None:
    """Let the reader name ``PREFIX + REST`` be the transport ``opener(REST)`` returns
    (``sscard.applets`` registers ``pinpad:PATH``, an emulated card behind a PIN pad)."""
    _READER_FORMS[prefix] = opener


def reader_form(spec: str) -> tuple[ReaderOpener, str] | None:
    """The opener of a registered reader form ``spec`` starts with, and the rest."""
    for prefix, opener in _READER_FORMS.items():
        if spec.startswith(prefix):
            return opener, spec[len(prefix) :]
    return None


def register_card_files(prefix: str, loader: CardLoader) -> None:
    """Let the reader name ``PREFIX + PATH`` open the card that ``loader(PATH)`` returns."""
    _CARD_FILES[prefix] = loader


def card_files(prefix: str) -> CardLoader | None:
    """The loader registered for ``prefix``, or None."""
    return _CARD_FILES.get(prefix)
