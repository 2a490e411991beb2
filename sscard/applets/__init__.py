"""The card side: cards implemented in Python and the vpcd bridge to PC/SC.

``load_card(path)`` opens a card stored in a file: an emulated social security
card image (``cos.py``, ``image.py``), an emulated PSAM image (``psam.py``) or a
scripted test card (``scripted.py``).
Importing this package registers it as the ``virtual:PATH`` reader form
(:func:`sscard.transport.base.register_card_files`), and ``pinpad:PATH``: the
same card behind an emulated PIN pad whose key presses come from
``$SSCARD_PINPAD_KEYS`` (emulated cards only: tests and demos).
"""

from __future__ import annotations

import json
from pathlib import Path

from sscard.applets.image import is_card_image
from sscard.applets.scripted import ScriptedCard
from sscard.errors import InvalidInput, NoCard
from sscard.i18n import _
from sscard.transport.base import (
    PINPAD_PREFIX,
    VIRTUAL_PREFIX,
    CardLike,
    Transport,
    register_card_files,
    register_reader_form,
)

__all__ = ["PINPAD_PREFIX", "ScriptedCard", "load_card", "open_pin_pad"]


def load_card(path: str | Path) -> CardLike:
    """Open the card stored at ``path``; clear errors for a missing or foreign file."""
    p = Path(path)
    if not p.exists():
        raise NoCard(_("no card file at {path}").format(path=p)).with_hint(
            _("create a new card at that path")
        )
    if is_card_image(p):
        from sscard.applets.factory import open_image_file

        return open_image_file(p)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(
            _("{path} is not a card file this version of sscard can open ({error})").format(
                path=p, error=exc
            )
        ) from None
    kind = data.get("sscard_card") if isinstance(data, dict) else None
    if kind == "scripted":
        try:
            return ScriptedCard.from_json(data)
        except ValueError as exc:
            raise InvalidInput(_("{path}: {error}").format(path=p, error=exc)) from None
    raise InvalidInput(
        _("{path} is not a card file this version of sscard can open (kind {kind})").format(
            path=p, kind=repr(kind)
        )
    )


register_card_files(VIRTUAL_PREFIX, load_card)

ENV_PINPAD_KEYS = "SSCARD_PINPAD_KEYS"
"""Key presses of the emulated pad, comma-separated entries: digits (then OK),
``cancel`` or ``timeout`` (e.g. ``123456,654321,654321``). Emulated pads only."""


def open_pin_pad(path: str) -> Transport:
    """The card at ``path`` in an emulated PIN pad reader, keys from ``$SSCARD_PINPAD_KEYS``."""
    import os

    from sscard.applets.pinpad import EmulatedPinPad, Key

    pad = EmulatedPinPad(load_card(path), PINPAD_PREFIX + path)
    words = {"cancel": Key.CANCEL, "timeout": Key.TIMEOUT}
    for entry in filter(None, os.environ.get(ENV_PINPAD_KEYS, "").split(",")):
        try:
            pad.press(words.get(entry.strip().lower(), entry.strip()))
        except ValueError:  # not digits: the entry is not echoed (it may be a PIN)
            raise InvalidInput(
                _(
                    "${variable}: a PIN pad has only digit keys; give digits, cancel or "
                    "timeout, separated by commas"
                ).format(variable=ENV_PINPAD_KEYS)
            ) from None
    return pad


register_reader_form(PINPAD_PREFIX, open_pin_pad)
