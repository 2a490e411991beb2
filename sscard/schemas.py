"""Every module that keeps tables in the store, loaded together (docs/store.md).

Modules register their versioned schemas when they are imported, and a command
imports only what it needs; initializing, upgrading or describing a store
needs them all: :func:`initialize`, :func:`upgrade`, :func:`describe`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from sscard import db
from sscard.db.migrations import VERSIONS_TABLE, table_names
from sscard.i18n import _

OWNERS = (
    "sscard.audit.schema",
    "sscard.auth.store",
    "sscard.exchange.outbox",
    "sscard.exchange.inbox",
    "sscard.issuance.store",
)
"""The modules that own tables in the store, in the order their tables are created."""


def load_all() -> list[str]:
    """Import every table-owning module; the names of the registered schemas."""
    for name in OWNERS:
        importlib.import_module(name)
    return db.registered()


_TABLES = (
    "audit_log",
    "audit_checkpoints",
    "operators",
    "operator_sessions",
    "outbox_events",
    "outbox_state",
    "inbox_block_list",
    "inbox_holder_updates",
    "inbox_state",
    "issuance_cards",
    "issuance_attempts",
)
"""sscard's own tables (a store that has any of them is not a new one)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One migration step applied to a store."""

    module: str
    version: int
    note: str
    """What the step does (English; shown translated with ``_``)."""

    def info(self) -> dict[str, object]:
        return {"module": self.module, "version": self.version, "note": _(self.note)}


def tables(conn: db.Connection) -> set[str]:
    """Which of sscard's tables (and ``sscard_schema``) the store has."""
    return table_names(conn) & {*_TABLES, VERSIONS_TABLE}


def _steps(applied: list[tuple[str, int]]) -> list[Step]:
    by_name = {s.name: s for s in db.schemas()}
    return [Step(m, v, by_name[m].migrations[v - 1].note) for m, v in applied]


def initialize(conn: db.Connection) -> list[Step]:
    """Create every table of a new store, all or nothing; the steps applied.

    :class:`~sscard.db.StoreNotEmpty` if the store already has sscard tables.
    One write transaction: two administrators initializing at once cannot both
    succeed, and a failure leaves the store empty.
    """
    load_all()
    with db.transaction(conn):
        found = tables(conn)
        if found:
            raise db.StoreNotEmpty(
                _("the store {store} already has sscard tables").format(store=conn.target.display),
                [("tables", ", ".join(sorted(found)))],
            ).with_hint(_("an initialized store is upgraded, not initialized again"))
        applied = db.migrate(conn)
    return _steps(applied)


def upgrade(conn: db.Connection, names: Sequence[str] | None = None) -> list[Step]:
    """Apply the missing migrations of an initialized store; the steps applied.

    Each step is its own write transaction, so two stations upgrading at once
    apply each step once (the second finds it done). A store without any
    sscard table is refused (:class:`~sscard.db.StoreNotInitialized`): an
    upgrade pointed at the wrong database must not create tables there.
    """
    load_all()
    if not tables(conn):
        raise db.StoreNotInitialized(
            _("the store {store} has no sscard tables yet").format(store=conn.target.display)
        ).with_hint(_("initialize the store first (an administrator's step)"))
    return _steps(db.migrate(conn, names))


@dataclass
class StoreReport:
    """What a store holds: its engine, schema versions and row counts."""

    engine: str
    store: str
    schemas: list[dict[str, object]] = field(default_factory=list)
    counts: dict[str, object] = field(default_factory=dict)
    empty: bool = False
    """No sscard table yet (a new store, or not one of sscard's)."""

    @property
    def too_new(self) -> list[str]:
        """Modules whose tables a newer sscard upgraded."""
        return [
            str(s["module"]) for s in self.schemas if int(str(s["version"])) > int(str(s["latest"]))
        ]

    @property
    def behind(self) -> list[str]:
        """Modules whose tables are older than this sscard's."""
        return [
            str(s["module"]) for s in self.schemas if int(str(s["version"])) < int(str(s["latest"]))
        ]

    def info(self) -> dict[str, object]:
        state = (
            "too_new"
            if self.too_new
            else "empty"
            if self.empty
            else "upgrade_needed"
            if self.behind
            else "current"
        )
        return {
            "engine": self.engine,
            "store": self.store,
            "state": state,
            "schemas": self.schemas,
            "counts": self.counts,
        }


def describe(conn: db.Connection) -> StoreReport:
    """The engine, each module's stored and latest version, and the counts of what the
    store holds (for the tables it has; nothing is created or changed)."""
    load_all()
    have = tables(conn)
    report = StoreReport(conn.engine, conn.target.display, db.status(conn), empty=not have)
    counts = report.counts

    def scalar(sql: str) -> int:
        row = conn.execute(sql).fetchone()
        return int(row[0] or 0) if row is not None else 0

    def by(sql: str) -> dict[str, int]:
        return {str(k): int(n) for k, n in conn.execute(sql)}

    if "operators" in have:
        counts["operators"] = scalar("SELECT COUNT(*) FROM operators")
        counts["operators_disabled"] = scalar("SELECT COUNT(*) FROM operators WHERE disabled <> 0")
    if "audit_log" in have:
        counts["audit_records"] = scalar("SELECT COUNT(*) FROM audit_log")
        counts["audit_head_seq"] = scalar("SELECT MAX(seq) FROM audit_log")
    if "audit_checkpoints" in have:
        counts["audit_checkpoints"] = scalar("SELECT COUNT(*) FROM audit_checkpoints")
    if "issuance_cards" in have:
        cards = by("SELECT status, COUNT(*) FROM issuance_cards GROUP BY status")
        counts["cards"] = {s: cards.get(s, 0) for s in CARD_STATUSES} | cards
    if "outbox_events" in have:
        events = by("SELECT state, COUNT(*) FROM outbox_events GROUP BY state")
        counts["outbox"] = {s: events.get(s, 0) for s in OUTBOX_STATES} | events
    if "inbox_block_list" in have:
        counts["inbox_block_list"] = scalar("SELECT COUNT(*) FROM inbox_block_list")
    if "inbox_holder_updates" in have:
        counts["inbox_holder_updates"] = scalar("SELECT COUNT(*) FROM inbox_holder_updates")
        counts["inbox_holder_updates_waiting"] = scalar(
            "SELECT COUNT(*) FROM inbox_holder_updates WHERE applied_at IS NULL"
        )
    return report


CARD_STATUSES = ("issued", "in_progress", "replaced", "abandoned")
OUTBOX_STATES = ("pending", "rejected", "delivered")
