"""One connection type over both engines: SQLite (embedded) and PostgreSQL (a centre).

sscard writes its SQL once, with ``?`` placeholders and the subset both engines
share (``ON CONFLICT``, ``RETURNING``, partial indexes, savepoints). A
:class:`Connection` runs it on its engine, maps the driver's errors to
:mod:`sscard.db.errors`, and offers the transaction primitives
:func:`sscard.db.transaction` builds on. psycopg is imported only when a
PostgreSQL store is opened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, Protocol

from sscard.db.errors import IntegrityError, StoreBusy, StoreUnavailable
from sscard.db.target import POSTGRESQL, SQLITE, StoreTarget
from sscard.errors import InvalidInput, OperationFailed
from sscard.i18n import _

BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_S = 10
LOCK_TIMEOUT_S = 30
"""PostgreSQL: the longest a statement waits for a lock (sscard's transactions hold
the write lock a few milliseconds)."""
IDLE_IN_TRANSACTION_S = 60
"""PostgreSQL: a session idle inside a transaction this long is ended by the server."""

WRITE_LOCK_KEY = 0x55C4_7D00_0000_0001
"""The advisory lock every PostgreSQL write transaction takes: one writer at a time,
centre-wide, as SQLite's ``BEGIN IMMEDIATE`` gives one writer per file."""


class Cursor(Protocol):
    """What a query answers: rows as tuples."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection:
    """A connection to the store; see the module docstring. Not shared between threads
    doing work at the same time (each worker opens its own)."""

    engine: str = ""

    def __init__(self, target: StoreTarget) -> None:
        self.target = target
        self.ready: set[str] = set()
        """Schemas found ready on this connection (:func:`sscard.db.migrations.ensure`)."""
        self.claims: dict[str, Any] = {}
        """Claims this connection holds (:mod:`sscard.db.claims`)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement with ``?`` placeholders."""
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Run one statement for each parameter row; the number of rows it changed."""
        raise NotImplementedError

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on this connection."""
        raise NotImplementedError

    def begin(self, *, write: bool) -> None:
        """Open a transaction; ``write`` takes the store's write lock up front."""
        raise NotImplementedError

    @property
    def lost(self) -> bool:
        """Whether the connection is closed or its server session is gone (with the
        session's transaction and locks); an SQLite file is never lost this way."""
        return False

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        self.execute("ROLLBACK")

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_exc: object) -> None:
        """Leaving ``with open_store(…) as conn:`` closes the connection (an open
        transaction is rolled back)."""
        self.close()

    def __repr__(self) -> str:
        return f"<sscard.db.Connection {self.engine} {self.target.display}>"


class SqliteConnection(Connection):
    """The embedded store: one SQLite file (WAL, ``synchronous=FULL``, foreign keys)."""

    engine = SQLITE

    def __init__(self, raw: sqlite3.Connection, target: StoreTarget) -> None:
        super().__init__(target)
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        try:
            return self.raw.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from None
        except sqlite3.OperationalError as exc:
            raise _sqlite_busy(exc) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        try:
            return self.raw.executemany(sql, rows).rowcount
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from None
        except sqlite3.OperationalError as exc:
            raise _sqlite_busy(exc) from None

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def begin(self, *, write: bool) -> None:
        self.execute("BEGIN IMMEDIATE" if write else "BEGIN")  # busy past the timeout: StoreBusy

    def close(self) -> None:
        self.raw.close()


def _sqlite_busy(exc: sqlite3.OperationalError) -> Exception:
    """:class:`StoreBusy` when other writers kept the file locked past the busy timeout;
    any other error as it is (a programming error)."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreBusy(
            _("the store stayed locked by other writers for {seconds} s").format(
                seconds=BUSY_TIMEOUT_MS // 1000
            )
        ).with_hint(_("try again; if it lasts, look for a process that keeps the store busy"))
    return exc


def open_sqlite(target: StoreTarget) -> SqliteConnection:
    """Open (and create) the SQLite file of ``target`` with sscard's settings; no tables.

    The parent directory is created (mode 0700). :class:`InvalidInput` when the
    file cannot be opened, is not an SQLite database or cannot use WAL.
    """
    path = target.path
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        raw = sqlite3.connect(
            path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
        raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = raw.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        raw.execute("PRAGMA synchronous = FULL")
        raw.execute("PRAGMA foreign_keys = ON")
    except (sqlite3.DatabaseError, OSError) as exc:
        raise InvalidInput(_("cannot open the local store"), [(str(path), _reason(exc))]) from None
    if str(mode).lower() != "wal":
        raw.close()
        raise InvalidInput(
            _("cannot open the local store"),
            [(str(path), _("journal mode {mode}, WAL needed").format(mode=mode))],
        )
    return SqliteConnection(raw, target)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "not a database" in text:
        return _("not an sscard store (not an SQLite database)")
    return text or type(exc).__name__


@lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (outside quoted text); ``%`` doubled."""
    out: list[str] = []
    quote = ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""
            out.append("%%" if ch == "%" else ch)
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


class PostgresConnection(Connection):
    """A PostgreSQL store (psycopg 3, autocommit; transactions are explicit)."""

    engine = POSTGRESQL

    def __init__(self, raw: Any, target: StoreTarget) -> None:
        import psycopg

        super().__init__(target)
        self.raw = raw
        self._psycopg = psycopg
        self._idle = psycopg.pq.TransactionStatus.IDLE

    def _run(self, sql: str, params: Sequence[Any], many: bool = False) -> Any:
        psycopg = self._psycopg
        query = to_pyformat(sql) if params or many else sql
        try:
            if many:
                with self.raw.cursor() as cur:
                    cur.executemany(query, params)
                    return cur.rowcount
            return self.raw.execute(query, params or None)
        except psycopg.errors.IntegrityError as exc:
            raise IntegrityError(_first_line(exc)) from None
        except psycopg.errors.LockNotAvailable:
            raise StoreBusy(
                _("another station held the store's lock for over {seconds} s").format(
                    seconds=LOCK_TIMEOUT_S
                )
            ).with_hint(
                _("try again; if it lasts, look for a station that keeps the store busy")
            ) from None
        except psycopg.DataError as exc:  # a value the engine cannot hold (a NUL in text, …)
            raise InvalidInput(
                _("the store cannot hold a value given"), [("value", _first_line(exc))]
            ) from None
        except psycopg.Error as exc:
            if self.lost:  # the server went away, or ended the session (idle in transaction)
                raise StoreUnavailable(
                    _("the store's server went away: {reason}").format(reason=_first_line(exc))
                ) from None
            if isinstance(exc, psycopg.OperationalError):
                # the session lives on, the statement did not: cancelled, a lock or statement
                # timeout an administrator set, … (a transaction it was in must be rolled back)
                raise OperationFailed(
                    _("the store did not complete the request: {reason}").format(
                        reason=_first_line(exc)
                    )
                ) from None
            raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cursor: Cursor = self._run(sql, params)
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        return int(self._run(sql, list(rows), many=True))

    @property
    def in_transaction(self) -> bool:
        return bool(self.raw.info.transaction_status != self._idle)

    def begin(self, *, write: bool) -> None:
        if not write:
            self.execute("BEGIN")
            return
        try:  # one round trip: the transaction and its write lock
            self.execute(_BEGIN_WRITE)
        except BaseException:
            self.rollback()  # the caller gets no transaction: leave none open
            raise

    @property
    def lost(self) -> bool:
        return bool(self.raw.closed or self.raw.broken)

    def rollback(self) -> None:
        """Roll back; nothing to do on a lost session (the server rolled it back), so
        the error that told of the loss is the one the caller sees."""
        if not self.lost:
            self.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()


def _signed(key: int) -> int:
    """A 64-bit lock key as PostgreSQL's signed ``bigint``."""
    return key - (1 << 64) if key >= 1 << 63 else key


_BEGIN_WRITE = f"BEGIN; SELECT pg_advisory_xact_lock({_signed(WRITE_LOCK_KEY)})"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def open_postgres(target: StoreTarget) -> PostgresConnection:
    """Connect to the PostgreSQL store of ``target``; :class:`StoreUnavailable` when it
    cannot be reached, with libpq's reason (never the password)."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        raise InvalidInput(
            _("cannot open the store"), [("store", _("psycopg (the PostgreSQL driver) is missing"))]
        ) from None
    try:
        raw = psycopg.connect(target.location, autocommit=True, **_session_defaults(target))
    except psycopg.ProgrammingError as exc:
        raise InvalidInput(
            _("cannot open the store"), [(target.display, _first_line(exc))]
        ) from None
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(
            _("cannot reach the store {store}: {reason}").format(
                store=target.display, reason=_scrub(_first_line(exc), target)
            )
        ) from None
    return PostgresConnection(raw, target)


def _session_defaults(target: StoreTarget) -> dict[str, Any]:
    """Connection settings sscard wants unless the URL sets them itself (libpq parameters).

    * TCP keepalives: a station or a server that vanished from the network (as
      opposed to one that closed its connections) is noticed in about a minute;
    * ``lock_timeout``: waiting longer than :data:`LOCK_TIMEOUT_S` for the write lock
      or a row lock is refused (:class:`StoreBusy`) instead of hanging a station;
    * ``idle_in_transaction_session_timeout``: a session that sits inside a
      transaction for :data:`IDLE_IN_TRANSACTION_S` (a station frozen with the write
      lock held) is ended by the server, so the others go on.

    The server settings go in the startup packet (``options``): no extra round trip.
    """
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(target.location)
    wanted: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "application_name": "sscard",
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    out = {k: v for k, v in wanted.items() if k not in given}
    ours = (
        f"-c lock_timeout={LOCK_TIMEOUT_S}s "
        f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_S}s"
    )
    out["options"] = f"{ours} {given['options']}" if given.get("options") else ours
    return out


def _scrub(text: str, target: StoreTarget) -> str:
    """libpq's message without anything of the URL that could hold a password."""
    if target.has_password and target.location in text:
        text = text.replace(target.location, target.display)
    return text
