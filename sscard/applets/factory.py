"""Making and opening emulated cards (``sscard virtual new``, ``--reader virtual:PATH``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sscard.applets.cos import EmulatedCard, Latency, blank_state
from sscard.applets.image import CardState, FileStorage, ImageKind, MemoryStorage, image_kind
from sscard.applets.psam import EmulatedPsam, PsamState, blank_psam, psam_file, psam_memory
from sscard.errors import InvalidInput
from sscard.i18n import _
from sscard.keys.dev import development_card_key
from sscard.keys.scheme import KeySlot
from sscard.layout import load_profile, shipped_profiles
from sscard.layout.loader import DEFAULT_PROFILE
from sscard.vocab import KeyType

TransportKeys = Callable[[bytes, KeySlot], bytes]
"""``(serial, tk_slot) → the blank card's TK``: what the card vendor loads into a new card.
``sscard virtual new --keystore`` passes ``SecurityModule.blank_card_transport_key``."""


def parse_serial(text: str | None) -> bytes:
    """A card serial from 16 hex digits, or a random one when ``text`` is None."""
    if text is None:
        return os.urandom(8)
    try:
        serial = bytes.fromhex(text)
    except ValueError:
        serial = b""
    if len(serial) != 8:
        raise InvalidInput(
            _("bad serial"), [("serial", _("must be 16 hexadecimal digits (8 bytes)"))]
        )
    return serial


def parse_atr(text: str) -> bytes:
    """An ATR from hex (``virtual new --atr``): any ATR works, nothing recognises a card by it."""
    try:
        atr = bytes.fromhex(text.replace(":", "").replace(" ", ""))
    except ValueError:
        atr = b""
    if not 2 <= len(atr) <= 33 or atr[0] not in (0x3B, 0x3F):
        raise InvalidInput(
            _("bad ATR"), [("atr", _("must be 2..33 bytes of hex starting 3B or 3F"))]
        )
    return atr


def blank_card_state(
    profile_name: str = DEFAULT_PROFILE,
    serial: bytes | None = None,
    *,
    transport: TransportKeys | None = None,
    atr: bytes | None = None,
) -> CardState:
    """The state of a blank card: MF and the transport key diversified for its serial.

    ``profile_name`` is a shipped profile or a profile file (the card keeps its
    absolute path, to reopen it). The transport key comes from ``transport``
    (backed by the transport root the vendor shares with the centre), else from
    the development keys.
    """
    profile = load_profile(profile_name)
    serial = os.urandom(8) if serial is None else serial
    tk_slot = profile.key_scheme.find("MF", KeyType.TK, 0)
    tk = development_card_key(tk_slot, serial) if transport is None else transport(serial, tk_slot)
    state = blank_state(profile, serial, tk)
    state.atr = bytes(atr) if atr is not None else b""
    if profile_name not in shipped_profiles():  # a profile file: the card reopens it by path
        state.profile = str(Path(profile_name).resolve())
    return state


def new_card_file(
    path: str | os.PathLike[str],
    profile_name: str = DEFAULT_PROFILE,
    serial: bytes | None = None,
    *,
    transport: TransportKeys | None = None,
    atr: bytes | None = None,
) -> EmulatedCard:
    """Create a blank card image at ``path`` (refuses to overwrite) and open it."""
    storage = FileStorage(path)
    storage.create(blank_card_state(profile_name, serial, transport=transport, atr=atr))
    return EmulatedCard(storage)


def new_memory_card(
    profile_name: str = DEFAULT_PROFILE,
    serial: bytes | None = None,
    *,
    latency: Latency | None = None,
    transport: TransportKeys | None = None,
) -> EmulatedCard:
    """A blank card whose EEPROM lives in memory (tests, benchmarks, ``--virtual N``)."""
    state = blank_card_state(profile_name, serial, transport=transport)
    return EmulatedCard(MemoryStorage(state), latency=latency)


def open_card_file(path: str | os.PathLike[str], *, latency: Latency | None = None) -> EmulatedCard:
    """Open the card image at ``path`` (a PSAM image is refused: ``WrongImageKind``)."""
    return EmulatedCard(FileStorage(Path(path)), latency=latency)


# --- PSAMs (docs/card.md, "The emulated PSAM") -------------------------------------


def blank_psam_state(
    serial: bytes | None = None,
    *,
    profile_name: str = DEFAULT_PROFILE,
    transport: TransportKeys | None = None,
    atr: bytes | None = None,
) -> PsamState:
    """A blank PSAM keyed like a blank card: its PTK is the profile's MF/TK/00 slot
    diversified for the PSAM serial, from ``transport`` or the development keys."""
    tk_slot = load_profile(profile_name).key_scheme.find("MF", KeyType.TK, 0)
    serial = os.urandom(8) if serial is None else serial
    ptk = development_card_key(tk_slot, serial) if transport is None else transport(serial, tk_slot)
    state = blank_psam(
        serial,
        ptk,
        algorithm=tk_slot.algorithm,
        version=tk_slot.version,
        error_limit=tk_slot.error_limit,
    )
    state.atr = bytes(atr) if atr is not None else b""
    return state


def new_psam_file(
    path: str | os.PathLike[str],
    serial: bytes | None = None,
    *,
    profile_name: str = DEFAULT_PROFILE,
    transport: TransportKeys | None = None,
    atr: bytes | None = None,
) -> EmulatedPsam:
    """Create a blank PSAM image at ``path`` (refuses to overwrite) and open it."""
    storage = psam_file(path)
    storage.create(
        blank_psam_state(serial, profile_name=profile_name, transport=transport, atr=atr)
    )
    return EmulatedPsam(storage)


def new_memory_psam(
    serial: bytes | None = None,
    *,
    profile_name: str = DEFAULT_PROFILE,
    transport: TransportKeys | None = None,
) -> EmulatedPsam:
    """A blank PSAM whose EEPROM lives in memory (tests)."""
    state = blank_psam_state(serial, profile_name=profile_name, transport=transport)
    return EmulatedPsam(psam_memory(state))


def open_psam_file(path: str | os.PathLike[str], *, latency: Latency | None = None) -> EmulatedPsam:
    """Open the PSAM image at ``path`` (a card image is refused: ``WrongImageKind``)."""
    return EmulatedPsam(psam_file(Path(path)), latency=latency)


def open_image_file(
    path: str | os.PathLike[str], *, latency: Latency | None = None
) -> EmulatedCard | EmulatedPsam:
    """Open the image at ``path`` with the emulator its kind names (card or PSAM)."""
    if image_kind(path) is ImageKind.PSAM:
        return open_psam_file(path, latency=latency)
    return open_card_file(path, latency=latency)
