"""``sscard operator``: operators, roles, login and logout (regulation art. 15; docs/operators.md).

Passwords come from a hidden prompt or ``--password-fd N``, never from argv
or the environment; nothing prints or logs one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import click

from sscard import audit
from sscard.auth import OperatorStore, login, logout, token_path
from sscard.auth.passwords import DEFAULT_COST
from sscard.auth.roles import ROLE_DESCRIPTIONS, ROLES
from sscard.auth.session import current_operator
from sscard.cli.auth import audited, authorize, note, operator_option, require_operator
from sscard.cli.context import CliState, pass_state
from sscard.cli.options import kdf_cost_option, password_fd_option
from sscard.cli.secrets import read_password
from sscard.errors import BootstrapRefused, InvalidInput, LoginFailed, NotLoggedIn
from sscard.i18n import N_, _, columns, ljust

F = TypeVar("F", bound=Callable[..., Any])

_OWN_PASSWORD_NEEDS_A_TERMINAL = N_(
    "type your current password at a terminal, or have an issuer set a new one "
    "('sscard operator passwd ID --password-fd N')"
)


def _ttl(value: str) -> timedelta:
    m = re.fullmatch(r"(\d+)([mh])", value.strip())
    if not m:
        raise InvalidInput(_("bad --ttl"), [("--ttl", _("minutes or hours, e.g. 30m or 8h"))])
    n = int(m.group(1))
    return timedelta(minutes=n) if m.group(2) == "m" else timedelta(hours=n)


@click.group()
def operator() -> None:
    """Operators and roles: add, list, disable, passwd, login, logout, whoami.

    \b
    Roles:
      issuer   issue cards, key ceremony, manage operators, restore backups
      service  read cards, PIN reset/unblock, block/unblock, sync
      kiosk    the cardholder's PIN change only
      auditor  read and verify the audit trail

    \b
    Examples:
      sscard operator add --bootstrap admin --name "Li Na"      first operator (issuer)
      sscard operator login admin
      sscard operator add zhang.wei --name "Zhang Wei" --role service
      sscard operator list
      sscard operator logout
    """


@operator.command()
@click.argument("new_id", metavar="ID")
@click.option("--name", required=True, help="The person's (or kiosk's) name.")
@click.option("--role", type=click.Choice(ROLES), default="issuer", show_default=True)
@click.option(
    "--bootstrap",
    is_flag=True,
    help="Create the first operator of a new installation (an issuer) without logging in; "
    "refused once any operator exists.",
)
@kdf_cost_option(N_("the password hash"), DEFAULT_COST)
@password_fd_option
@operator_option
@pass_state
def add(
    state: CliState,
    new_id: str,
    name: str,
    role: str,
    bootstrap: bool,
    kdf_cost: int,
    password_fd: int | None,
    operator_id: str | None,
) -> None:
    """Add an operator ID with a role; their password is typed twice (hidden).

    \b
    Examples:
      sscard operator add --bootstrap admin --name "Li Na"
      sscard operator add zhang.wei --name "Zhang Wei" --role service
      sscard operator add kiosk-07 --name "Kiosk 7, Xujiahui" --role kiosk --password-fd 3
    """
    store = OperatorStore(state.open_store())
    try:
        if bootstrap:
            if not store.is_empty():
                exc = BootstrapRefused(
                    _(
                        "this installation already has operators; --bootstrap only creates the "
                        "first one. Log in as an issuer and run 'sscard operator add' without it"
                    )
                )
                audit.record(
                    "operator.bootstrap", operator=None, outcome="refused", error=exc,
                    conn=store.conn,
                )  # fmt: skip
                raise exc
            pw = read_password(
                password_fd, _("New password for {id}").format(id=new_id), confirm=True
            )
            op = store.add(new_id, name, role, pw, bootstrap=True, cost=kdf_cost)
            audit.record(
                "operator.bootstrap", operator=op, outcome="ok", detail={"added": op.id},
                conn=store.conn,
            )  # fmt: skip
        else:
            actor = authorize("operator.add", operator_id)
            with audited("operator.add", actor):
                note(added=new_id, added_role=role)
                pw = read_password(
                    password_fd, _("New password for {id}").format(id=new_id), confirm=True
                )
                op = store.add(new_id, name, role, pw, cost=kdf_cost)
    finally:
        store.close()
    state.emit(
        op.info(),
        _("Added operator {id} ({name}), role {role}.").format(
            id=op.id, name=op.name, role=op.role
        ),
    )


@operator.command(name="list")
@pass_state
@require_operator("operator.list")
def list_(state: CliState) -> None:
    """List operators: id, role, name, disabled (never a credential).

    \b
    Examples:
      sscard operator list
      sscard --json operator list
    """
    store = OperatorStore(state.open_store())
    try:
        ops = store.list()
    finally:
        store.close()
    head = [_("ID"), _("ROLE"), _("STATE")]
    states = [_("disabled") if o.disabled else _("active") for o in ops]
    w = [max(n, columns(h)) for n, h in zip((20, 8, 8), head, strict=True)]
    w[2] = max([w[2], *map(columns, states)])
    lines = [" ".join(ljust(h, n) for h, n in zip(head, w, strict=True)) + " " + _("NAME")]
    lines += [
        f"{o.id:<{w[0]}} {o.role:<{w[1]}} {ljust(st, w[2])} {o.name}"
        for o, st in zip(ops, states, strict=True)
    ]
    state.emit([o.info() for o in ops], "\n".join(lines))


@operator.command()
@click.argument("target", metavar="ID")
@pass_state
@require_operator("operator.disable")
def disable(state: CliState, target: str) -> None:
    """Disable an operator and end their sessions (their audit records stay).

    \b
    Examples:
      sscard operator disable zhang.wei
    """
    note(disabled=target)
    store = OperatorStore(state.open_store())
    try:
        op = store.disable(target)
    finally:
        store.close()
    state.emit(op.info(), _("Disabled operator {id}.").format(id=op.id))


@operator.command()
@click.argument("target", metavar="ID", required=False)
@kdf_cost_option(N_("the new password hash"), DEFAULT_COST)
@password_fd_option
@operator_option
@pass_state
def passwd(
    state: CliState,
    target: str | None,
    kdf_cost: int,
    password_fd: int | None,
    operator_id: str | None,
) -> None:
    """Change your own password, or (issuer) set another operator's.

    Your own: the current password, then the new one twice. Another
    operator's: you must be an issuer (logged in or --operator); their
    sessions end.

    \b
    Examples:
      sscard operator passwd                  your own (the logged-in operator)
      sscard operator passwd zhang.wei        an issuer resets someone's password
    """
    store = OperatorStore(state.open_store())
    try:
        me = None
        if operator_id is None:
            try:
                me = current_operator(store)
            except NotLoggedIn:
                me = None
        own = target is None or (operator_id is None and (me is None or me.id == target))
        if own:
            who = target or (me.id if me else None) or click.prompt(_("Operator id"), err=True)
            current = read_password(
                None,
                _("Current password for {id}").format(id=who),
                instead=_(_OWN_PASSWORD_NEEDS_A_TERMINAL),
            )
            try:
                op = store.authenticate(who, current)
            except LoginFailed as exc:  # audited like a failed login; exit 6
                known = store.find(who)  # never record a mistyped id: it may be a password
                audit.record(
                    "operator.passwd.own", operator=known, outcome="refused", error=exc,
                    conn=store.conn,
                )  # fmt: skip
                raise
            with audited("operator.passwd.own", op):
                new_pw = read_password(password_fd, _("New password"), confirm=True)
                store.set_password(op.id, new_pw, cost=kdf_cost)
        else:
            assert target is not None
            actor = authorize("operator.passwd", operator_id)
            with audited("operator.passwd", actor):
                note(target=target)
                pw = read_password(
                    password_fd, _("New password for {id}").format(id=target), confirm=True
                )
                store.set_password(target, pw, cost=kdf_cost)
            op = store.get(target)
    finally:
        store.close()
    state.emit(
        op.info(),
        _("Password changed for operator {id}; their sessions ended.").format(id=op.id),
    )


@operator.command(name="login")
@click.argument("operator_id", metavar="ID")
@click.option(
    "--ttl",
    default="8h",
    show_default=True,
    help="Session lifetime, e.g. 30m or 8h (at most 12h).",
)
@password_fd_option
@pass_state
def login_(state: CliState, operator_id: str, ttl: str, password_fd: int | None) -> None:
    """Log in: write a short-lived session token (mode 0600) for later commands.

    The token goes to $SSCARD_OPERATOR_TOKEN, else $XDG_RUNTIME_DIR/sscard/,
    else the data directory. Commands then run as this operator until the
    session expires or 'sscard operator logout'.

    \b
    Examples:
      sscard operator login zhang.wei
      sscard operator login batch-01 --ttl 2h --password-fd 3 3<secret
    """
    lifetime = _ttl(ttl)
    store = OperatorStore(state.open_store())
    try:
        pw = read_password(password_fd, _("Password for operator {id}").format(id=operator_id))
        session = login(store, operator_id, pw, ttl=lifetime)
    finally:
        store.close()
    op = session.operator
    expires = session.expires.astimezone().isoformat(timespec="seconds")
    state.emit(
        {**op.info(), "expires": expires, "token": str(session.path)},
        _("Logged in as {id} ({role}) until {expires}.").format(
            id=op.id, role=op.role, expires=expires
        ),
    )


@operator.command(name="logout")
@pass_state
def logout_(state: CliState) -> None:
    """End the session and delete the token file.

    \b
    Examples:
      sscard operator logout
    """
    store = OperatorStore(state.open_store())
    try:
        op = logout(store)
    finally:
        store.close()
    state.emit(
        {"logged_out": op.id if op else None},
        _("Logged out {id}.").format(id=op.id) if op else _("No operator was logged in."),
    )


@operator.command()
@pass_state
def whoami(state: CliState) -> None:
    """Show the logged-in operator and what their role may do (exit 6 if none).

    \b
    Examples:
      sscard operator whoami
    """
    from sscard.auth.roles import actions_for

    store = OperatorStore(state.open_store())
    try:
        op = current_operator(store)
    finally:
        store.close()
    actions = actions_for(op.role)
    state.emit(
        {**op.info(), "actions": actions, "token": str(token_path())},
        _("{id} ({name}), role {role}: {description}").format(
            id=op.id, name=op.name, role=op.role, description=_(ROLE_DESCRIPTIONS[op.role])
        ),
    )
