"""``sscard sync``: the service point's side of the exchange platform (docs/exchange.md).

Prompts and prints only; the work is in :mod:`sscard.exchange.sync`. Events are
written to the outbox by issuance (same transaction as the change) or by
``sync enqueue``; the platform is their only destination (regulation art. 12).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from sscard import db
from sscard.cli.auth import require_operator
from sscard.cli.context import CliState, json_option, pass_state, store_option
from sscard.cli.options import platform_options
from sscard.errors import InvalidInput
from sscard.exchange import inbox, outbox, sync
from sscard.exchange.client import PlatformClient
from sscard.exchange.schema import CATEGORIES
from sscard.exchange.tls import client_context
from sscard.i18n import _, columns, ljust

F = TypeVar("F", bound=Callable[..., Any])


def _open(st: CliState) -> Any:
    conn = st.open_store()
    sync.ensure_schema(conn)
    return conn


def _client(platform: str, cert: Path, key: Path, ca: Path) -> PlatformClient:
    return PlatformClient(platform, client_context(cert, key, ca))


@click.group("sync")
def sync_group() -> None:
    """Send card events to the city exchange platform; fetch the block list and holder updates.

    Regulation art. 11: a change must reach the shared database within 24 hours.
    Events wait in the local outbox until the platform acknowledges them;
    'sync status' shows how old the oldest one is and exits 1 past 24 hours.

    \b
    Set up once (or pass --platform/--cert/--key/--ca to each command):
      export SSCARD_PLATFORM_URL=https://exchange.example:8443
      export SSCARD_EXCHANGE_CERT=sp-01.pem SSCARD_EXCHANGE_KEY=sp-01-key.pem
      export SSCARD_EXCHANGE_CA=ca.pem
    \b
    Examples:
      sscard sync status               pending events, oldest age, violations
      sscard sync push                 send the outbox now
      sscard sync pull                 fetch block list and holder updates
      sscard sync run --period 60      both, every minute, backing off when down
      sscard --json sync status        for monitoring (exit 1 on violation)
    """


@sync_group.command()
@store_option
@platform_options(required=True)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1000),
    default=sync.DEFAULT_BATCH,
    show_default=True,
    help="Events per request.",
)
@click.option("--retry-rejected", is_flag=True, help="Send events the platform refused again.")
@click.option("--details", is_flag=True, help="With --json: one result per event.")
@json_option
@require_operator("sync.run")
@pass_state
@click.pass_context
def push(
    ctx: click.Context,
    state: CliState,
    platform: str,
    cert: Path,
    key: Path,
    ca: Path,
    batch_size: int,
    retry_rejected: bool,
    details: bool,
) -> None:
    """Push every pending event to the platform, in batches.

    Each event is reported stored, already on the platform (a repeat is never
    applied twice), or rejected (outside the sharing agreement, or invalid);
    rejected events stay in the outbox with the reason and make the exit code 1.

    \b
    Examples:
      sscard sync push
      sscard --json sync push --details
      sscard sync push --retry-rejected     after the agreement was extended
    """
    conn = _open(state)
    if retry_rejected:
        with db.transaction(conn):
            outbox.retry_rejected(conn)
    with _client(platform, cert, key, ca) as client:
        report = sync.push_pending(conn, client, batch_size=batch_size, keep_results=details)
    lines = [
        _(
            "Pushed {count} event(s) in {batches} batch(es): {stored} stored, "
            "{duplicate} already on the platform, {rejected} rejected."
        ).format(
            count=report.delivered + len(report.rejected),
            batches=report.batches,
            stored=report.stored,
            duplicate=report.duplicate,
            rejected=len(report.rejected),
        )
    ]
    lines += [
        "  " + _("rejected {id}: {reason}").format(id=r["id"], reason=r["reason"])
        for r in report.rejected
    ]
    if report.audit_witnessed is not None:
        lines.append(
            _("Audit trail witnessed by the platform to record {seq}.").format(
                seq=report.audit_witnessed
            )
        )
    state.emit(report.to_json(details), "\n".join(lines))
    if report.rejected:
        ctx.exit(1)


@sync_group.command()
@store_option
@platform_options(required=True)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=500,
    show_default=True,
    help="Items per request.",
)
@json_option
@require_operator("sync.run")
@pass_state
def pull(state: CliState, platform: str, cert: Path, key: Path, ca: Path, limit: int) -> None:
    """Pull the block list and holder-data updates this service point is entitled to.

    They are stored locally and applied when the card next appears; the cursor
    is saved with them, so nothing is missed or fetched twice.

    \b
    Examples:
      sscard sync pull
      sscard sync inbox                 what was pulled and not yet applied
    """
    conn = _open(state)
    with _client(platform, cert, key, ca) as client:
        report = sync.pull_updates(conn, client, limit=limit)
    state.emit(
        report.to_json(),
        _(
            "Pulled {items} item(s): {blocked} block(s), {unblocked} unblock(s), "
            "{holder_updates} holder update(s); cursor {cursor}."
        ).format(
            items=report.items,
            blocked=report.blocked,
            unblocked=report.unblocked,
            holder_updates=report.holder_updates,
            cursor=report.cursor,
        ),
    )


@sync_group.command()
@store_option
@json_option
@pass_state
@click.pass_context
def status(ctx: click.Context, state: CliState) -> None:
    """Pending events, age of the oldest, and every event older than 24 hours.

    Exit code 1 when any undelivered event is older than 24 hours: a violation
    of regulation art. 11. Works without the platform.

    \b
    Examples:
      sscard sync status
      sscard --json sync status | jq .violation_count
    """
    conn = _open(state)
    s = outbox.stats(conn)
    label = {
        "outbox": _("Outbox"),
        "oldest": _("Oldest"),
        "last_push": _("Last push"),
        "last_error": _("Last error"),
        "violation": _("VIOLATION"),
    }
    width = max(columns(text) for text in label.values()) + 2
    lines = [
        ljust(label["outbox"], width)
        + _("{pending} pending, {rejected} rejected, {delivered} delivered").format(
            pending=s.pending, rejected=s.rejected, delivered=s.delivered
        ),
        ljust(label["oldest"], width)
        + (
            _("{at} ({age} ago)").format(at=s.oldest_undelivered_at, age=_age(s.oldest_age_seconds))
            if s.oldest_undelivered_at and s.oldest_age_seconds is not None
            else _("none (nothing to send)")
        ),
        ljust(label["last_push"], width) + (s.last_push_at or _("never")),
    ]
    if s.last_error:
        lines.append(ljust(label["last_error"], width) + s.last_error)
    if s.violation_count:
        lines.append(
            ljust(label["violation"], width)
            + _("{count} event(s) undelivered for more than 24 h (regulation art. 11):").format(
                count=s.violation_count
            )
        )
        lines += [
            f"  {v.id}  {v.category:<14} {v.occurred_at}  {_age(v.age_seconds)}  {v.state}"
            + (f"  ({v.last_error})" if v.last_error else "")
            for v in s.violations
        ]
        if s.violation_count > len(s.violations):
            lines.append(
                "  " + _("… and {count} more").format(count=s.violation_count - len(s.violations))
            )
    state.emit(s.to_json(), "\n".join(lines))
    if s.violation_count:
        ctx.exit(1)


def _age(seconds: float | None) -> str:
    total = int(seconds or 0)
    hours, rest = divmod(total, 3600)
    if hours:
        return _("{hours} h {minutes} min").format(hours=hours, minutes=rest // 60)
    return _("{minutes} min {seconds} s").format(minutes=rest // 60, seconds=rest % 60)


@sync_group.command()
@store_option
@platform_options(required=True)
@click.option(
    "--period",
    type=click.FloatRange(0.1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Time between rounds while the platform is up.",
)
@click.option(
    "--cycles",
    type=click.IntRange(1),
    metavar="N",
    help="Stop after N rounds (default: run until interrupted).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1000),
    default=sync.DEFAULT_BATCH,
    show_default=True,
    help="Events per request.",
)
@click.option("--no-pull", is_flag=True, help="Only push.")
@json_option
@require_operator("sync.run")
@pass_state
def run(
    state: CliState,
    platform: str,
    cert: Path,
    key: Path,
    ca: Path,
    period: float,
    cycles: int | None,
    batch_size: int,
    no_pull: bool,
) -> None:
    """Push and pull every PERIOD seconds, for a service point's background job.

    While the platform is unreachable, retries back off exponentially with
    jitter (up to 10 periods). A certificate or agreement problem stops it.
    One line per round (a JSON object per line with --json).

    \b
    Examples:
      sscard sync run --period 60
      sscard --json sync run --period 5 --cycles 3
    """
    conn = _open(state)

    def report(cycle: sync.Cycle) -> None:
        if state.json:
            data = {
                "cycle": cycle.number,
                "push": cycle.push.to_json() if cycle.push else None,
                "pull": cycle.pull.to_json() if cycle.pull else None,
                "error": cycle.error,
                "next_in_seconds": round(cycle.wait, 3),
            }
            click.echo(json.dumps(data, ensure_ascii=False))
        elif cycle.error:
            click.echo(
                _("#{number} platform unavailable: {error}; retry in {wait:.1f} s").format(
                    number=cycle.number, error=cycle.error, wait=cycle.wait
                )
            )
        else:
            pushed = cycle.push.delivered if cycle.push else 0
            rejected = len(cycle.push.rejected) if cycle.push else 0
            pulled = cycle.pull.items if cycle.pull else 0
            click.echo(
                _("#{number} pushed {pushed}, rejected {rejected}, pulled {pulled}").format(
                    number=cycle.number, pushed=pushed, rejected=rejected, pulled=pulled
                )
            )
        sys.stdout.flush()

    with _client(platform, cert, key, ca) as client:
        sync.run(
            conn,
            client,
            period=period,
            cycles=cycles,
            batch_size=batch_size,
            pull=not no_pull,
            on_cycle=report,
        )


@sync_group.command()
@click.argument("category", type=click.Choice(CATEGORIES))
@click.argument("payload", type=click.File("r", encoding="utf-8"), default="-")
@click.option(
    "--service-point",
    envvar="SSCARD_SERVICE_POINT",
    required=True,
    help="This service point's id, the CN of its certificate ($SSCARD_SERVICE_POINT).",
)
@click.option(
    "--occurred-at",
    metavar="TIME",
    help="When the change happened, ISO 8601 with time zone (default: now).",
)
@store_option
@json_option
@require_operator("sync.run")
@pass_state
def enqueue(
    state: CliState,
    category: str,
    payload: Any,
    service_point: str,
    occurred_at: str | None,
) -> None:
    """Put one event in the outbox by hand, e.g. a card reported lost by phone.

    PAYLOAD is a JSON file ('-' for stdin) following the category's schema
    (docs/exchange.md). Issuance writes its events itself; this is for changes
    made outside sscard. The event is sent by the next 'sync push' or 'sync run'.

    \b
    Example:
      echo '{"card_number": "A12345678", "reason": "lost", "on_card": false}' \\
        | sscard sync enqueue card.blocked - --service-point sp-01
    """
    try:
        data = json.load(payload)
    except ValueError as exc:
        raise InvalidInput(_("the payload is not JSON"), [("payload", str(exc))]) from None
    if not isinstance(data, dict):
        raise InvalidInput(_("invalid payload"), [("payload", _("must be a JSON object"))])
    when = None
    if occurred_at is not None:
        try:
            when = datetime.fromisoformat(occurred_at)
        except ValueError:
            raise InvalidInput(
                _("invalid time"),
                [("--occurred-at", _("ISO 8601, e.g. 2024-05-01T09:30:00+08:00"))],
            ) from None
    conn = _open(state)
    with db.transaction(conn):
        event_id = outbox.enqueue(
            conn, category, data, service_point=service_point, occurred_at=when
        )
    state.emit(
        {"id": event_id, "category": category},
        _("Queued {category} event {id}.").format(category=category, id=event_id),
    )


@sync_group.command("inbox")
@store_option
@json_option
@pass_state
def inbox_cmd(state: CliState) -> None:
    """Show the pulled block list and the holder updates not yet written to a card.

    \b
    Example:
      sscard sync inbox
    """
    conn = _open(state)
    blocks = inbox.block_list(conn)
    updates = inbox.pending_updates(conn)
    data = {
        "cursor": inbox.cursor(conn),
        "block_list": [b._asdict() for b in blocks],
        "holder_updates": [u._asdict() for u in updates],
    }
    lines = [_("Block list ({count} card(s)):").format(count=len(blocks))]
    lines += [
        f"  {b.card_number}  {b.reason or '-':<10} " + _("since {time}").format(time=b.occurred_at)
        for b in blocks
    ]
    lines.append(_("Holder updates to write ({count}):").format(count=len(updates)))
    lines += [
        f"  {u.card_number}  {', '.join(sorted(u.changes))}  ({u.occurred_at})" for u in updates
    ]
    state.emit(data, "\n".join(lines))
