"""Control characters in card text: refused on input, escaped on output (docs/layout.md).

One set, used both ways: C0 and C1 controls (U+0000–U+001F, U+007F–U+009F,
which include TAB, LF, CR and NEL U+0085), the Unicode line and paragraph
separators (U+2028, U+2029) and the bidirectional formatting characters
(embeddings and overrides U+202A–U+202E, isolates U+2066–U+2069, marks U+200E,
U+200F, U+061C). Holder input holding one is refused (:func:`control_problem`);
text read from a card, which may come from anywhere, is printed through
:func:`escape_controls` (human output) or :func:`escape_json_controls` (JSON).
"""

from __future__ import annotations

import re
from functools import cache

from sscard.i18n import _

_C0 = "\x00-\x1f"  # TAB, LF, VT, FF, CR among them
_OTHERS = (
    "\x7f-\x9f"  # DEL and C1 (NEL U+0085 among them)
    "\u2028\u2029"  # line and paragraph separators
    "\u202a-\u202e\u2066-\u2069"  # bidi embeddings, overrides and isolates
    "\u200e\u200f\u061c"  # bidi marks
)


_SOURCES = {
    "control": f"[{_C0}{_OTHERS}]",
    "control-or-backslash": f"[{_C0}{_OTHERS}\\\\]",
    # json.dumps escapes C0 in strings itself, and its own line breaks (indent) must stay.
    "json": f"[{_OTHERS}]",
}


# The patterns compile on first use: text that str.isprintable() passes holds none of
# them (every character of the set is in Unicode category Cc, Cf, Zl or Zp), so
# printing ordinary card text never needs them (issue 19, start-up).
@cache
def _pattern(which: str) -> re.Pattern[str]:
    return re.compile(_SOURCES[which])


def is_control(char: str) -> bool:
    """Whether ``char`` (one character) is in the refused set."""
    return not char.isprintable() and _pattern("control").fullmatch(char) is not None


def control_problem(text: str) -> str | None:
    """Why ``text`` cannot be card data (its first control character), or ``None``."""
    found = None if text.isprintable() else _pattern("control").search(text)
    if found is None:
        return None
    char = found.group()
    return _(
        "must not contain control characters (line breaks, C0/C1 controls, bidi "
        "controls): U+{code:04X} at position {position}"
    ).format(code=ord(char), position=found.start() + 1)


def _escape(found: re.Match[str]) -> str:
    char = found.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` for a terminal: each control character as ``\\xNN`` or ``\\uNNNN``.

    A backslash is doubled, so an escape always means a control character on
    the card, never the same characters written as text.
    """
    if text.isprintable() and "\\" not in text:
        return text
    return _pattern("control-or-backslash").sub(_escape, text)


def escape_json_controls(text: str) -> str:
    """JSON text with the control characters ``json.dumps(ensure_ascii=False)`` leaves raw
    (DEL, C1, line separators, bidi controls) written as ``\\uNNNN`` escapes.

    In JSON text those characters can only stand inside strings, where
    ``\\uNNNN`` means the same character: the parsed value is unchanged.
    """
    if text.isprintable():
        return text
    return _pattern("json").sub(lambda m: f"\\u{ord(m.group()):04x}", text)
