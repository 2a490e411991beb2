"""Operator sessions: login, logout and the current operator (regulation art. 15).

``login`` checks the password and writes a session token to a file that only
the user can read (mode 0600): ``$SSCARD_OPERATOR_TOKEN``, else
``$XDG_RUNTIME_DIR/sscard/operator.token``, else ``operator.token`` in the
data directory. Scripts and batch runs then work without prompts until the
session expires (8 h by default, 12 h at most) or ``logout`` ends it. The file
holds only a random token; the store keeps its SHA-256, the operator and the
expiry, so a token is worthless against another installation or after logout.
Logins (ok and refused) and logouts are audited. A service that hands the
token to its caller instead of a file (the agent, docs/agent.md) uses
:func:`start_session` and :func:`end_session`, the same checks and records.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from sscard import audit
from sscard.auth.store import DEFAULT_TTL, Operator, OperatorStore
from sscard.errors import LoginFailed, NotLoggedIn
from sscard.fileio import is_private, write_secret
from sscard.i18n import _
from sscard.paths import data_dir

ENV_TOKEN = "SSCARD_OPERATOR_TOKEN"
TOKEN_NAME = "operator.token"


def token_path() -> Path:
    """Where this user's session token lives (see the module docstring)."""
    explicit = os.environ.get(ENV_TOKEN)
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "sscard" / TOKEN_NAME
    return data_dir() / TOKEN_NAME


class Session(NamedTuple):
    """A logged-in operator and when the session ends."""

    operator: Operator
    expires: datetime
    path: Path


def read_token(path: Path | None = None) -> str:
    """The token in the token file; :class:`NotLoggedIn` when absent or readable by others."""
    path = path or token_path()
    try:
        st = path.stat()
        text = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, NotADirectoryError):
        raise NotLoggedIn(_("no operator is logged in")) from None
    except (OSError, UnicodeDecodeError):
        raise NotLoggedIn(
            _("cannot read the operator token {path}; log in again").format(path=path)
        ) from None
    if not is_private(st):
        raise NotLoggedIn(
            _(
                "the operator token {path} is readable by others or not yours; it is refused: "
                "log in again"
            ).format(path=path)
        )
    return text


class SessionToken(NamedTuple):
    """A session started for a caller that keeps the token itself (the agent hands it to
    the business system): the operator, the expiry and the token (never in ``repr``)."""

    operator: Operator
    expires: datetime
    token: str

    def __repr__(self) -> str:  # the token is a secret: never in a repr
        return f"SessionToken(operator={self.operator!r}, expires={self.expires!r})"


def start_session(
    store: OperatorStore, operator_id: str, password: str, *, ttl: timedelta = DEFAULT_TTL
) -> SessionToken:
    """Authenticate and start a session; audited either way (``operator.login``).

    The shared part of :func:`login` (which writes the token to a file) and the
    agent's operator login (docs/agent.md), which answers the token to its caller.
    """
    try:
        op = store.authenticate(operator_id, password)
    except LoginFailed as exc:
        known = store.find(operator_id)  # never record a mistyped id: it may be a password
        audit.record(
            "operator.login", operator=known, outcome="refused", error=exc, conn=store.conn
        )
        raise
    token, expires = store.start_session(op, ttl)
    audit.record(
        "operator.login",
        operator=op,
        outcome="ok",
        detail={"expires": expires.isoformat(timespec="seconds")},
        conn=store.conn,
    )
    return SessionToken(op, expires, token)


def end_session(store: OperatorStore, token: str) -> Operator | None:
    """End the session of ``token`` (audited ``operator.logout``); its operator, if it was live."""
    try:
        op: Operator | None = store.session_operator(token)
    except NotLoggedIn:
        op = None
    store.end_session(token)
    if op is not None:
        audit.record("operator.logout", operator=op, outcome="ok", conn=store.conn)
    return op


def login(
    store: OperatorStore,
    operator_id: str,
    password: str,
    *,
    ttl: timedelta = DEFAULT_TTL,
    path: Path | None = None,
) -> Session:
    """Authenticate, start a session and write the token file (0600); audited either way."""
    target = path or token_path()
    started = start_session(store, operator_id, password, ttl=ttl)
    write_secret(target, started.token)
    return Session(started.operator, started.expires, target)


def current_operator(store: OperatorStore, *, path: Path | None = None) -> Operator:
    """The operator of this user's live session, else :class:`NotLoggedIn`."""
    return store.session_operator(read_token(path))


def logout(store: OperatorStore, *, path: Path | None = None) -> Operator | None:
    """End the session and delete the token file; the operator who was logged in, if any."""
    target = path or token_path()
    try:
        token = read_token(target)
    except NotLoggedIn:
        target.unlink(missing_ok=True)
        return None
    op = end_session(store, token)
    target.unlink(missing_ok=True)
    return op
