"""Operators, roles, sessions and the permission check (regulation art. 15; docs/operators.md).

::

    from sscard.auth import OperatorStore, login, require
    store = OperatorStore.open()                  # sscard.db in the data directory
    login(store, "zhang.wei", password)           # token file, audited
    op = require("pin.reset", store=store)        # the logged-in operator, or NotAuthorized
"""

from sscard.auth.guard import require
from sscard.auth.roles import PERMISSIONS, ROLES, actions_for, allowed
from sscard.auth.session import (
    Session,
    SessionToken,
    current_operator,
    end_session,
    login,
    logout,
    read_token,
    start_session,
    token_path,
)
from sscard.auth.store import Operator, OperatorStore

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "Operator",
    "OperatorStore",
    "Session",
    "SessionToken",
    "actions_for",
    "allowed",
    "current_operator",
    "end_session",
    "login",
    "logout",
    "read_token",
    "require",
    "start_session",
    "token_path",
]
