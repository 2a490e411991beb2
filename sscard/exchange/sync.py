"""Synchronisation with the platform: drain the outbox, pull updates, loop (art. 11).

:func:`push_pending` sends the outbox in batches and marks each acknowledged
event delivered in one local transaction per batch. If the process dies between
the platform's ack and that commit, the next push sends those events again and
the platform acknowledges them as duplicates: every event is stored exactly
once. Events the platform refuses (400 schema, 403 scope) are set aside as
``rejected`` with the reason, the rest of the batch goes on. Then
:func:`witness_audit` has the platform witness the live head of the audit trail
(signed or not), so that a trail cut on this machine is caught against it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sscard import audit, db
from sscard.audit.log import GENESIS
from sscard.db import Connection
from sscard.errors import (
    AuditWitnessRefused,
    EventsRejected,
    PlatformProtocolError,
    PlatformUnavailable,
    ScopeRefused,
)
from sscard.exchange import inbox, outbox
from sscard.exchange.client import PlatformClient
from sscard.exchange.events import Event, utc_text
from sscard.i18n import _

log = logging.getLogger("sscard.exchange.sync")

DEFAULT_BATCH = 500
PUSH_CLAIM = "outbox.push"
PULL_CLAIM = "inbox.pull"
CLAIM_WAIT = 300.0
"""How long a push or a pull waits for another station's to end (seconds)."""
_CLAIM_WHAT = {
    PUSH_CLAIM: lambda: _("pushing the outbox"),
    PULL_CLAIM: lambda: _("pulling from the platform"),
}


@dataclass
class PushReport:
    """Per-event results of one push: stored, duplicate (already there) or rejected."""

    batches: int = 0
    stored: int = 0
    duplicate: int = 0
    rejected: list[dict[str, str]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    audit_witnessed: int | None = None

    @property
    def delivered(self) -> int:
        """Events the platform now holds (stored now or before)."""
        return self.stored + self.duplicate

    def to_json(self, details: bool = False) -> dict[str, Any]:
        """The report as JSON; ``details`` adds one result per event."""
        data: dict[str, Any] = {
            "batches": self.batches,
            "delivered": self.delivered,
            "stored": self.stored,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "audit_witnessed": self.audit_witnessed,
        }
        if details:
            data["results"] = self.results
        return data


def ensure_schema(conn: Connection) -> None:
    """Create the outbox and inbox tables (idempotent)."""
    outbox.ensure_schema(conn)
    inbox.ensure_schema(conn)


def _claimed(conn: Connection, name: str, wait: float) -> db.Claim:
    """The claim ``name`` on the store, waited for up to ``wait`` seconds; else StoreBusy."""
    held = db.claim(conn, name, wait=wait)
    if held is None:
        raise db.StoreBusy(
            _("another station has been busy with {what} for {seconds:.0f} s").format(
                what=_CLAIM_WHAT[name](), seconds=wait
            )
        ).with_hint(_("try again later"))
    return held


def push_pending(
    conn: Connection,
    client: PlatformClient,
    *,
    batch_size: int = DEFAULT_BATCH,
    keep_results: bool = False,
    wait: float = CLAIM_WAIT,
) -> PushReport:
    """Push every pending event, ``batch_size`` at a time, until the outbox is drained.

    One station of a store pushes at a time: the push holds the claim
    ``outbox.push`` from the first batch to the audit witness, so two
    stations never send the same events (a station that finds another
    pushing waits for it, up to ``wait`` seconds, then pushes what is left;
    :class:`sscard.db.StoreBusy` after that). Raises
    :class:`PlatformUnavailable` / :class:`PlatformAuthRefused` when the
    platform cannot take them; batches acknowledged before stay delivered.
    """
    with _claimed(conn, PUSH_CLAIM, wait):
        report = PushReport()
        while True:
            batch = outbox.pending(conn, batch_size)
            if not batch:
                break
            _push_batch(conn, client, batch, report, keep_results)
        report.audit_witnessed = witness_audit(conn, client)
        with db.transaction(conn):
            outbox.set_state(conn, "last_push_at", utc_text())
            conn.execute("DELETE FROM outbox_state WHERE key = 'last_error'")
    return report


def witness_audit(
    conn: Connection,
    client: PlatformClient,
    signer: audit.CheckpointSigner | None = None,
) -> int:
    """Have the platform witness the live head of the audit trail; the record it now witnesses.

    First the head the platform witnessed is fetched and checked against this
    trail: :class:`AuditTrailTruncated` when the trail no longer reaches that
    record, :class:`AuditLogBroken` when that record differs. Then the live
    head is sent when it is newer: the stored checkpoint of it, else one signed
    now (``signer``, else the automatic one), else the bare unsigned head (a
    default installation has no checkpoint key; truncation is caught all the
    same). :class:`AuditWitnessRefused` when the platform refuses it.
    """
    seq, top = audit.head(conn)
    witnessed = client.audit_head()
    extends: dict[str, Any] | None = None
    if witnessed is not None:
        known = int(witnessed["seq"])
        row = conn.execute("SELECT hash FROM audit_log WHERE seq = ?", (known,)).fetchone()
        mine = GENESIS if known == 0 else (None if row is None else str(row[0]))
        problem = audit.witness_problem(known, str(witnessed["hash"]), mine, seq)
        if problem is not None:
            raise problem
        if seq <= known:
            return known  # nothing newer to witness
        extends = {"seq": known, "hash": witnessed["hash"]}
    send = _head_checkpoint(conn, seq, top, signer or audit.auto_signer())
    try:
        answer = client.witness(send.wire(), extends)
    except AuditWitnessRefused:
        log.error(_("the platform refused the audit head at record %d"), send.seq)
        raise
    return int(answer["checkpoint"]["seq"])


def _head_checkpoint(
    conn: Connection, seq: int, top: str, signer: audit.CheckpointSigner | None
) -> audit.Checkpoint:
    """The head ``(seq, top)`` as signed as it can be: stored, newly signed, or bare."""
    newest = audit.latest(conn)
    if newest is not None and (newest.seq, newest.hash) == (seq, top):
        return newest
    if signer is not None:
        return audit.checkpoint(conn, signer)
    return audit.Checkpoint.unsigned(seq, top, utc_text())


def _push_batch(
    conn: Connection,
    client: PlatformClient,
    batch: list[Event],
    report: PushReport,
    keep_results: bool,
) -> None:
    try:
        results = client.push(batch)
    except (ScopeRefused, EventsRejected) as refusal:
        refused = set(refusal.event_ids) & {e.id for e in batch}
        if not refused:
            raise  # a refusal of the request as a whole: nothing to set aside
        reasons: dict[str, list[str]] = {}
        for path, message in refusal.problems:
            for i, event in enumerate(batch):
                if path.startswith(f"/events/{i}/") or path == f"/events/{i}":
                    reasons.setdefault(event.id, []).append(f"{path}: {message}")
        kind = "scope_refused" if isinstance(refusal, ScopeRefused) else "invalid"
        with db.transaction(conn):
            for event_id in refused:
                reason = f"{kind}: " + "; ".join(reasons.get(event_id, ["refused"]))
                outbox.mark_rejected(conn, event_id, reason)
                report.rejected.append({"id": event_id, "reason": reason})
                if keep_results:
                    report.results.append({"id": event_id, "status": "rejected"})
        log.info("platform refused %d event(s); set aside as rejected", len(refused))
        return  # the others are still pending: the next round sends them
    except Exception as exc:
        with db.transaction(conn):
            outbox.record_failure(conn, [e.id for e in batch], type(exc).__name__)
            outbox.set_state(conn, "last_error", f"{utc_text()} {exc}")
        raise
    with db.transaction(conn):
        outbox.mark_delivered(conn, {r["id"]: r["seq"] for r in results})
    report.batches += 1
    for r in results:
        if r["status"] == "stored":
            report.stored += 1
        else:
            report.duplicate += 1
    if keep_results:
        report.results.extend({"id": r["id"], "status": r["status"]} for r in results)


@dataclass
class PullReport:
    """What one pull brought: items, the new cursor, and their effect on the inbox."""

    items: int = 0
    cursor: int = 0
    blocked: int = 0
    unblocked: int = 0
    holder_updates: int = 0
    ignored: int = 0

    def to_json(self) -> dict[str, Any]:
        """The report as JSON."""
        return dict(self.__dict__)


def pull_updates(
    conn: Connection, client: PlatformClient, *, limit: int = 500, wait: float = CLAIM_WAIT
) -> PullReport:
    """Pull pages after the stored cursor until the platform has no more.

    One station of a store pulls at a time (the claim ``inbox.pull``, waited
    for up to ``wait`` seconds), so the cursor only moves forward.
    """
    with _claimed(conn, PULL_CLAIM, wait):
        report = PullReport(cursor=inbox.cursor(conn))
        while True:
            page = client.pull(report.cursor, limit)
            if page["cursor"] < report.cursor:
                raise PlatformProtocolError(_("the platform moved the pull cursor backwards"))
            with db.transaction(conn):
                applied = inbox.apply_pulled(conn, page["items"], page["cursor"])
            report.items += len(page["items"])
            report.cursor = page["cursor"]
            for name in ("blocked", "unblocked", "holder_updates", "ignored"):
                setattr(report, name, getattr(report, name) + getattr(applied, name))
            if not page["more"] or not page["items"]:
                return report


class Backoff:
    """Exponential backoff with full jitter: delay n is uniform in [base·2ⁿ/2, base·2ⁿ], capped."""

    def __init__(self, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None):
        self.base, self.cap = base, cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """Count a failure and return how long to wait before the next try."""
        ceiling = min(self.cap, self.base * (2**self.failures))
        self.failures += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """A success: start again from ``base``."""
        self.failures = 0


@dataclass
class Cycle:
    """One round of ``sync run``: what was pushed and pulled, or why it failed."""

    number: int
    push: PushReport | None = None
    pull: PullReport | None = None
    error: str | None = None
    wait: float = 0.0


def run(
    conn: Connection,
    client: PlatformClient,
    *,
    period: float,
    cycles: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    pull: bool = True,
    backoff: Backoff | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_cycle: Callable[[Cycle], None] | None = None,
) -> int:
    """Push then pull every ``period`` seconds; back off while the platform is down.

    Stops after ``cycles`` rounds (None: forever). Authentication and protocol
    errors end the loop (they need a person); an unreachable platform does not.
    Returns the number of failed rounds.
    """
    backoff = backoff or Backoff(base=min(period, 1.0) or 0.1, cap=max(period * 10, 1.0))
    failures = 0
    number = 0
    while cycles is None or number < cycles:
        number += 1
        cycle = Cycle(number)
        try:
            cycle.push = push_pending(conn, client, batch_size=batch_size)
            if pull:
                try:
                    cycle.pull = pull_updates(conn, client)
                except ScopeRefused as exc:
                    pull = False  # this department's agreement has nothing to pull
                    log.warning(_("not pulling any more: %s"), exc)
            backoff.reset()
            cycle.wait = period
        except db.StoreBusy as exc:  # another station kept pushing or pulling: next round
            cycle.error = str(exc)
            cycle.wait = period
            log.warning("%s", exc)
        except PlatformUnavailable as exc:
            failures += 1
            cycle.error = str(exc)
            cycle.wait = backoff.next_delay()
            log.warning(_("platform unavailable (%s); next try in %.1f s"), exc, cycle.wait)
        if on_cycle:
            on_cycle(cycle)
        if cycles is None or number < cycles:
            sleep(cycle.wait)
    return failures
