"""Where sscard keeps its local data (docs/exchange.md, "Local store").

The default store is one SQLite file, ``sscard.db``, in the data directory
(a centre names a PostgreSQL database instead: docs/store.md); it holds the
issuance store, the exchange outbox and the pulled block list / holder updates,
so that a local change and the event that reports it commit in one transaction
(regulation art. 11).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA_DIR = "SSCARD_DATA_DIR"
ENV_STORE = "SSCARD_STORE"
STORE_NAME = "sscard.db"


def data_dir() -> Path:
    """The data directory: ``$SSCARD_DATA_DIR``, else ``$XDG_DATA_HOME/sscard``,
    else ``~/.local/share/sscard``. Not created here."""
    explicit = os.environ.get(ENV_DATA_DIR)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "sscard"


def default_store() -> Path:
    """The local store file: ``$SSCARD_STORE``, else ``data_dir() / "sscard.db"``."""
    explicit = os.environ.get(ENV_STORE)
    return Path(explicit) if explicit else data_dir() / STORE_NAME
