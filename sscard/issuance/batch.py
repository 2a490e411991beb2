"""Batch issuance: many holders, one worker per reader, in parallel (issue 6).

Each worker waits for a blank card in its reader, issues the next row, and
waits for the card to be taken out. Rows already issued (by holder SSN and card
number, in the local store) are skipped, so running a batch again finishes it.
A card torn mid-issue is resumed with the row it was being issued for. Stopping
(:meth:`BatchRun.stop`) lets the cards in flight finish; anything interrupted
harder stays ``in_progress`` in the store and is resumed next time, except the
in-memory cards of a ``--virtual`` reader: they died with their process, so the
next batch closes their rows as ``abandoned`` (:func:`close_abandoned`).

Several stations may run batches on one store with overlapping rows
(docs/store.md, "Several stations"). A row whose holder another station is
issuing right now is deferred: put back and tried again after the other rows,
every :data:`DEFER_POLL_S` seconds once only deferred rows are left. A row
another station issued meanwhile is reported ``skipped`` (already issued, with
that card's serial). Neither uses up the card in the reader: it takes the next
row. The batch ends once every row is issued, skipped, failed or invalid.
"""

from __future__ import annotations

import csv
import json
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from sscard import audit, errors
from sscard.audit.log import Actor
from sscard.card import SocialSecurityCard
from sscard.csvsafe import safe_row
from sscard.db import Connection, transaction
from sscard.i18n import _
from sscard.issuance import store
from sscard.issuance.service import (
    CardInProgressElsewhere,
    HolderHasActiveCard,
    HolderInProgressElsewhere,
    IssueResult,
    issue_card,
)
from sscard.keys.security_module import SecurityModule
from sscard.layout.holder import normalize_holder
from sscard.layout.holder_io import HolderRow
from sscard.layout.model import Profile
from sscard.pinpolicy import PinPolicy
from sscard.transport.slot import CardSlot


def close_abandoned(conn: Connection, operator: Actor | None) -> list[store.CardRecord]:
    """Close as ``abandoned`` the ``in_progress`` rows of in-memory cards whose process ended.

    Such a card (``issue batch --virtual``) can never come back, so its
    issuance can never finish. Each row, its open attempts and an audit record
    (``card.issue``, failed, detail ``status: abandoned`` and the reason) commit
    together. Rows of cards that may still exist (a physical card, a card
    image) are never touched: they stay resumable.
    """
    with transaction(conn):
        gone = store.gone_cards(conn)
        for rec in gone:
            host, pid, _start = (rec.held_by or "::").split(":")
            reason = (
                f"in-memory card of a --virtual batch; its process (pid {pid} on {host}) "
                "ended before the card was issued, so the card is gone"
            )
            store.mark_abandoned(conn, rec.serial, reason)
            audit.record(
                "card.issue",
                operator=operator,
                outcome="failed",
                error="CardAbandoned",
                card_serial=rec.serial,
                card_number=rec.card_number,
                detail={"status": "abandoned", "reason": reason},
                conn=conn,
            )
    return gone


DEFER_POLL_S = 0.2
"""How often a row deferred for another station is tried again once only such rows are left."""


def row_key(row: HolderRow) -> str:
    """How the store recognises a batch row: holder SSN and card number."""
    return f"{row.data['ssn']}:{row.data['card_number']}"


@dataclass
class RowResult:
    """One line of the results file."""

    line: int
    serial: str | None
    status: str  # issued, resumed, already-issued, skipped, failed, invalid
    error: str | None = None
    reader: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "row": self.line,
            "card_serial": self.serial,
            "status": self.status,
            "error": self.error,
            "reader": self.reader,
        }


@dataclass
class BatchRun:
    """A running batch; :meth:`run` blocks until done or stopped."""

    rows: list[HolderRow]
    readers: Sequence[CardSlot]
    open_conn: Callable[[], Connection]
    security: SecurityModule
    operator: Actor | None
    service_point: str
    on_result: Callable[[RowResult], None]
    on_pin: Callable[[HolderRow, str, str], None]
    profile: Profile | None = None  # for blank cards; issued ones are recognised (must fit)
    policy: PinPolicy = field(default_factory=PinPolicy)
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, HolderRow] = {}
        self._deferred: dict[str, tuple[HolderRow, float]] = {}
        """Rows whose holder another station was issuing: row key → (row, when to try again)."""
        self.done = 0
        self.failed = 0
        self.skipped = 0
        self._waited: set[str] = set()  # keys of rows deferred at least once
        self.started = time.monotonic()

    @property
    def deferred(self) -> int:
        """Rows that waited, at least once, while another station issued their holder."""
        with self._lock:
            return len(self._waited)

    @property
    def remaining(self) -> int:
        """Rows not yet issued, skipped or failed (deferred ones included)."""
        with self._lock:
            return len(self._pending) + len(self._deferred)

    def stop(self) -> None:
        """Finish the cards in flight, start no new one."""
        self.stop_event.set()

    def run(self) -> None:
        """Skip rows already issued, then run one worker per reader until no row is left."""
        conn = self.open_conn()
        try:
            from sscard.issuance.service import ensure_schema

            ensure_schema(conn)
            close_abandoned(conn, self.operator)
            for row in self.rows:
                known = store.by_batch_key(conn, row_key(row))
                if known is not None and known.status == "issued":
                    self.skipped += 1
                    self.on_result(
                        RowResult(row.line, known.serial, "skipped", _("already issued"))
                    )
                else:
                    self._pending[row_key(row)] = row
        finally:
            conn.close()
        workers = [
            threading.Thread(
                target=self._worker, args=(slot,), name=f"issue-{slot.name}", daemon=True
            )
            for slot in self.readers
        ]
        for w in workers:
            w.start()
        for w in workers:
            while w.is_alive():
                w.join(0.2)

    def _take(self, serial: str, conn: Connection) -> HolderRow | None:
        """The row for this card: the one it was being issued for, else the next free one,
        else a deferred row whose time has come; None when none is due now."""
        known = store.card(conn, serial)
        key = known.batch_key if known is not None else None
        with self._lock:
            if key is not None and key in self._pending:
                return self._pending.pop(key)
            if key is not None and key in self._deferred:
                return self._deferred.pop(key)[0]
            if self._pending:
                return self._pending.pop(next(iter(self._pending)))
            now = time.monotonic()
            for key, (row, due) in self._deferred.items():
                if due <= now:
                    del self._deferred[key]
                    return row
            return None

    def _release(self, row: HolderRow) -> None:
        with self._lock:
            self._pending[row_key(row)] = row

    def _defer(self, row: HolderRow) -> None:
        with self._lock:
            self._deferred[row_key(row)] = (row, time.monotonic() + DEFER_POLL_S)
            self._waited.add(row_key(row))

    def _worker(self, slot: CardSlot) -> None:
        conn = self.open_conn()
        try:
            while not self.stop_event.is_set() and self.remaining:
                transport = slot.wait_card(self.stop_event)
                if transport is None:
                    return
                try:
                    card = SocialSecurityCard.open(transport, self.profile)
                    card.security = self.security
                    if not self._use(card, conn, slot):
                        return
                finally:
                    transport.disconnect()
                if not self.remaining:
                    return  # the batch is done: nobody waits for this last card
                slot.wait_removal(self.stop_event)
        finally:
            conn.close()

    def _use(self, card: SocialSecurityCard, conn: Connection, slot: CardSlot) -> bool:
        """Issue a row to the card in ``slot``; False when no row is left for it (or stop).

        A row deferred or skipped leaves the card untouched: it takes the next row.
        While only deferred rows are left, they are tried again every
        :data:`DEFER_POLL_S` seconds.
        """
        serial = card.serial.hex().upper()
        while not self.stop_event.is_set():
            row = self._take(serial, conn)
            if row is None:
                if not self.remaining:
                    return False
                self.stop_event.wait(DEFER_POLL_S / 2)
                continue
            if self._issue(card, row, conn, slot.name, in_memory=slot.in_memory):
                return True
        return False

    def _issued_elsewhere(self, conn: Connection, row: HolderRow) -> store.CardRecord | None:
        """The card issued for ``row`` (by this station or another), if any."""
        known = store.by_batch_key(conn, row_key(row))
        if known is not None and known.status == "issued":
            return known
        active = store.active_card(conn, str(normalize_holder(row.data)["ssn"]))
        if active is not None and active.card_number == str(row.data["card_number"]):
            return active
        return None

    def _issue(
        self,
        card: SocialSecurityCard,
        row: HolderRow,
        conn: Connection,
        reader: str,
        *,
        in_memory: bool = False,
    ) -> bool:
        """Issue ``row`` to ``card`` and report it; whether the card is used up (False: it
        is still blank and takes another row)."""
        serial = card.serial.hex().upper()
        pin = self.policy.random(birth_date=row.data.get("birth_date"))
        try:
            result: IssueResult = issue_card(
                card,
                row.data,
                pin=pin,
                conn=conn,
                operator=self.operator,
                service_point=self.service_point,
                batch_key=row_key(row),
                in_memory=in_memory,
            )
        except HolderInProgressElsewhere:  # the card is untouched: it takes another row
            self._defer(row)
            return False
        except HolderHasActiveCard as exc:
            other = self._issued_elsewhere(conn, row)
            if other is None:
                self._fail(row, serial, exc, reader)
            else:  # another station issued this row meanwhile
                self.on_result(RowResult(row.line, other.serial, "skipped", _("already issued")))
                with self._lock:
                    self.skipped += 1
            mine = store.card(conn, serial)
            return mine is not None and mine.status == "in_progress"  # else: still blank
        except (errors.TransportError, CardInProgressElsewhere) as exc:
            self._release(row)  # card pulled, or busy elsewhere: the row goes back to the queue
            self._fail(row, serial, exc, reader)
            return True
        except errors.SscardError as exc:
            self._fail(row, serial, exc, reader)
            return True
        if result.status != "already-issued":
            self.on_pin(row, result.card_number, pin)
        self.on_result(RowResult(row.line, serial, result.status, None, reader))
        with self._lock:
            self.done += 1
        return True

    def _fail(self, row: HolderRow, serial: str, exc: BaseException, reader: str) -> None:
        self.on_result(
            RowResult(row.line, serial, "failed", f"{type(exc).__name__}: {exc}", reader)
        )
        with self._lock:
            self.failed += 1


def rate_and_eta(run: BatchRun) -> tuple[float, float | None]:
    """Cards per second so far and the seconds left at that rate."""
    elapsed = max(time.monotonic() - run.started, 1e-9)
    rate = run.done / elapsed
    left = run.remaining
    return rate, (left / rate if rate > 0 else None)


def default_results_path(holders: Path) -> Path:
    """``FILE.results-TIME.jsonl`` beside the holder file."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return holders.with_name(f"{holders.stem}.results-{stamp}.jsonl")


class ResultsWriter:
    """The results file, one line per row (CSV or JSON Lines), flushed, thread-safe.

    CSV cells go through :func:`sscard.csvsafe.safe_row`: no cell a spreadsheet
    would run as a formula.
    """

    COLUMNS = ("row", "card_serial", "status", "error", "reader")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.csv = path.suffix.lower() == ".csv"
        self._file = path.open("w", encoding="utf-8", newline="")
        self._lock = threading.Lock()
        if self.csv:
            self._writer = csv.DictWriter(self._file, fieldnames=self.COLUMNS)
            self._writer.writeheader()

    def write(self, result: Any) -> None:
        data = result.to_json()
        with self._lock:
            if self.csv:
                self._writer.writerow(safe_row(data))
            else:
                self._file.write(json.dumps(data, ensure_ascii=False) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def run_until_done(
    run: BatchRun,
    *,
    tick: Callable[[BatchRun], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
    on_abandoned: Callable[[], None] | None = None,
) -> int:
    """Run ``run`` in a worker thread until it ends; Ctrl-C stops it gracefully.

    The first SIGINT lets the cards in flight finish (``on_stopping``); a second
    one abandons them (``on_abandoned``): they stay ``in_progress`` and are
    finished next run. ``tick`` is called about twice a second (progress). Call
    it from the main thread (signal handlers live there). Returns how many times
    the run was interrupted.
    """
    worker = threading.Thread(target=run.run, name="batch", daemon=True)
    interrupted = 0

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted += 1
        run.stop()
        if interrupted == 1:
            if on_stopping is not None:
                on_stopping()
        else:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.5)
            if tick is not None:
                tick(run)
    except KeyboardInterrupt:
        if on_abandoned is not None:
            on_abandoned()
    finally:
        signal.signal(signal.SIGINT, old)
    return interrupted
