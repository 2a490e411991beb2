"""Operator checks for CLI commands (regulation art. 15; docs/operators.md).

Every command that changes a card, a key store or a local store is decorated::

    @keys.command()
    ...
    @pass_state
    @require_operator("keys.generate")
    def generate(state, ...): ...

The decorator adds ``--operator ID``. Before the command body runs it resolves
the operator (``--operator`` with a password prompt, else the session token
from ``sscard operator login``) and checks the role; a refusal is audited and
raises :class:`~sscard.errors.NotAuthorized` / ``NotLoggedIn`` / ``LoginFailed``
(exit code 6). After the body it writes one audit record, ``ok`` or ``failed``
with the error class. Checks and records go to the local store of the
invocation (``sscard --store``, :attr:`~sscard.cli.context.CliState.store`).
A command that writes its own audit record (e.g. inside its issuance
transaction) passes ``record=False`` and gets the operator from
:func:`operator`; a command adds card details to its record with :func:`note`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import click

from sscard import audit
from sscard.auth import OperatorStore, require
from sscard.auth.store import Operator
from sscard.cli.context import CliState, state
from sscard.cli.secrets import hidden_prompt
from sscard.db import Connection
from sscard.db.errors import StoreUnavailable
from sscard.errors import LoginFailed
from sscard.i18n import N_, _

F = TypeVar("F", bound=Callable[..., Any])
_META_OPERATOR = "sscard.operator"
_META_NOTES = "sscard.audit.notes"
_META_ACTION = "sscard.action"


def authorize(
    action: str,
    operator_id: str | None = None,
    *,
    password: str | None = None,
    conn: Connection | None = None,
) -> Operator:
    """The operator allowed to do ``action``: ``operator_id`` (password prompted) or the session.

    The operators and the audit trail are those of the local store of this
    invocation (``sscard --store``), or of ``conn`` (left open) when given: a
    connection that has not checked every schema (``sscard store upgrade``).
    Refusals are audited and raise (exit code 6).
    """
    store = OperatorStore(conn if conn is not None else state().open_store())
    try:
        if operator_id is None:
            return require(action, store=store)
        if password is None:
            password = hidden_prompt(
                _("Password for operator {operator}").format(operator=operator_id),
                what=N_("password"),
                instead=_(
                    "log in first ('sscard operator login ID --password-fd N'), "
                    "then leave out --operator"
                ),
            )
        try:
            op = store.authenticate(operator_id, password)
        except LoginFailed as exc:
            audit.record(
                action, operator=store.find(operator_id), outcome="refused", error=exc,
                conn=store.conn,
            )  # fmt: skip
            raise
        return require(action, op, store=store)
    finally:
        if conn is None:
            store.close()


def note(
    *, card_serial: bytes | str | None = None, card_number: str | None = None, **detail: object
) -> None:
    """Add card identity and non-secret details to the running command's audit record."""
    notes = click.get_current_context().meta.setdefault(_META_NOTES, {})
    if card_serial is not None:
        notes["card_serial"] = card_serial
    if card_number is not None:
        notes["card_number"] = card_number
    notes.setdefault("detail", {}).update(detail)


def operator() -> Operator:
    """The operator the running command was authorized for."""
    op = click.get_current_context().meta.get(_META_OPERATOR)
    if not isinstance(op, Operator):
        raise RuntimeError("no operator: the command is not decorated with require_operator")
    return op


@contextmanager
def audited(action: str, op: Operator) -> Iterator[None]:
    """Record ``action`` by ``op`` as ``ok``, or ``failed`` with the error class, when it ends."""
    ctx = click.get_current_context()
    try:
        yield
    except click.exceptions.Exit as exc:
        _record(ctx, action, op, "ok" if exc.exit_code == 0 else "failed", None)
        raise
    except BaseException as exc:
        try:
            _record(ctx, action, op, "failed", exc)
        except StoreUnavailable:
            if not isinstance(exc, StoreUnavailable):
                raise
            # the store went away under the command: no record of it can be written,
            # and the error that says so is the one to show
        raise
    _record(ctx, action, op, "ok", None)


def audit_failure(error: BaseException) -> None:
    """Record the running command's action as ``failed`` with ``error``: for commands that
    record their own outcome (``record=False``) and fail before the card action starts."""
    ctx = click.get_current_context()
    action = ctx.meta.get(_META_ACTION)
    if isinstance(action, str):
        _record(ctx, action, operator(), "failed", error)


def _record(
    ctx: click.Context, action: str, op: Operator, outcome: str, error: BaseException | None
) -> None:
    notes = ctx.meta.get(_META_NOTES, {})
    conn = (ctx.find_object(CliState) or CliState()).open_store()
    try:
        audit.record(
            action,
            operator=op,
            outcome=outcome,
            error=error,
            card_serial=notes.get("card_serial"),
            card_number=notes.get("card_number"),
            detail=notes.get("detail") or None,
            conn=conn,
        )
    finally:
        conn.close()


def operator_option(f: F, name: str = "--operator") -> F:
    """The ``--operator ID`` option (the value reaches the callback as ``operator_id``)."""
    return click.option(
        name,
        "operator_id",
        metavar="ID",
        help="Act as operator ID (password prompted) instead of the logged-in operator "
        "('sscard operator login').",
    )(f)


_META_SUB_ARGS = "sscard.cli.auth.sub_args"


class GuardedGroup(click.Group):
    """A group whose callback checks the operator: it lets a sub-command's ``--help`` through.

    Click hands the group callback no arguments of the sub-command; this keeps them
    in ``ctx.meta`` so :func:`require_operator` can see that only help was asked for.
    """

    def invoke(self, ctx: click.Context) -> Any:
        ctx.meta[_META_SUB_ARGS] = [*getattr(ctx, "_protected_args", []), *ctx.args]
        return super().invoke(ctx)


def _help_asked(ctx: click.Context) -> bool:
    """Whether the sub-command about to run was asked for its help (``-h``/``--help``)."""
    remaining = ctx.meta.get(_META_SUB_ARGS, [])
    return any(arg in ctx.help_option_names for arg in remaining)


def require_operator(
    action: str, *, record: bool = True, option: str = "--operator"
) -> Callable[[F], F]:
    """Decorator: authorize ``action`` before the command runs, audit its outcome after.

    ``option`` renames the operator option where ``--operator`` means something
    else (``audit show --operator`` filters by operator; it uses ``--as``).
    """

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            operator_id = kwargs.pop("operator_id", None)
            ctx = click.get_current_context()
            if ctx.invoked_subcommand is not None and _help_asked(ctx):
                # `sscard issue batch --help`: the group only passes its options on;
                # reading the sub-command's help needs no operator.
                return f(*args, **kwargs)
            op = authorize(action, operator_id)
            ctx.meta[_META_OPERATOR] = op
            ctx.meta[_META_ACTION] = action
            if not record:
                return f(*args, **kwargs)
            with audited(action, op):
                return f(*args, **kwargs)

        return operator_option(cast(F, wrapper), option)

    return decorate
