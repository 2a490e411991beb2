"""The one door to the agent's reader: one caller at a time, and card presence.

Many callers share one reader (a business system, a browser page, the kiosk
page), but a card runs one command sequence at a time: :meth:`CardReader.lease`
gives the reader to one caller; another caller waits up to a few seconds, then
gets :class:`~sscard.errors.CardInUse` (national −12) saying what holds the card
and when to ask again, never a half-interleaved APDU sequence.
:meth:`CardReader.watch` reports card insertions and removals (the agent's
``card.inserted`` / ``card.removed`` events) without taking the lease.

docs/agent.md, "One reader, many callers".
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from sscard import errors
from sscard.i18n import _
from sscard.transport.base import Transport
from sscard.transport.inprocess import InProcessTransport

POLL = 0.2  # seconds between presence looks (in-process readers; PC/SC waits in pcscd)


class CardReader:
    """One reader: serialized card access (:meth:`lease`) and presence (:meth:`watch`).

    ``connect`` returns a connected transport to the card in the reader (it raises
    :class:`~sscard.errors.NoCard` when there is none); ``present`` says whether a
    card is in, without touching it.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], Transport],
        present: Callable[[], bool],
        *,
        poll: float = POLL,
        wait_change: Callable[[bool, float], bool] | None = None,
        standing: bool = False,
    ) -> None:
        self.name = name
        self.standing = standing
        """The card never leaves (an emulated card in a file): removal waits return at once."""
        self._connect = connect
        self._present = present
        self._poll = poll
        self._wait_change = wait_change
        self._lock = threading.Lock()
        self._holder: str | None = None
        self._since = 0.0

    @classmethod
    def open(cls, spec: str | None) -> CardReader:
        """The reader named like ``--reader`` / ``$SSCARD_READER``.

        A PC/SC reader is resolved to its name once; its presence comes from pcscd.
        An in-process card (``virtual:PATH``, ``pinpad:PATH``) is always present and
        is reopened for each lease (so a card image is re-read).
        """
        from sscard.transport.resolve import open_transport, reader_spec

        spec = reader_spec(spec)
        first = open_transport(spec)
        if isinstance(first, InProcessTransport):

            def connect_inprocess() -> Transport:
                transport = open_transport(spec)
                transport.connect()
                return transport

            return cls(first.name, connect_inprocess, lambda: True, standing=True)
        from sscard.transport import pcsc

        name = first.name

        def connect_pcsc() -> Transport:
            transport = pcsc.PcscTransport(name)
            transport.connect()
            return transport

        def present_pcsc() -> bool:
            states = pcsc.reader_states([name])
            return bool(states and states[0].card_present)

        def wait_pcsc(present: bool, timeout: float) -> bool:
            """Block in pcscd until the card is ``present`` (True) or gone (False)."""
            try:
                pcsc.wait_for_card(name, timeout, present=present)
                return True
            except (errors.NoCard, errors.CardNotRemoved):
                return False

        return cls(name, connect_pcsc, present_pcsc, wait_change=wait_pcsc)

    # --- presence ------------------------------------------------------------------

    def present(self) -> bool:
        """Whether a card is in the reader now (reader trouble counts as no card)."""
        try:
            return self._present()
        except errors.SscardError:
            return False

    def _await(self, present: bool, timeout: float) -> bool:
        """Wait up to ``timeout`` s for presence to become ``present``; whether it did."""
        if self._wait_change is not None:
            try:
                return self._wait_change(present, timeout)
            except errors.SscardError:
                time.sleep(min(timeout, self._poll))
                return self.present() == present
        deadline = time.monotonic() + timeout
        while True:
            if self.present() == present:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self._poll, left))

    def watch(self, on_change: Callable[[bool], None], stop: threading.Event) -> threading.Thread:
        """Call ``on_change(present)`` now and at every insertion or removal, until ``stop``.

        Runs in a daemon thread of its own and never takes the lease; a callback
        that raises does not end the watch.
        """

        def loop() -> None:
            state = self.present()
            _notify(on_change, state)
            while not stop.is_set():
                if self._await(not state, 0.5):
                    state = not state
                    _notify(on_change, state)

        thread = threading.Thread(target=loop, name=f"watch {self.name}", daemon=True)
        thread.start()
        return thread

    # --- one caller at a time ------------------------------------------------------

    @property
    def holder(self) -> str | None:
        """What holds the card now (a plain-words purpose, in the active language), None when
        free."""
        holder = self._holder
        return None if holder is None else _(holder)

    @contextlib.contextmanager
    def lease(self, holder: str, wait: float) -> Iterator[Lease]:
        """The reader for this caller alone; :class:`~sscard.errors.CardInUse` if another
        caller keeps it longer than ``wait`` seconds.

        ``holder`` says what for, shown to the callers who wait: pass the English text
        marked with ``N_`` and each waiting caller reads it in their own language (a text
        not in the catalog is shown as given). A lease is not reentrant: the same thread
        asking twice waits like anyone else.
        """
        if not self._lock.acquire(timeout=max(0.0, wait)):
            raise self._in_use(wait)
        self._holder, self._since = holder, time.monotonic()
        try:
            yield Lease(self)
        finally:
            self._holder = None
            self._lock.release()

    def _in_use(self, wait: float) -> errors.CardInUse:
        """The answer for a caller who waited ``wait`` s in vain (in that caller's language)."""
        holder, since = self._holder, self._since  # one look: the holder may leave meanwhile
        if holder is None:
            busy = _("another call")
            text = _("the card is in use by another call; try again shortly")
        else:
            busy = _(holder)
            text = _(
                "the card is in use ({holder}, for {seconds:.0f} s); try again shortly"
            ).format(holder=busy, seconds=max(0.0, time.monotonic() - since))
        # A caller who waited ``wait`` s can ask again after about as long (at least 1 s).
        return errors.CardInUse(text, retry_after=max(1.0, wait), holder=busy)

    @contextlib.contextmanager
    def card(self, holder: str, wait: float) -> Iterator[Transport]:
        """A connected transport under a :meth:`lease`, disconnected afterwards."""
        with self.lease(holder, wait) as lease:
            transport = lease.connect()
            try:
                yield transport
            finally:
                with contextlib.suppress(errors.SscardError):
                    transport.disconnect()

    def __repr__(self) -> str:
        return f"CardReader({self.name!r})"


def _notify(on_change: Callable[[bool], None], present: bool) -> None:
    with contextlib.suppress(Exception):  # a subscriber's fault must not end the watch
        on_change(present)


class Lease:
    """The reader, held by one caller (from :meth:`CardReader.lease`)."""

    def __init__(self, reader: CardReader) -> None:
        self.reader = reader

    def connect(self) -> Transport:
        """A connected transport to the card; :class:`~sscard.errors.NoCard` when none is in
        (the reader's own connect says so: no presence query first, on every call)."""
        reader = self.reader
        try:
            return reader._connect()
        except errors.CardRemoved as exc:
            raise errors.NoCard(str(exc)) from None
        except errors.CommunicationError as exc:  # pulled while connecting: no card
            if reader.present():
                raise
            raise errors.NoCard(str(exc)) from None

    @property
    def slot(self) -> LeaseSlot:
        """This lease as a :class:`~sscard.transport.slot.CardSlot` (the kiosk flow's reader)."""
        return LeaseSlot(self)


class LeaseSlot:
    """A :class:`~sscard.transport.slot.CardSlot` over a lease: waits use the reader's presence."""

    in_memory = False

    def __init__(self, lease: Lease) -> None:
        self._lease = lease
        self.name = lease.reader.name

    def wait_card(self, stop: threading.Event, timeout: float | None = None) -> Transport | None:
        """A connected transport once a card is in; None on ``stop`` or after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        reader = self._lease.reader
        while not stop.is_set():
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if left <= 0:
                return None
            if reader._await(True, left):
                try:
                    return self._lease.connect()
                except (errors.NoCard, errors.CardRemoved, errors.CommunicationError):
                    time.sleep(reader._poll)  # pulled again at once: keep waiting
        return None

    def wait_removal(self, stop: threading.Event) -> None:
        """Return once the card is out (or on ``stop``; at once for a standing card)."""
        reader = self._lease.reader
        while not stop.is_set() and not reader.standing:
            if reader._await(False, 0.5):
                return
