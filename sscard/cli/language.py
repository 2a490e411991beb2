"""The CLI in the active language: ``--lang``, Click's own texts, help of every command.

The language is chosen once per run, before Click parses anything (so a usage
error is already in the right language): ``--lang`` on the command line, else
``$SSCARD_LANG``, else the locale (docs/cli.md, "Language"). Help texts stay
English in the code (docstrings, ``help=``); :func:`localize` swaps in their
translations before Click renders them, keeping the English text to translate
again when a later run in the same process picks another language (tests).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import click

from sscard import i18n

LANG_HELP = i18n.N_(
    "Interface language: zh_CN (Simplified Chinese) or en. "
    "Default: $SSCARD_LANG, else the locale (LC_ALL, LC_MESSAGES, LANG), else en."
)

_SOURCE = "_sscard_source_help"
"""Attribute keeping a command's or parameter's English help texts."""


def lang_in_args(args: Sequence[str]) -> str | None:
    """The value of a ``--lang`` given before the sub-command's own ``--`` (None: not given)."""
    for index, arg in enumerate(args):
        if arg == "--":
            return None
        if arg == "--lang" and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--lang="):
            return arg.partition("=")[2]
    return None


def choose(args: Sequence[str]) -> str:
    """Set the run's language from the arguments or the environment; an unknown one is English.

    An unsupported ``--lang`` is reported by the option itself (:func:`lang_callback`).
    """
    try:
        return i18n.set_language(lang_in_args(args))
    except i18n.UnsupportedLanguage:
        return i18n.set_language(None)


def lang_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--lang``: check the value and make it the language of this run."""
    if value is None:
        return None
    try:
        i18n.set_language(value)
    except i18n.UnsupportedLanguage:
        raise click.BadParameter(
            i18n._("unsupported language {value!r}: choose one of {choices}").format(
                value=value, choices=", ".join(i18n.LANGUAGES)
            ),
            ctx=ctx,
            param=param,
        ) from None
    return value


def _texts(obj: object, names: Sequence[str]) -> dict[str, str | None]:
    kept: dict[str, str | None] | None = getattr(obj, _SOURCE, None)
    if kept is None:
        kept = {name: getattr(obj, name, None) for name in names}
        setattr(obj, _SOURCE, kept)
    return kept


def _translated(text: str | None) -> str | None:
    return None if text is None else i18n._(inspect.cleandoc(text))


def localize(command: click.Command) -> None:
    """Put the help texts of ``command``, its parameters and sub-commands in the active language."""
    texts = _texts(command, ("help", "short_help", "epilog"))
    command.help = _translated(texts["help"])
    command.short_help = _translated(texts["short_help"])
    command.epilog = _translated(texts["epilog"])
    # Click builds the --help option once, in the language of that moment: rebuild it.
    if hasattr(command, "_help_option"):
        command._help_option = None
    for param in command.params:
        if isinstance(param, click.Option):
            param.help = _translated(_texts(param, ("help",))["help"])
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            localize(sub)


_CLICK_MODULES = ("core", "decorators", "exceptions", "formatting", "parser", "termui", "types")


_WIDE_RANGES = (
    (0x2E80, 0x9FFF),
    (0xAC00, 0xD7AF),
    (0xF900, 0xFAFF),
    (0xFE30, 0xFE4F),
    (0xFF00, 0xFFEF),
)
"""Characters a help line may break before or after (CJK, Hangul, full-width forms)."""


def _is_wide(char: str) -> bool:
    code = ord(char)
    return code >= 0x2E80 and any(low <= code <= high for low, high in _WIDE_RANGES)


def _pieces(chunk: str) -> list[str]:
    """One wide character, or a run of anything else (a Latin word stays whole).

    Plain code rather than a regular expression: compiling a character class this
    wide costs more than a whole ``sscard --version`` may take.
    """
    pieces: list[str] = []
    start = 0
    for index, char in enumerate(chunk):
        if _is_wide(char):
            if start < index:
                pieces.append(chunk[start:index])
            pieces.append(char)
            start = index + 1
    if start < len(chunk):
        pieces.append(chunk[start:])
    return pieces


def _terminal_columns(text: str) -> int:
    """Click's ``term_len`` counting wide (Chinese) characters as the two columns they take."""
    if text.isascii() and "\x1b" not in text:
        return len(text)  # the common case, counted without a look at each character
    from click._compat import strip_ansi

    return i18n.columns(strip_ansi(text))


def _column_wrapper() -> type:
    """Click's help wrapper, able to break Chinese text between any two characters."""
    from click import _textwrap

    class ColumnWrapper(_textwrap.TextWrapper):
        _sscard = True

        def _split(self, text: str) -> list[str]:
            chunks: list[str] = []
            for chunk in super()._split(text):
                chunks.extend(_pieces(chunk))
            return chunks

    return ColumnWrapper


def install_click_texts() -> None:
    """Make Click's own texts ("Usage:", "Missing argument" …) come from sscard's catalogs.

    Click translates with module-level ``_``/``ngettext`` (the standard gettext
    functions); each is pointed at :mod:`sscard.i18n`'s, which follow the active language.
    """
    import importlib

    for name in _CLICK_MODULES:
        module = importlib.import_module(f"click.{name}")
        if hasattr(module, "_"):
            module._ = i18n._  # type: ignore[attr-defined]
        if hasattr(module, "ngettext"):
            module.ngettext = i18n.ngettext  # type: ignore[attr-defined]
    # Help text is wrapped by terminal columns, and Chinese may break anywhere. Click's
    # wrapper (and textwrap under it) is patched when help is first wrapped, so a
    # command that prints no help does not load it.
    from click import formatting

    setattr(formatting, "term_len", _terminal_columns)  # noqa: B010
    if not getattr(formatting.wrap_text, "_sscard", False):
        setattr(formatting, "wrap_text", _wrapping_by_columns(formatting.wrap_text))  # noqa: B010


def _wrapping_by_columns(wrap_text: Callable[..., str]) -> Callable[..., str]:
    """Click's ``wrap_text``, with its text wrapper made the column-aware one on first use."""

    def wrap(*args: Any, **kwargs: Any) -> str:
        from click import _textwrap

        if not getattr(_textwrap.TextWrapper, "_sscard", False):
            setattr(_textwrap, "TextWrapper", _column_wrapper())  # noqa: B010
            setattr(_textwrap, "term_len", _terminal_columns)  # noqa: B010
        return wrap_text(*args, **kwargs)

    wrap._sscard = True  # type: ignore[attr-defined]
    return wrap
