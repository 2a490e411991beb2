"""Reader slots: wait for a card to come, connect to it, wait for it to go.

One abstraction serves every unattended reader loop (the PIN kiosk, the batch
issuance workers):

* :class:`ReaderSlot` — a PC/SC reader. :meth:`~ReaderSlot.wait_card` blocks
  until a card is inserted (or a stop event is set, or a timeout passes) and
  returns a connected transport; :meth:`~ReaderSlot.wait_removal` blocks until
  the card is taken out.
* :class:`StandingSlot` — a reader whose card is always in (an emulated card):
  each wait returns a fresh connected transport at once, removal is immediate.

Both satisfy the :class:`CardSlot` protocol; :func:`open_slot` picks one for
a reader specification (``virtual:PATH`` or a PC/SC reader name).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from sscard import errors
from sscard.transport.base import Transport
from sscard.transport.inprocess import InProcessTransport

POLL = 0.5  # seconds between looks at the stop event


class CardSlot(Protocol):
    """One reader a loop owns: hands out connected cards and waits for their removal."""

    name: str
    in_memory: bool  # its cards live only in this process (gone when it ends)

    def wait_card(self, stop: threading.Event, timeout: float | None = None) -> Transport | None:
        """A connected transport once a card is in; None on ``stop`` or after ``timeout`` s."""
        ...

    def wait_removal(self, stop: threading.Event) -> None:
        """Return once the card is out (or on ``stop``)."""
        ...


class ReaderSlot:
    """A PC/SC reader: waits for a card to be inserted, then for it to be taken out."""

    in_memory = False  # a physical card outlives this process

    def __init__(self, name: str, *, shared: bool = False, poll: float = POLL) -> None:
        self.name = name
        self.shared = shared
        self.poll = poll

    def wait_card(self, stop: threading.Event, timeout: float | None = None) -> Transport | None:
        """Connect to the card once one is in the reader (None on ``stop`` or timeout)."""
        from sscard.transport import pcsc

        deadline = None if timeout is None else time.monotonic() + timeout
        while not stop.is_set():
            try:
                pcsc.wait_for_card(self.name, self._step(deadline))
            except errors.NoCard:
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            transport = pcsc.PcscTransport(self.name, shared=self.shared)
            transport.connect()
            return transport
        return None

    def wait_removal(self, stop: threading.Event, timeout: float | None = None) -> None:
        """Return once the reader is empty (or on ``stop``; :class:`CardNotRemoved` on timeout)."""
        from sscard.transport import pcsc

        deadline = None if timeout is None else time.monotonic() + timeout
        while not stop.is_set():
            try:
                pcsc.wait_for_card(self.name, self._step(deadline), present=False)
                return
            except errors.CardNotRemoved:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                continue

    def _step(self, deadline: float | None) -> float:
        if deadline is None:
            return self.poll
        return max(0.0, min(self.poll, deadline - time.monotonic()))

    def __repr__(self) -> str:
        return f"ReaderSlot({self.name!r})"


class StandingSlot:
    """A reader whose card never leaves: each wait opens a fresh transport from ``open``."""

    in_memory = False  # an emulated card stored in a file outlives this process

    def __init__(self, name: str, open: Callable[[], Transport]) -> None:
        self.name = name
        self._open = open

    def wait_card(self, stop: threading.Event, timeout: float | None = None) -> Transport | None:
        """A connected transport at once (None when ``stop`` is set)."""
        if stop.is_set():
            return None
        transport = self._open()
        transport.connect()
        return transport

    def wait_removal(self, stop: threading.Event) -> None:
        """Nothing to wait for: the card is never taken out."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def open_slot(spec: str | None) -> ReaderSlot | StandingSlot:
    """The slot for a reader specification (``--reader``/``$SSCARD_READER`` form).

    A PC/SC reader is resolved to its name once; an emulated card
    (``virtual:PATH``) is a :class:`StandingSlot` that reloads it on each wait.
    """
    from sscard.transport.resolve import open_transport, reader_spec

    spec = reader_spec(spec)
    first = open_transport(spec)
    if isinstance(first, InProcessTransport):
        return StandingSlot(first.name, lambda: open_transport(spec))
    return ReaderSlot(first.name)
