"""The permission check for library callers and the CLI (regulation art. 15).

Service-point software calls :func:`require` before an action::

    from sscard.auth import OperatorStore, require
    store = OperatorStore.open(path)                  # the local store the action is audited in
    op = require("pin.reset", store=store)            # the logged-in operator, or raises
    op = require("pin.reset", operator, store=store)  # an operator the caller authenticated

A refusal raises :class:`~sscard.errors.NotAuthorized` (or
:class:`~sscard.errors.NotLoggedIn`), both exit code 6 in the CLI, and is
written to the audit trail first.
"""

from __future__ import annotations

from sscard import audit
from sscard.auth.session import current_operator
from sscard.auth.store import Operator, OperatorStore
from sscard.errors import NotAuthorized, NotLoggedIn
from sscard.i18n import _


def require(
    role_or_action: str,
    operator: Operator | None = None,
    *,
    store: OperatorStore,
    card_serial: bytes | str | None = None,
    card_number: str | None = None,
) -> Operator:
    """The operator, if their role allows ``role_or_action``; else audit the refusal and raise.

    ``store`` holds the operators and the audit trail the refusal goes to.
    ``operator`` defaults to the logged-in operator (session token). Given an
    ``operator``, its current state (role, disabled) is re-read from the
    store, so a stale object cannot outlive a role change or a disable. An
    unknown action is a :class:`ValueError` (a programming error).

    Call it before opening your own transaction: the refusal is committed on
    the store's connection at once, so a rollback of yours cannot erase it.
    """
    Operator("x", "x", "issuer").can(role_or_action)  # ValueError for an unknown action

    def refused(exc: Exception, who: Operator | None) -> Exception:
        audit.record(
            role_or_action,
            operator=who,
            outcome="refused",
            error=exc,
            card_serial=card_serial,
            card_number=card_number,
            conn=store.conn,
        )
        return exc

    try:
        if operator is None:
            op = current_operator(store)
        else:
            found = store.find(operator.id)
            if found is None or found.disabled:
                raise NotLoggedIn(
                    _("operator {operator} is unknown or disabled").format(
                        operator=repr(operator.id)
                    )
                )
            op = found
    except NotLoggedIn as exc:
        refused(exc, None)
        raise
    if not op.can(role_or_action):
        raise refused(NotAuthorized(op.id, op.role, role_or_action), op)
    return op
