"""Logging set-up: a TRACE level below DEBUG for APDU traces (hex both ways, redacted)."""

from __future__ import annotations

import logging

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(level: str) -> None:
    """Send sscard's log records at ``level`` and above to stderr."""
    logger = logging.getLogger("sscard")
    logger.setLevel(LEVELS[level])
    if not any(getattr(h, "_sscard", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._sscard = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
