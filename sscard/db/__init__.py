"""The one door to the store: open it, its tables, transactions, claims.

The store is one SQLite file (``sscard.db``: a service point or a single
station, the embedded default) or one PostgreSQL database (an issuing centre's
stations sharing it). :func:`open_store` is how sscard opens it; every module
that keeps tables there registers its versioned migrations with
:func:`register_schema` when it is imported (issuance, outbox, inbox,
operators, audit). Library functions that write take the connection they
write to; only a caller at the edge (the CLI, an application) chooses the store.

Connections are in autocommit mode: nothing is in a transaction unless
:func:`transaction` opened one, so a caller always knows what commits
together. SQLite runs with ``synchronous=FULL`` and PostgreSQL commits are
durable by default: an event in the outbox survives a crash or a power loss
(regulation art. 11, docs/exchange.md). docs/store.md describes both engines.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sscard.db.connection import (
    BUSY_TIMEOUT_MS,
    Connection,
    Cursor,
    open_postgres,
    open_sqlite,
)
from sscard.db.errors import (
    IntegrityError,
    StoreBusy,
    StoreNotEmpty,
    StoreNotInitialized,
    StoreNotReady,
    StoreTooNew,
    StoreUnavailable,
)
from sscard.db.migrations import (
    Migration,
    Schema,
    migrate,
    register_schema,
    registered,
    schemas,
    status,
)
from sscard.db.migrations import ensure as ensure_schema
from sscard.db.target import POSTGRESQL, SQLITE, StoreTarget, parse_target
from sscard.lazy import lazy_names
from sscard.paths import default_store

if TYPE_CHECKING:
    from sscard.db.claims import Claim, claim

# Claims (file locks on SQLite) load when first used: a command that claims
# nothing does not pay for them (issue 19, start-up).
__getattr__, __dir__ = lazy_names(
    __name__, {"Claim": "sscard.db.claims", "claim": "sscard.db.claims"}
)

__all__ = [
    "BUSY_TIMEOUT_MS",
    "POSTGRESQL",
    "SQLITE",
    "Claim",
    "Connection",
    "Cursor",
    "IntegrityError",
    "Migration",
    "Schema",
    "StoreBusy",
    "StoreNotEmpty",
    "StoreNotInitialized",
    "StoreNotReady",
    "StoreTarget",
    "StoreTooNew",
    "StoreUnavailable",
    "claim",
    "connect",
    "ensure_schema",
    "migrate",
    "open_db",
    "open_store",
    "parse_target",
    "register_schema",
    "registered",
    "schemas",
    "status",
    "transaction",
]


def connect(target: str | Path | StoreTarget | None = None) -> Connection:
    """Connect to the store ``target`` without checking or creating any table.

    ``None`` means the default (:func:`sscard.paths.default_store`). For
    ``sscard store init|upgrade|status`` and :func:`open_store`.
    """
    if not isinstance(target, StoreTarget):
        target = parse_target(target if target is not None else default_store())
    return open_postgres(target) if target.engine == POSTGRESQL else open_sqlite(target)


def open_store(target: str | Path | StoreTarget | None = None) -> Connection:
    """Open the store ``target`` with every registered schema ready.

    A path (or ``sqlite:///PATH``) is an SQLite file, created and upgraded on
    the spot; a ``postgresql://`` URL is a centre's database, which must have
    been initialized (:func:`migrate`) to this sscard's version
    (:class:`StoreNotReady`, :class:`StoreTooNew` otherwise).
    """
    conn = connect(target)
    try:
        ensure_schema(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def open_db(path: Path | str) -> Connection:
    """Open (and create) an SQLite file with sscard's settings and no tables: for
    other databases than the store (the reference platform's)."""
    return open_sqlite(StoreTarget(SQLITE, str(path), str(path)))


_savepoints = itertools.count(1)


@contextmanager
def transaction(conn: Connection, *, immediate: bool = True) -> Iterator[Connection]:
    """``BEGIN`` … ``COMMIT``, or ``ROLLBACK`` when the block raises.

    ``immediate`` takes the store's write lock up front (SQLite ``BEGIN
    IMMEDIATE``; on PostgreSQL an advisory lock every sscard write transaction
    takes), so writers wait for each other instead of failing at their first
    write, and a read-then-write (the audit chain's head) sees no other
    writer in between. Inside a caller's transaction the block is a
    savepoint: its writes are undone if it raises, and otherwise commit (or
    roll back) with the caller's.
    """
    if conn.in_transaction:
        name = f"sscard_{next(_savepoints)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        conn.execute(f"RELEASE SAVEPOINT {name}")
        return
    conn.begin(write=immediate)
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    conn.commit()
