"""PC/SC transport over pyscard's ``smartcard.scard`` (the thin SCard* binding).

Readers are picked by exact name or a unique case-insensitive part of it. The
first transmit after connect can fail with SCARD_W_RESET_CARD (pcscd saw the
card reset): the transport reconnects and retries once (docs/architecture.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from smartcard import scard

from sscard import errors
from sscard.i18n import _

_PROTOCOLS = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
_SUCCESS: int = scard.SCARD_S_SUCCESS


def _message(hresult: int) -> str:
    try:
        return str(scard.SCardGetErrorMessage(hresult)).strip().rstrip(".")
    except Exception:  # pragma: no cover - binding without messages
        return _("PC/SC error 0x{code:08X}").format(code=hresult & 0xFFFFFFFF)


def map_error(hresult: int, reader: str | None, action: str) -> errors.TransportError:
    """The typed error for a PC/SC result code.

    ``action`` says what failed, already in the interface language.
    """
    code = hresult & 0xFFFFFFFF
    message = _message(hresult)
    if reader:
        text = _("{reader}: {action} failed: {message} (0x{code:08X})").format(
            reader=reader, action=action, message=message, code=code
        )
    else:
        text = _("{action} failed: {message} (0x{code:08X})").format(
            action=action, message=message, code=code
        )
    if code in (scard.SCARD_E_NO_SERVICE & 0xFFFFFFFF, scard.SCARD_E_SERVICE_STOPPED & 0xFFFFFFFF):
        return errors.NoService(
            _(
                "{text}; the PC/SC service is not running: start it with 'pcscd' "
                "(Debian: apt-get install pcscd)"
            ).format(text=text)
        )
    if code == scard.SCARD_E_SHARING_VIOLATION & 0xFFFFFFFF:
        return errors.ReaderBusy(
            _("{text}; another application holds the reader, close it or use shared mode").format(
                text=text
            )
        )
    if code in (
        scard.SCARD_W_REMOVED_CARD & 0xFFFFFFFF,
        scard.SCARD_W_UNPOWERED_CARD & 0xFFFFFFFF,
    ):
        return errors.CardRemoved(_("{text}; reinsert the card and retry").format(text=text))
    if code in (
        scard.SCARD_E_NO_SMARTCARD & 0xFFFFFFFF,
        scard.SCARD_W_UNRESPONSIVE_CARD & 0xFFFFFFFF,
    ):
        return errors.NoCard(_("{text}; insert a card (chip first, facing up)").format(text=text))
    if code in (
        scard.SCARD_E_UNKNOWN_READER & 0xFFFFFFFF,
        scard.SCARD_E_READER_UNAVAILABLE & 0xFFFFFFFF,
        scard.SCARD_E_NO_READERS_AVAILABLE & 0xFFFFFFFF,
    ):
        return errors.ReaderNotFound(text)
    return errors.CommunicationError(text)


class _Context:
    """An SCard context, released on close."""

    def __init__(self) -> None:
        hresult, self.handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            raise map_error(hresult, None, _("connecting to the PC/SC service"))

    def readers(self) -> list[str]:
        hresult, names = scard.SCardListReaders(self.handle, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            raise map_error(hresult, None, _("listing readers"))
        return list(names)

    def close(self) -> None:
        if self.handle is not None:
            scard.SCardReleaseContext(self.handle)
            self.handle = None


@contextmanager
def _context() -> Iterator[_Context]:
    ctx = _Context()
    try:
        yield ctx
    finally:
        ctx.close()


def list_readers() -> list[str]:
    """Names of the PC/SC readers present (empty when none)."""
    with _context() as ctx:
        return ctx.readers()


class ReaderState(NamedTuple):
    """What a reader holds right now."""

    name: str
    card_present: bool
    atr: bytes | None
    in_use_exclusively: bool = False


def reader_states(names: list[str] | None = None) -> list[ReaderState]:
    """Card presence and ATR for each reader (all when ``names`` is None), without waiting."""
    with _context() as ctx:
        names = ctx.readers() if names is None else names
        if not names:
            return []
        states = [(n, scard.SCARD_STATE_UNAWARE) for n in names]
        hresult, result = scard.SCardGetStatusChange(ctx.handle, 0, states)
        if hresult not in (scard.SCARD_S_SUCCESS, scard.SCARD_E_TIMEOUT):
            raise map_error(hresult, None, _("reading reader states"))
        out = []
        for name, event, atr in result:
            present = bool(event & scard.SCARD_STATE_PRESENT)
            out.append(
                ReaderState(
                    name=name,
                    card_present=present,
                    atr=bytes(atr) if present and atr else None,
                    in_use_exclusively=bool(event & scard.SCARD_STATE_EXCLUSIVE),
                )
            )
        return out


def pick_reader(pattern: str | None, available: list[str]) -> str:
    """Resolve ``pattern`` to one reader: exact name, else unique case-insensitive substring.

    ``None`` picks the only reader present. Missing or ambiguous is a
    :class:`ReaderNotFound` listing the readers that exist.
    """
    if pattern is None:
        if len(available) == 1:
            return available[0]
        if not available:
            raise errors.ReaderNotFound(_("no reader found"))
        raise errors.ReaderNotFound(_("several readers present; choose one"), available)
    if pattern in available:
        return pattern
    matches = [r for r in available if pattern.casefold() in r.casefold()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise errors.ReaderNotFound(
            _("no reader matches {pattern}").format(pattern=repr(pattern)), available
        )
    raise errors.ReaderNotFound(
        _("{pattern} matches {count} readers; give more of the name").format(
            pattern=repr(pattern), count=len(matches)
        ),
        matches,
    )


def wait_for_card(reader: str, timeout: float | None, *, present: bool = True) -> bytes | None:
    """Block until a card is in ``reader`` (or gone, with ``present=False``).

    Returns the ATR when a card arrived (None after a removal). ``timeout`` in
    seconds, ``None`` for ever; on timeout raises :class:`NoCard` when waiting
    for a card, :class:`CardNotRemoved` when waiting for its removal.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with _context() as ctx:
        state = scard.SCARD_STATE_UNAWARE
        while True:
            if deadline is None:
                wait_ms = 1000
            else:
                remaining = deadline - time.monotonic()
                wait_ms = max(0, min(1000, int(remaining * 1000)))
            hresult, result = scard.SCardGetStatusChange(ctx.handle, wait_ms, [(reader, state)])
            if hresult == scard.SCARD_S_SUCCESS:
                _name, event, atr = result[0]
                state = event & ~scard.SCARD_STATE_CHANGED
                has_card = bool(event & scard.SCARD_STATE_PRESENT)
                if has_card and present and not event & scard.SCARD_STATE_MUTE:
                    return bytes(atr)
                if not has_card and not present:
                    return None
            elif hresult != scard.SCARD_E_TIMEOUT:
                raise map_error(hresult, reader, _("waiting for the card"))
            if deadline is not None and time.monotonic() >= deadline:
                if present:
                    raise errors.NoCard(
                        _("{reader}: no card inserted within {timeout:g} s").format(
                            reader=reader, timeout=timeout
                        )
                    )
                raise errors.CardNotRemoved(
                    _(
                        "{reader}: the card was not removed within {timeout:g} s; take it out"
                    ).format(reader=reader, timeout=timeout)
                )


class PcscTransport:
    """A connection to the card in one PC/SC reader.

    Exclusive access by default (no other application can interleave APDUs);
    ``shared=True`` for shared access.
    """

    def __init__(self, reader: str, *, shared: bool = False) -> None:
        self._reader = reader
        self._share = scard.SCARD_SHARE_SHARED if shared else scard.SCARD_SHARE_EXCLUSIVE
        self._ctx: _Context | None = None
        self._card: int | None = None
        self._pci: int = scard.SCARD_PCI_T1
        self._atr: bytes | None = None

    @property
    def name(self) -> str:
        return self._reader

    @property
    def connected(self) -> bool:
        return self._card is not None

    @property
    def handle(self) -> int | None:
        """The SCARDHANDLE of the connection (for diagnostics and benchmarks)."""
        return self._card

    @property
    def protocol(self) -> str:
        """``T=0`` or ``T=1`` (the protocol negotiated at connect)."""
        return "T=0" if self._pci == scard.SCARD_PCI_T0 else "T=1"

    @property
    def atr(self) -> bytes:
        if self._atr is None:
            raise errors.NoCard(
                _("{reader}: not connected to a card; connect first").format(reader=self._reader)
            )
        return self._atr

    def connect(self) -> None:
        if self._card is not None:
            return
        if self._ctx is None:
            self._ctx = _Context()
        hresult, card, proto = scard.SCardConnect(
            self._ctx.handle, self._reader, self._share, _PROTOCOLS
        )
        if hresult != scard.SCARD_S_SUCCESS:
            raise map_error(hresult, self._reader, _("connecting to the card"))
        self._card = card
        self._set_protocol(proto)
        self._read_atr()

    def _set_protocol(self, proto: int) -> None:
        self._pci = scard.SCARD_PCI_T0 if proto == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1

    def _read_atr(self) -> None:
        hresult, _reader, _state, _proto, atr = scard.SCardStatus(self._card)
        if hresult != scard.SCARD_S_SUCCESS:
            raise map_error(hresult, self._reader, _("reading the ATR"))
        self._atr = bytes(atr)

    def disconnect(self) -> None:
        if self._card is not None:
            scard.SCardDisconnect(self._card, scard.SCARD_LEAVE_CARD)
            self._card = None
        self._atr = None
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None

    def reconnect(self, *, reset: bool = False) -> None:
        if self._card is None:
            self.connect()
            return
        init = scard.SCARD_RESET_CARD if reset else scard.SCARD_LEAVE_CARD
        hresult, proto = scard.SCardReconnect(self._card, self._share, _PROTOCOLS, init)
        if hresult != scard.SCARD_S_SUCCESS:
            raise map_error(hresult, self._reader, _("reconnecting to the card"))
        self._set_protocol(proto)
        self._read_atr()

    def transmit(self, apdu: bytes) -> bytes:
        card = self._card
        if card is None:
            raise errors.NoCard(
                _("{reader}: not connected to a card; connect first").format(reader=self._reader)
            )
        hresult, response = scard.SCardTransmit(card, self._pci, list(apdu))
        if hresult == _SUCCESS:
            return bytes(response)
        if hresult == scard.SCARD_W_RESET_CARD:
            # pcscd reports a reset seen since connect: reconnect and retry once.
            self.reconnect()
            hresult, response = scard.SCardTransmit(self._card, self._pci, list(apdu))
        if hresult != scard.SCARD_S_SUCCESS:
            raise map_error(hresult, self._reader, _("sending a command"))
        return bytes(response)

    def control(self, code: int, data: bytes = b"") -> bytes:
        """``SCardControl`` on the connection: a control command to the reader.

        A driver that does not know ``code`` (SCARD_E_UNSUPPORTED_FEATURE, as
        pcsc-lite reports IFD_ERROR_NOT_SUPPORTED) is
        :class:`~sscard.errors.ReaderControlUnsupported`; other results map as
        for :meth:`transmit`. A PIN pad's VERIFY / MODIFY PIN DIRECT waits for
        the cardholder, so this call can take as long as the pad's timeout.
        """
        card = self._card
        if card is None:
            raise errors.NoCard(
                _("{reader}: not connected to a card; connect first").format(reader=self._reader)
            )
        hresult, response = scard.SCardControl(card, code, list(data))
        if hresult == scard.SCARD_W_RESET_CARD:
            self.reconnect()  # as transmit: a reset seen since connect, retry once
            hresult, response = scard.SCardControl(self._card, code, list(data))
        if hresult == scard.SCARD_E_UNSUPPORTED_FEATURE:
            raise errors.ReaderControlUnsupported(
                _(
                    "{reader}: the reader does not support control code 0x{code:08X} "
                    "(no PIN pad, or not this feature)"
                ).format(reader=self._reader, code=code)
            )
        if hresult != scard.SCARD_S_SUCCESS:
            raise map_error(hresult, self._reader, _("sending a control command to the reader"))
        return bytes(response)

    def __enter__(self) -> PcscTransport:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        return f"PcscTransport({self._reader!r}, connected={self.connected})"
