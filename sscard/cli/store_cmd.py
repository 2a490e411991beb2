"""``sscard store``: create a store's tables, upgrade them, show the store (docs/store.md).

Who may run them: ``init`` needs no operator (a new centre has none yet; it is
refused on a store that has tables, and is the first record of the audit
trail). ``upgrade`` on PostgreSQL needs an issuer once the store has operators,
checked before anything changes and recorded in the trail: one station's
upgrade changes the store under every station of the centre. An SQLite store
upgrades itself when any command opens it, so there ``upgrade`` needs no
operator. ``status`` changes nothing and shows versions and counts, no
personal data; it needs no operator, since it is what one runs when a store is
not ready to check a login. The database's own access rules (its role and
password, the file's permissions) stand in front of all three.
"""

from __future__ import annotations

from pathlib import Path

import click

from sscard import audit, db, schemas
from sscard.auth.store import Operator
from sscard.cli.auth import authorize, operator_option
from sscard.cli.context import CliState, json_option, pass_state
from sscard.db.migrations import check
from sscard.i18n import _, columns, ljust

_ENGINES = {db.SQLITE: "SQLite", db.POSTGRESQL: "PostgreSQL"}


@click.group(name="store")
def store_group() -> None:
    """The store: create a new one's tables, upgrade them, show versions and counts.

    The store is the one setting 'sscard --store PATH|URL' (or $SSCARD_STORE): an
    SQLite file, or a centre's PostgreSQL database (docs/store.md).

    \b
    Examples:
      sscard --store postgresql://sscard@db.centre.example/sscard store init
      sscard --store postgresql://sscard@db.centre.example/sscard store upgrade
      sscard store status
      sscard --json store status
    """


def _connect(state: CliState) -> db.Connection:
    return db.connect(state.store_target())


def _versions(report: list[dict[str, object]]) -> str:
    return ", ".join(f"{s['module']} {s['version']}" for s in report)


@store_group.command()
@json_option
@pass_state
def init(state: CliState) -> None:
    """Create every table of a new store (all or nothing) at this sscard's version.

    Refused on a store that already has sscard tables. Needs no operator: add
    the first one afterwards with 'sscard operator add --bootstrap'.

    \b
    Examples:
      sscard --store postgresql://sscard@db.centre.example/sscard store init
      sscard --store /srv/sp/sscard.db store init
    """
    with _connect(state) as conn:
        steps = schemas.initialize(conn)
        versions = db.status(conn)
        audit.record(
            "store.init", operator=None, outcome="ok",
            detail={"engine": conn.engine, "versions": _versions(versions)}, conn=conn,
        )  # fmt: skip
        display = conn.target.display
    state.emit(
        {"store": display, "applied": [s.info() for s in steps], "schemas": versions},
        "\n".join(
            [
                _("Initialized the store {store}:").format(store=display),
                *_step_lines(steps),
                _("Next: add the first operator with 'sscard operator add --bootstrap ID'."),
            ]
        ),
    )


def _step_lines(steps: list[schemas.Step]) -> list[str]:
    return [
        _("  {module} {version}: {note}").format(module=s.module, version=s.version, note=_(s.note))
        for s in steps
    ]


@store_group.command()
@operator_option
@json_option
@pass_state
def upgrade(state: CliState, operator_id: str | None) -> None:
    """Apply the migrations the store lacks, each step in its own transaction.

    Safe to run from two stations at once: each step is applied once. On
    PostgreSQL, once the store has operators, an issuer runs it (checked before
    anything changes; recorded in the audit trail). Stations still running an
    older sscard refuse the upgraded store: upgrade them together.

    \b
    Examples:
      sscard --store postgresql://sscard@db.centre.example/sscard store upgrade
      sscard store upgrade --operator admin
    """
    with _connect(state) as conn:
        operator = None
        if conn.engine == db.POSTGRESQL and _has_operators(conn):
            operator = authorize("store.upgrade", operator_id, conn=conn)
        try:
            steps = schemas.upgrade(conn)
        except Exception as exc:
            if operator is not None:
                _record_failure(conn, operator, exc)
            raise
        versions = db.status(conn)
        if steps:
            audit.record(
                "store.upgrade", operator=operator, outcome="ok",
                detail={"steps": len(steps), "versions": _versions(versions)}, conn=conn,
            )  # fmt: skip
        display = conn.target.display
    if steps:
        lines = [_("Upgraded the store {store}:").format(store=display), *_step_lines(steps)]
    else:
        lines = [
            _("Nothing to upgrade: the store {store} is at this sscard's version.").format(
                store=display
            )
        ]
    info = {"store": display, "applied": [s.info() for s in steps], "schemas": versions}
    state.emit(info, "\n".join(lines))


def _has_operators(conn: db.Connection) -> bool:
    if "operators" not in schemas.tables(conn):
        return False
    return conn.execute("SELECT 1 FROM operators LIMIT 1").fetchone() is not None


def _record_failure(conn: db.Connection, operator: Operator, error: Exception) -> None:
    """Record a failed upgrade if the trail can take it (the trail may be what failed)."""
    try:
        if conn.in_transaction:
            conn.rollback()
        audit.record("store.upgrade", operator=operator, outcome="failed", error=error, conn=conn)
    except (db.StoreUnavailable, db.StoreNotReady, db.StoreTooNew):
        pass


@store_group.command()
@json_option
@pass_state
def status(state: CliState) -> None:
    """Show the engine, the store, each module's table version against this sscard's,
    and counts: operators, audit records, cards by status, outbox and inbox.

    Changes nothing. Exits 0 when this sscard can use the store as it is (an
    SQLite store upgrades itself on first use), else 7: a PostgreSQL store not
    initialized or needing an upgrade, or a store a newer sscard upgraded.

    \b
    Examples:
      sscard --store postgresql://sscard@db.centre.example/sscard store status
      sscard --json store status
    """
    target = db.parse_target(state.store_target())
    if target.engine == db.SQLITE and not Path(target.location).exists():
        schemas.load_all()
        report = schemas.StoreReport(target.engine, target.display, db.status(None), empty=True)
        state.emit(report.info(), "\n".join(_status_lines(report)))
        return
    with db.connect(target) as conn:
        report = schemas.describe(conn)
        state.emit(report.info(), "\n".join(_status_lines(report)))
        if report.too_new or (conn.engine == db.POSTGRESQL and (report.behind or report.empty)):
            check(conn, db.registered())


def _status_lines(report: schemas.StoreReport) -> list[str]:
    """The human form of ``store status``."""
    lines = [
        _("Store: {store}").format(store=report.store),
        _("Engine: {engine}").format(engine=_ENGINES.get(report.engine, report.engine)),
    ]
    head = (_("module"), _("stored"), _("this sscard"))
    rows = [(str(s["module"]), str(s["version"]), str(s["latest"])) for s in report.schemas]
    widths = [max(columns(row[i]) for row in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        cells = "  ".join(ljust(cell, w) for cell, w in zip(row, widths, strict=True))
        lines.append(("  " + cells).rstrip())
    counts = report.counts
    if "operators" in counts:
        lines.append(
            _("Operators: {count} ({disabled} disabled)").format(
                count=counts["operators"], disabled=counts.get("operators_disabled", 0)
            )
        )
    if "audit_records" in counts:
        lines.append(
            _("Audit trail: {count} records, head seq {head}, {checkpoints} checkpoints").format(
                count=counts["audit_records"],
                head=counts.get("audit_head_seq", 0),
                checkpoints=counts.get("audit_checkpoints", 0),
            )
        )
    cards = counts.get("cards")
    if isinstance(cards, dict):
        lines.append(
            _("Cards: {counts}").format(counts=", ".join(f"{k} {v}" for k, v in cards.items()))
        )
    outbox = counts.get("outbox")
    if isinstance(outbox, dict):
        lines.append(
            _("Outbox: {counts}").format(counts=", ".join(f"{k} {v}" for k, v in outbox.items()))
        )
    if "inbox_block_list" in counts:
        lines.append(
            _("Inbox: {blocks} block-list entries, {updates} holder updates ({waiting} waiting)")
            .format(
                blocks=counts["inbox_block_list"],
                updates=counts.get("inbox_holder_updates", 0),
                waiting=counts.get("inbox_holder_updates_waiting", 0),
            )
        )  # fmt: skip
    lines.append(_state_line(report))
    return lines


def _state_line(report: schemas.StoreReport) -> str:
    sqlite = report.engine == db.SQLITE
    if report.too_new:
        return _("A newer sscard upgraded this store ({modules}): use that version.").format(
            modules=", ".join(report.too_new)
        )
    if report.empty:
        if sqlite:
            return _("No sscard tables yet: created on first use, or with 'sscard store init'.")
        return _("No sscard tables yet: run 'sscard store init' (an administrator's step).")
    if report.behind:
        if sqlite:
            return _(
                "Older tables ({modules}): upgraded on first use, or with 'sscard store upgrade'."
            ).format(modules=", ".join(report.behind))
        return _(
            "Older tables ({modules}): run 'sscard store upgrade' (an administrator's step)."
        ).format(modules=", ".join(report.behind))
    return _("The store is at this sscard's version.")
