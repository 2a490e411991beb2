"""The one reader resolver: ``--reader NAME`` / ``SSCARD_READER`` → a :class:`Transport`.

* ``virtual:PATH`` — the in-process card stored at PATH, opened by the loader
  the card side registered (:func:`sscard.transport.base.register_card_files`;
  ``import sscard.applets`` registers the emulator's, as the CLI does);
* anything else — a PC/SC reader, by exact name or a unique case-insensitive
  part of it; nothing at all picks the only reader present, or among several
  the only one holding a card.
"""

from __future__ import annotations

import os

from sscard.errors import NoCard, ReaderNotFound
from sscard.i18n import _
from sscard.transport.base import VIRTUAL_PREFIX, Transport, card_files, reader_form
from sscard.transport.inprocess import InProcessTransport

ENV_READER = "SSCARD_READER"

__all__ = ["ENV_READER", "VIRTUAL_PREFIX", "open_transport", "reader_spec"]


def reader_spec(explicit: str | None = None) -> str | None:
    """The reader asked for: ``explicit`` or ``$SSCARD_READER`` (None: pick the only one)."""
    return explicit if explicit else os.environ.get(ENV_READER) or None


def open_transport(spec: str | None = None, *, shared: bool = False) -> Transport:
    """A transport for ``spec`` (not yet connected)."""
    spec = reader_spec(spec)
    form = reader_form(spec) if spec is not None else None
    if form is not None:
        opener, rest = form
        return opener(rest)
    if spec is not None and spec.startswith(VIRTUAL_PREFIX):
        load_card = card_files(VIRTUAL_PREFIX)
        if load_card is None:
            raise ReaderNotFound(
                _(
                    "{spec} names an emulated card, and no emulator is loaded "
                    "(import sscard.applets first)"
                ).format(spec=repr(spec))
            )
        path = spec[len(VIRTUAL_PREFIX) :]
        return InProcessTransport(load_card(path), name=spec)
    from sscard.transport import pcsc

    available = pcsc.list_readers()
    if spec is None and len(available) > 1:
        # Several readers: the one holding a card is meant, if there is exactly one.
        with_card = [s.name for s in pcsc.reader_states(available) if s.card_present]
        if len(with_card) == 1:
            return pcsc.PcscTransport(with_card[0], shared=shared)
        if not with_card:
            raise NoCard(
                _(
                    "no card in any reader; insert a card, or choose a reader "
                    "(readers present: {readers})"
                ).format(readers=", ".join(repr(r) for r in available))
            )
    return pcsc.PcscTransport(pcsc.pick_reader(spec, available), shared=shared)
