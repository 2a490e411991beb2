"""The card number (EF05 item 07) and its check character (docs/layout.md, "Card number").

A card number is 9 characters ``[0-9A-Z]``: 8 characters and a check character.
The national specification has a check character (the card-management code
``CheckCardNo``) but its rule is not public; ours is **[ours]**: ISO/IEC 7064
MOD 37,36, the hybrid system for alphanumeric strings, whose check character is
itself one of ``0-9A-Z``.

MOD 37,36: start with P = 36; for each character of value v (``0``-``9`` are
0-9, ``A``-``Z`` 10-35), S = (P + v) mod 36, read 0 as 36, P = 2S mod 37. The
check character is the one whose value c makes (P + c) mod 36 = 1.
"""

from __future__ import annotations

from sscard.i18n import _

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LENGTH = 9  # with the check character
BODY = LENGTH - 1

_M = len(ALPHABET)  # 36


def is_alphanumeric(text: str) -> bool:
    """Whether ``text`` is made of ``0-9A-Z`` only (and is not empty)."""
    return bool(text) and all(ch in ALPHABET for ch in text)


def _values(text: str) -> list[int]:
    values = [ALPHABET.find(ch) for ch in text]
    if not text or -1 in values:
        raise ValueError("need characters 0-9 and A-Z only")
    return values


def check_character(body: str) -> str:
    """The ISO 7064 MOD 37,36 check character of ``body`` (any length, ``0-9A-Z``)."""
    p = _M
    for v in _values(body):
        s = (p + v) % _M or _M
        p = (2 * s) % (_M + 1)
    return ALPHABET[(1 - p) % _M]


def is_valid(text: str) -> bool:
    """Whether ``text`` ends in the MOD 37,36 check character of what precedes it."""
    if len(text) < 2:
        return False
    try:
        return check_character(text[:-1]) == text[-1]
    except ValueError:
        return False


def complete(number: str) -> str:
    """A card number with its check character: 8 characters get it appended, others stay."""
    if len(number) == BODY:
        return number + check_character(number)
    return number


def check_problem(number: str) -> str | None:
    """What is wrong with the check character of a 9-character card number, or None."""
    expected = check_character(number[:BODY])
    if number[BODY] != expected:
        return _(
            "wrong check character {char}: ISO 7064 MOD 37,36 gives {expected} "
            "for {body} (give the 8 characters alone to have it appended)"
        ).format(char=number[BODY], expected=expected, body=number[:BODY])
    return None
