"""Secure PIN entry for the social security card: the cardholder types on the reader's pad.

The host sends the pad a PIN_VERIFY_STRUCTURE or PIN_MODIFY_STRUCTURE holding
the card's VERIFY or CHANGE PIN command with placeholder bytes
(:mod:`sscard.transport.part10`); the pad reads the digits, fills them in and
sends the command to the card. The host gets the card's response, or one of
the pad's own status words as a typed error, and never the PIN
(docs/card.md, "PIN pads (PC/SC part 10)").

The PIN lives in SSSE: select it before :func:`secure_verify` or
:func:`secure_change`, as for the host-side commands.
"""

from __future__ import annotations

import logging
from typing import Final

from sscard import commands
from sscard.transport.base import Transport
from sscard.transport.part10 import (
    CONFIRM_NEW_PIN,
    ENTER_CURRENT_PIN,
    FEATURE_MODIFY_PIN_DIRECT,
    FEATURE_VERIFY_PIN_DIRECT,
    PIN_BCD,
    VALIDATE_KEY,
    PinEntry,
    block_string,
    format_string,
    modify_structure,
    pin_pad_control,
    verify_structure,
)

log = logging.getLogger(__name__)

PIN_DIGITS: Final = 6
"""The card's PIN: 6 digits, packed BCD in 3 bytes (docs/card.md, VERIFY)."""
PIN_BLOCK: Final = PIN_DIGITS // 2
LANG_ZH_CN: Final = 0x0804
"""wLangId of the pad's prompts: Chinese (PRC)."""
TIMEOUT: Final = 30
"""Seconds the pad waits for the cardholder (bTimerOut, bTimerOut2) [ours]."""

_PLACEHOLDER = b"\xff" * PIN_BLOCK

VERIFY_TEMPLATE: Final = commands.verify(_PLACEHOLDER).encode()
"""``00 20 00 00 03 FF FF FF``: the PIN goes at offset 0 of the data field."""
CHANGE_TEMPLATE: Final = commands.change_pin(_PLACEHOLDER, _PLACEHOLDER).encode()
"""``80 5E 01 00 07 FF FF FF FF FF FF FF``: old PIN at offset 0, FF, new PIN at offset 4."""
OFFSET_OLD: Final = 0
OFFSET_NEW: Final = PIN_BLOCK + 1  # after old ‖ FF


def _entry(timeout: int) -> PinEntry:
    return PinEntry(
        format_string=format_string(position=0, pin_format=PIN_BCD),  # 0x81
        block_string=block_string(block_bytes=PIN_BLOCK),  # 0x03: no length field
        min_digits=PIN_DIGITS,
        max_digits=PIN_DIGITS,
        validation=VALIDATE_KEY,
        lang_id=LANG_ZH_CN,
        timeout=timeout,
        timeout2=timeout,
    )


def social_security_verify(*, timeout: int = TIMEOUT) -> bytes:
    """The PIN_VERIFY_STRUCTURE of the card's VERIFY (6 digits BCD at data offset 0)."""
    return verify_structure(VERIFY_TEMPLATE, _entry(timeout), messages=1, msg_index=0)


def social_security_change(*, timeout: int = TIMEOUT) -> bytes:
    """The PIN_MODIFY_STRUCTURE of the card's CHANGE PIN: current PIN, new PIN, new PIN again."""
    return modify_structure(
        CHANGE_TEMPLATE,
        _entry(timeout),
        offset_old=OFFSET_OLD,
        offset_new=OFFSET_NEW,
        confirm=CONFIRM_NEW_PIN | ENTER_CURRENT_PIN,
        messages=3,
        msg_indexes=(0, 1, 2),
    )


def secure_verify(
    transport: Transport, features: dict[int, int], *, timeout: int = TIMEOUT
) -> bytes:
    """VERIFY with the PIN typed on the pad; the card's response (data ‖ SW).

    The pad's 6400 / 6401 / 6403 are :class:`~sscard.errors.PinEntryTimedOut`,
    :class:`~sscard.errors.PinEntryCancelled`, :class:`~sscard.errors.PinLengthWrong`
    (no try spent); the card's own answer (9000, 63Cx, 6983, ...) is returned
    for the caller to read. A reader without the feature raises
    :class:`~sscard.errors.ReaderControlUnsupported`.
    """
    log.debug("%s: VERIFY on the PIN pad", transport.name)
    return pin_pad_control(
        transport, features, FEATURE_VERIFY_PIN_DIRECT, social_security_verify(timeout=timeout)
    )


def secure_change(
    transport: Transport, features: dict[int, int], *, timeout: int = TIMEOUT
) -> bytes:
    """CHANGE PIN with both PINs typed on the pad; the card's response (data ‖ SW).

    As :func:`secure_verify`, plus the pad's 6402 (the new PIN and its
    confirmation differ) as :class:`~sscard.errors.PinsDiffer`.
    """
    log.debug("%s: CHANGE PIN on the PIN pad", transport.name)
    return pin_pad_control(
        transport, features, FEATURE_MODIFY_PIN_DIRECT, social_security_change(timeout=timeout)
    )
