"""Every module that keeps tables in the store, loaded together (docs/store.md).

Modules register their versioned schemas when they are imported, and a command
imports only what it needs; initializing, upgrading or describing a store
needs them all.
"""

from __future__ import annotations

import importlib

from sscard import db

OWNERS = (
    "sscard.audit.schema",
    "sscard.auth.store",
    "sscard.exchange.outbox",
    "sscard.exchange.inbox",
    "sscard.issuance.store",
)
"""The modules that own tables in the store, in the order their tables are created."""


def load_all() -> list[str]:
    """Import every table-owning module; the names of the registered schemas."""
    for name in OWNERS:
        importlib.import_module(name)
    return db.registered()
