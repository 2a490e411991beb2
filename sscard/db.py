"""The one door to the local store ``sscard.db``: open it, its tables, transactions.

:func:`open_store` is how sscard opens the local store; every module that keeps
tables there registers them with :func:`register_schema` when it is imported
(issuance, outbox, inbox, operators, audit), and :func:`open_store` creates
all registered tables. Library functions that write take the connection they
write to; only a caller at the edge (the CLI, an application) chooses the file.

Connections are in autocommit mode (``isolation_level=None``): nothing is in a
transaction unless :func:`transaction` opened one, so a caller always knows
what commits together. ``synchronous=FULL`` makes a commit durable before it
returns: an event in the outbox survives a crash or a power loss (regulation
art. 11, docs/exchange.md).
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sscard.errors import InvalidInput
from sscard.i18n import _
from sscard.paths import default_store

BUSY_TIMEOUT_MS = 10_000


@dataclass(frozen=True, slots=True)
class Schema:
    """The tables one module keeps in the local store.

    ``statements`` are ``CREATE … IF NOT EXISTS``; ``upgrade`` (optional) runs
    first and brings an older version of the tables up to date when it finds
    one (in a :func:`transaction` of its own).
    """

    name: str
    statements: tuple[str, ...]
    upgrade: Callable[[sqlite3.Connection], None] | None = None


_SCHEMAS: dict[str, Schema] = {}


def register_schema(
    name: str,
    statements: Sequence[str],
    *,
    upgrade: Callable[[sqlite3.Connection], None] | None = None,
) -> Schema:
    """Register the tables of module ``name`` (called once, at import); the schema."""
    schema = Schema(name, tuple(s for s in statements if s.strip()), upgrade)
    _SCHEMAS[name] = schema
    return schema


def registered() -> list[str]:
    """The names of the registered schemas, in registration order."""
    return list(_SCHEMAS)


def ensure_schema(conn: sqlite3.Connection, *names: str) -> None:
    """Create the tables of the schemas ``names`` (all registered ones if none) when missing.

    Safe inside a caller's transaction: statements run one by one, never with
    ``executescript`` (which would commit the caller's transaction).
    """
    for name in names or tuple(_SCHEMAS):
        schema = _SCHEMAS[name]
        if schema.upgrade is not None:
            schema.upgrade(conn)
        for statement in schema.statements:
            conn.execute(statement)


def open_db(path: Path | str) -> sqlite3.Connection:
    """Open (and create) the SQLite file at ``path`` with sscard's settings; no tables.

    WAL, ``synchronous=FULL``, foreign keys, busy timeout. The parent directory
    is created (mode 0700). Raises :class:`InvalidInput` when the file cannot be
    opened or is not an SQLite database. The local store is opened with
    :func:`open_store`; this is for other databases (the reference platform's).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = sqlite3.connect(
            target, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except (sqlite3.DatabaseError, OSError) as exc:
        raise InvalidInput(
            _("cannot open the local store"), [(str(target), _reason(exc))]
        ) from None
    if str(mode).lower() != "wal":
        conn.close()
        raise InvalidInput(
            _("cannot open the local store"),
            [(str(target), _("journal mode {mode}, WAL needed").format(mode=mode))],
        )
    return conn


def open_store(path: Path | str | None = None) -> sqlite3.Connection:
    """Open (and create) the local store at ``path`` with every registered table ready.

    ``None`` means the default, :func:`sscard.paths.default_store` (``$SSCARD_STORE``,
    else ``sscard.db`` in the data directory).
    """
    conn = open_db(path if path is not None else default_store())
    try:
        ensure_schema(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "not a database" in text:
        return _("not an sscard store (not an SQLite database)")
    return text or type(exc).__name__


_savepoints = itertools.count(1)


@contextmanager
def transaction(
    conn: sqlite3.Connection, *, immediate: bool = True
) -> Iterator[sqlite3.Connection]:
    """``BEGIN [IMMEDIATE]`` … ``COMMIT``, or ``ROLLBACK`` when the block raises.

    ``IMMEDIATE`` takes the write lock up front, so two writers wait for each
    other (busy timeout) instead of failing at their first write. Inside a
    caller's transaction the block is a savepoint: its writes are undone if it
    raises, and otherwise commit (or roll back) with the caller's.
    """
    if conn.in_transaction:
        name = f"sscard_{next(_savepoints)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
        return
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
