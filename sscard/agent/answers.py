"""The JSON answer of a card-service call: the national code, a message, the data.

Every call answers one object (docs/agent.md, "Answers")::

    {"code": 0, "message": "成功", "data": {...}}
    {"code": -51, "error": "PinIncorrect", "message": "...", "national_message": "PIN校验失败",
     "tries_left": 5}

``code`` is the national terminal interface's return value (0 or a negative
error code, :mod:`sscard.national`); ``message`` is in the caller's language;
``error`` is sscard's stable error class name. Nothing secret is ever in an
answer: errors never carry PINs (:mod:`sscard.errors`).
"""

from __future__ import annotations

from typing import Any

from sscard import errors
from sscard.i18n import N_, _
from sscard.national import message_for

OK_MESSAGE = N_("success")


def ok(data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A successful answer (code 0)."""
    answer: dict[str, Any] = {"code": 0, "message": _(OK_MESSAGE)}
    if data is not None:
        answer["data"] = data
    return answer


def national_message(code: int) -> str:
    """The national interface's wording of ``code`` in the active language ("" when unnamed)."""
    return message_for(code) or ""


def failure(exc: errors.SscardError) -> dict[str, Any]:
    """The answer for a library error: its national code, class name and message."""
    code = exc.national_code
    answer: dict[str, Any] = {
        "code": code,
        "error": type(exc).__name__,
        "message": str(exc),
        "national_message": national_message(code),
    }
    if exc.hint:
        answer["hint"] = exc.hint
    tries = getattr(exc, "tries_left", None)
    if tries is not None:
        answer["tries_left"] = tries
    retry = getattr(exc, "retry_after", None)
    if retry is not None:
        answer["retry_after"] = round(float(retry), 1)
    problems = getattr(exc, "problems", None)
    if problems:
        answer["problems"] = [{"field": f, "message": m} for f, m in problems]
    return answer
