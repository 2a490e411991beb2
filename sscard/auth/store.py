"""The operator store: operators, roles, credentials, sessions (regulation art. 15).

Tables in the local store (:mod:`sscard.db`)::

    operators(id, name, role, credential, disabled, created, changed)
    operator_sessions(token_hash, operator_id, created, expires)

A session token is 32 random bytes; only its SHA-256 is stored, so a copy of
the database does not log anyone in. Disabling an operator or changing their
password ends their sessions.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from sscard import db
from sscard.auth.passwords import DEFAULT_COST, dummy_verify, hash_password, verify_password
from sscard.auth.roles import ISSUER, ROLES, allowed
from sscard.clock import iso, now_utc
from sscard.db import Connection
from sscard.errors import BootstrapRefused, InvalidInput, LoginFailed, NotLoggedIn
from sscard.i18n import N_, _

_TABLES = (
    """CREATE TABLE IF NOT EXISTS operators (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('issuer', 'service', 'kiosk', 'auditor')),
    credential  TEXT NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0,
    created     TEXT NOT NULL,
    changed     TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS operator_sessions (
    token_hash  TEXT PRIMARY KEY,
    operator_id TEXT NOT NULL REFERENCES operators(id) ON DELETE CASCADE,
    created     TEXT NOT NULL,
    expires     TEXT NOT NULL
)""",
)
SCHEMA = db.register_schema(
    "operators", [db.Migration(1, both=_TABLES, note=N_("operators and their sessions"))]
)

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
MAX_TTL = timedelta(hours=12)
DEFAULT_TTL = timedelta(hours=8)


class Operator(NamedTuple):
    """A person (or a kiosk) who operates sscard: id, display name, role."""

    id: str
    name: str
    role: str
    disabled: bool = False

    def can(self, role_or_action: str) -> bool:
        """Whether this operator may do ``role_or_action`` (see :mod:`sscard.auth.roles`)."""
        return not self.disabled and allowed(self.role, role_or_action)

    def info(self) -> dict[str, object]:
        """For listings and JSON (there is nothing secret in an operator)."""
        return {"id": self.id, "name": self.name, "role": self.role, "disabled": self.disabled}


def check_id(operator_id: str) -> str:
    """Operator ids: 2-32 of ``a-z 0-9 . _ -``, starting with a letter or digit."""
    if not _ID.match(operator_id):
        raise InvalidInput(
            _("invalid operator id"),
            [
                (
                    "id",
                    _("2-32 characters a-z, 0-9, '.', '_', '-', starting with a letter or digit"),
                )
            ],
        )
    return operator_id


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class OperatorStore:
    """Operators and sessions in the store (SQLite, or a centre's PostgreSQL)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        db.ensure_schema(conn, SCHEMA.name)

    @classmethod
    def open(cls, path: Path | str | None = None) -> OperatorStore:
        """The operator store in the local store at ``path`` (:func:`sscard.db.open_store`)."""
        return cls(db.open_store(path))

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    # --- operators -------------------------------------------------------------

    def is_empty(self) -> bool:
        """Whether no operator exists yet (a new installation)."""
        return self.conn.execute("SELECT 1 FROM operators LIMIT 1").fetchone() is None

    def add(
        self,
        operator_id: str,
        name: str,
        role: str,
        password: str,
        *,
        bootstrap: bool = False,
        cost: int = DEFAULT_COST,
    ) -> Operator:
        """Add an operator. With ``bootstrap`` only while the store is empty, and as an issuer.

        The caller checks the permission (``operator.add``) for a normal add.
        """
        check_id(operator_id)
        if role not in ROLES:
            raise InvalidInput(
                _("unknown role"),
                [("role", _("one of {roles}").format(roles=", ".join(ROLES)))],
            )
        if not name.strip():
            raise InvalidInput(_("operator needs a name"), [("name", _("the person's name"))])
        if any(unicodedata.category(c) == "Cc" for c in name):
            raise InvalidInput(
                _("invalid operator name"),
                [("name", _("no control characters (tabs, line breaks, NUL)"))],
            )
        if bootstrap and role != ISSUER:
            raise InvalidInput(
                _("bootstrap operator must be an issuer"),
                [("role", _("the first operator is an issuer"))],
            )
        credential = hash_password(password, cost=cost)
        stamp = iso(now_utc())
        with db.transaction(self.conn):
            if bootstrap and not self.is_empty():
                raise BootstrapRefused(
                    _(
                        "this installation already has operators; bootstrapping only creates the "
                        "first one"
                    )
                ).with_hint(_("log in as an issuer and add the operator"))
            try:
                self.conn.execute(
                    "INSERT INTO operators (id, name, role, credential, disabled, created, changed)"
                    " VALUES (?, ?, ?, ?, 0, ?, ?)",
                    (operator_id, name.strip(), role, credential, stamp, stamp),
                )
            except db.IntegrityError:
                raise InvalidInput(
                    _("operator exists"),
                    [
                        (
                            "id",
                            _("{operator} is already an operator").format(
                                operator=repr(operator_id)
                            ),
                        )
                    ],
                ) from None
        return Operator(operator_id, name.strip(), role)

    def find(self, operator_id: str) -> Operator | None:
        """The operator with this id, or None (an id no operator can have is not looked up:
        a PostgreSQL store could not even compare it, e.g. one with a NUL)."""
        if not _ID.match(operator_id):
            return None
        row = self.conn.execute(
            "SELECT id, name, role, disabled FROM operators WHERE id = ?", (operator_id,)
        ).fetchone()
        return None if row is None else Operator(row[0], row[1], row[2], bool(row[3]))

    def get(self, operator_id: str) -> Operator:
        """The operator with this id; :class:`InvalidInput` when there is none."""
        op = self.find(operator_id)
        if op is None:
            raise InvalidInput(
                _("unknown operator"),
                [("id", _("no operator {operator}").format(operator=repr(operator_id)))],
            ).with_hint(_("list the operators to see who exists"))
        return op

    def list(self) -> list[Operator]:
        """Every operator, by id."""
        rows = self.conn.execute("SELECT id, name, role, disabled FROM operators ORDER BY id")
        return [Operator(r[0], r[1], r[2], bool(r[3])) for r in rows]

    def disable(self, operator_id: str) -> Operator:
        """Disable an operator and end their sessions (the record stays for the audit trail)."""
        self.get(operator_id)
        with db.transaction(self.conn):
            self.conn.execute(
                "UPDATE operators SET disabled = 1, changed = ? WHERE id = ?",
                (iso(now_utc()), operator_id),
            )
            self.conn.execute("DELETE FROM operator_sessions WHERE operator_id = ?", (operator_id,))
        return self.get(operator_id)

    def set_password(self, operator_id: str, password: str, *, cost: int = DEFAULT_COST) -> None:
        """Set a new password and end the operator's sessions."""
        self.get(operator_id)
        credential = hash_password(password, cost=cost)
        with db.transaction(self.conn):
            self.conn.execute(
                "UPDATE operators SET credential = ?, changed = ? WHERE id = ?",
                (credential, iso(now_utc()), operator_id),
            )
            self.conn.execute("DELETE FROM operator_sessions WHERE operator_id = ?", (operator_id,))

    def authenticate(self, operator_id: str, password: str) -> Operator:
        """The operator if the password is right and they are enabled, else :class:`LoginFailed`."""
        row = (
            self.conn.execute(
                "SELECT credential FROM operators WHERE id = ?", (operator_id,)
            ).fetchone()
            if _ID.match(operator_id)
            else None
        )
        if row is None:
            dummy_verify(password)
        op = self.find(operator_id)
        if row is None or op is None or not verify_password(password, row[0]) or op.disabled:
            raise LoginFailed(
                _(
                    "login refused for operator {operator}: unknown operator, wrong password "
                    "or disabled operator"
                ).format(operator=repr(operator_id))
            )
        return op

    # --- sessions ----------------------------------------------------------------

    def start_session(
        self, operator: Operator, ttl: timedelta = DEFAULT_TTL
    ) -> tuple[str, datetime]:
        """A new session token for ``operator`` and its expiry (``ttl`` at most 12 h)."""
        if not timedelta(0) < ttl <= MAX_TTL:
            raise InvalidInput(
                _("bad session lifetime"), [("ttl", _("between 1 minute and 12 hours"))]
            )
        import secrets  # for a login only: a session check needs no randomness

        token = secrets.token_hex(32)
        start = now_utc()
        expires = start + ttl
        with db.transaction(self.conn):
            self.conn.execute("DELETE FROM operator_sessions WHERE expires < ?", (iso(start),))
            self.conn.execute(
                "INSERT INTO operator_sessions (token_hash, operator_id, created, expires)"
                " VALUES (?, ?, ?, ?)",
                (_token_hash(token), operator.id, iso(start), iso(expires)),
            )
        return token, expires

    def session_operator(self, token: str) -> Operator:
        """The operator of a live session, else :class:`NotLoggedIn`."""
        row = self.conn.execute(
            "SELECT operator_id, expires FROM operator_sessions WHERE token_hash = ?",
            (_token_hash(token),),
        ).fetchone()
        if row is None:
            raise NotLoggedIn(
                _("the operator session is not valid (logged out, or another installation's)")
            ).with_hint(_("log in again"))
        if row[1] < iso(now_utc()):
            raise NotLoggedIn(_("the operator session has expired; log in again"))
        op = self.find(row[0])
        if op is None or op.disabled:
            raise NotLoggedIn(_("the operator of this session is disabled"))
        return op

    def end_session(self, token: str) -> None:
        """End a session (logout); nothing happens for an unknown token."""
        with db.transaction(self.conn):
            self.conn.execute(
                "DELETE FROM operator_sessions WHERE token_hash = ?", (_token_hash(token),)
            )
