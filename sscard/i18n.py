"""The interface language: gettext catalogs for every message a person reads.

Messages are written in English and marked where they are written: ``_("...")``
translates at once into the active language, ``N_("...")`` only marks a text
that is translated later with ``_(text)`` (a table built at import time).
Placeholders are named and filled after translation, so a translator may move
them: ``_("{tries} tries left").format(tries=n)``. Catalogs are managed with
Babel (``make i18n``; docs/i18n.md) and compiled into ``sscard/locale``; the
runtime reads them with the standard library's :mod:`gettext`.

The language is the one given to :func:`set_language`, else the first of
``$SSCARD_LANG``, ``$LC_ALL``, ``$LC_MESSAGES`` and ``$LANG`` that is set
(docs/cli.md, "Language"). Machine interfaces never go through here: JSON keys,
exit codes, national error codes and audit action names stay as they are.

Imports nothing from sscard (the bottom layer).
"""

from __future__ import annotations

import gettext as _gettext
import os
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

__all__ = [
    "DOMAIN",
    "LANGUAGES",
    "LOCALE_DIR",
    "N_",
    "N_plural",
    "UnsupportedLanguage",
    "_",
    "columns",
    "language",
    "ljust",
    "ngettext",
    "normalize",
    "resolve",
    "set_language",
    "using",
]

DOMAIN = "sscard"
LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("zh_CN", "en")
"""The interface languages: Simplified Chinese and English (the source language)."""

ENV_LANG = "SSCARD_LANG"
_LOCALE_VARIABLES = (ENV_LANG, "LC_ALL", "LC_MESSAGES", "LANG")

_lock = threading.Lock()
_active: str | None = None
_catalogs: dict[str, _gettext.NullTranslations] = {}
_override: ContextVar[str | None] = ContextVar("sscard_language", default=None)


class UnsupportedLanguage(ValueError):
    """A language sscard has no catalog for (the message names the ones it has)."""


def normalize(value: str) -> str | None:
    """The interface language a locale name asks for, or None when sscard has none.

    ``zh_CN.UTF-8``, ``zh-CN``, ``zh_Hans``, ``zh`` and ``zh_SG`` → ``zh_CN``
    (Simplified Chinese); ``en_US.UTF-8``, ``en``, ``C`` and ``POSIX`` → ``en``.
    """
    name = value.strip().split(".", 1)[0].split("@", 1)[0].replace("-", "_")
    lowered = name.lower()
    if lowered in ("c", "posix") or lowered == "en" or lowered.startswith("en_"):
        return "en"
    if lowered in ("zh", "zh_cn", "zh_sg", "zh_hans", "zh_hans_cn", "zh_my"):
        return "zh_CN"
    return None


def resolve(explicit: str | None = None, environ: dict[str, str] | None = None) -> str:
    """The language to use: ``explicit`` (``--lang``), else the environment, else English.

    An explicit language sscard has no catalog for raises :class:`UnsupportedLanguage`;
    an unknown locale in the environment falls back to English, as gettext does.
    ``LANGUAGE``-style lists (``zh_CN:en``) take their first known entry.
    """
    if explicit:
        chosen = normalize(explicit)
        if chosen is None:
            raise UnsupportedLanguage(
                f"unsupported language {explicit!r}: choose one of {', '.join(LANGUAGES)}"
            )
        return chosen
    env = os.environ if environ is None else environ
    for variable in _LOCALE_VARIABLES:
        value = env.get(variable, "")
        if not value:
            continue
        for entry in value.split(":"):
            chosen = normalize(entry)
            if chosen is not None:
                return chosen
        return "en"  # set but unknown: the first set variable decides, as in POSIX
    return "en"


def set_language(lang: str | None) -> str:
    """Make ``lang`` (a locale name; None: from the environment) the active language."""
    global _active
    chosen = resolve(lang)
    with _lock:
        _active = chosen
    return chosen


@contextmanager
def using(lang: str | None) -> Iterator[str]:
    """Speak ``lang`` (a locale name; None: the active language) inside the block, in this
    thread or task only: a service answering callers in different languages (the agent)
    sets it per request. An unknown name raises :class:`UnsupportedLanguage`."""
    chosen = resolve(lang) if lang else language()
    token = _override.set(chosen)
    try:
        yield chosen
    finally:
        _override.reset(token)


def language() -> str:
    """The active interface language: the one of :func:`using` in this context, else the
    process's (resolved from the environment on first use)."""
    global _active
    chosen = _override.get()
    if chosen is not None:
        return chosen
    if _active is None:
        with _lock:
            if _active is None:
                _active = resolve()
    return _active


def _catalog(lang: str) -> _gettext.NullTranslations:
    found = _catalogs.get(lang)
    if found is None:
        with _lock:
            found = _catalogs.get(lang)
            if found is None:
                if lang == "en":
                    found = _gettext.NullTranslations()
                else:
                    found = _gettext.translation(
                        DOMAIN, str(LOCALE_DIR), languages=[lang], fallback=True
                    )
                _catalogs[lang] = found
    return found


def _(message: str) -> str:
    """``message`` in the active language (the English text when no translation exists)."""
    if not message:
        return message
    return _catalog(language()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n``, in the active language."""
    return _catalog(language()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark ``message`` for translation without translating it (translate with ``_(message)``)."""
    return message


def N_plural(singular: str, plural: str) -> tuple[str, str]:
    """Mark a singular/plural pair for translation (translate later with :func:`ngettext`)."""
    return singular, plural


def reload_catalogs() -> None:
    """Forget loaded catalogs (after ``make i18n`` rebuilt them in a running test)."""
    with _lock:
        _catalogs.clear()


def columns(text: str) -> int:
    """How many terminal columns ``text`` takes: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def ljust(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` terminal columns (aligns Chinese labels)."""
    return text + " " * max(0, width - columns(text))
