"""The outbox and the local store: what issuance relies on (regulation art. 11)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sscard import db, paths
from sscard.errors import InvalidInput
from sscard.exchange import inbox, outbox
from sscard.exchange.events import new_event_id
from sscard.exchange.schema import CATEGORIES, payload_problems, schema
from tests.exchange_support import SSN, blocked, issued, open_store, pulled


def test_data_dir_and_store_follow_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(paths.ENV_STORE, raising=False)
    monkeypatch.setenv("SSCARD_DATA_DIR", str(tmp_path / "d"))
    assert paths.default_store() == tmp_path / "d" / "sscard.db"
    monkeypatch.delenv("SSCARD_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.data_dir() == tmp_path / "xdg" / "sscard"
    monkeypatch.setenv(paths.ENV_STORE, str(tmp_path / "s.db"))
    assert paths.default_store() == tmp_path / "s.db"


def test_open_db_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    conn = db.open_db(tmp_path / "sub" / "sscard.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert (tmp_path / "sub").stat().st_mode & 0o777 == 0o700


def test_open_db_refuses_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, this is not SQLite at all" * 100)
    with pytest.raises(InvalidInput, match="not an sscard store"):
        db.open_db(bad)


def test_event_commits_and_rolls_back_with_the_callers_change(tmp_path: Path) -> None:
    path = tmp_path / "sscard.db"
    conn = open_store(path)
    conn.execute("CREATE TABLE cards (number TEXT PRIMARY KEY)")
    with db.transaction(conn):
        conn.execute("INSERT INTO cards VALUES ('A0000001S')")
        kept = outbox.enqueue(conn, "card.issued", issued(1), service_point="sp-1")
    with pytest.raises(RuntimeError), db.transaction(conn):
        conn.execute("INSERT INTO cards VALUES ('A0000002Q')")
        outbox.enqueue(conn, "card.issued", issued(2), service_point="sp-1")
        raise RuntimeError("issuance failed after the event was queued")
    other = sqlite3.connect(path)  # what another process sees on disk
    assert [r[0] for r in other.execute("SELECT number FROM cards")] == ["A0000001S"]
    assert [r[0] for r in other.execute("SELECT id FROM outbox_events")] == [kept]


def test_enqueue_does_not_commit(tmp_path: Path) -> None:
    path = tmp_path / "sscard.db"
    conn = open_store(path)
    conn.execute("BEGIN")
    outbox.enqueue(conn, "card.issued", issued(1), service_point="sp-1")
    assert sqlite3.connect(path).execute("SELECT count(*) FROM outbox_events").fetchone()[0] == 0
    conn.execute("ROLLBACK")
    assert outbox.pending(conn) == []


def test_a_pin_can_never_enter_the_outbox(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "sscard.db")
    payload = {"card_serial": "0011223344556677", "card_number": "A0000001S", "pin": "123456"}
    with pytest.raises(InvalidInput) as err:
        outbox.enqueue(conn, "pin.reset", payload, service_point="sp-1")
    assert ("payload/pin", "unknown property (not allowed)") in err.value.problems
    assert "123456" not in str(err.value)
    assert conn.execute("SELECT count(*) FROM outbox_events").fetchone()[0] == 0


def test_invalid_events_name_every_failing_path_and_change_nothing(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "sscard.db")
    bad = {"card_number": "a-1", "reason": "misplaced", "on_card": "no"}
    with pytest.raises(InvalidInput) as err:
        outbox.enqueue(conn, "card.blocked", bad, service_point="sp 1")
    fields = {f for f, _ in err.value.problems}
    assert fields == {"payload/card_number", "payload/reason", "payload/on_card", "service_point"}
    assert "a-1" not in str(err.value)  # the rule is named, the value is not echoed
    with pytest.raises(InvalidInput, match="category"):
        outbox.enqueue(conn, "card.stolen", blocked("A0000001S"), service_point="sp-1")
    with pytest.raises(InvalidInput, match="occurred_at"):
        outbox.enqueue(
            conn,
            "card.blocked",
            blocked("A0000001S"),
            service_point="sp-1",
            occurred_at=datetime(2024, 1, 1),
        )
    assert conn.execute("SELECT count(*) FROM outbox_events").fetchone()[0] == 0


def test_every_category_has_a_schema_that_accepts_a_sample() -> None:
    samples = {
        "card.issued": issued(1),
        "card.replaced": issued(2) | {"replaces": {"card_number": "A0000001S"}, "reason": "lost"},
        "pin.reset": {"card_serial": "0011223344556677", "card_number": "A0000001S"},
        "pin.unblocked": {"card_serial": "0011223344556677", "card_number": "A0000001S"},
        "card.blocked": blocked("A0000001S"),
        "card.unblocked": {"card_number": "A0000001S", "reason": "found"},
        "holder.changed": {
            "ssn": SSN,
            "card_number": "A0000001S",
            "changes": {"name": "李四"},
            "written_to_card": False,
        },
    }
    assert set(samples) == set(CATEGORIES)
    for category, payload in samples.items():
        assert payload_problems(category, payload) == [], category
        assert schema(f"payload.{category}")["additionalProperties"] is False


def test_event_ids_are_unique_uuid7_in_creation_order() -> None:
    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    assert all(i[14] == "7" and i[19] in "89ab" for i in ids)
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)


def test_pending_is_oldest_first_and_delivered_events_leave_it(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "sscard.db")
    with db.transaction(conn):
        ids = [
            outbox.enqueue(conn, "card.issued", issued(i), service_point="sp-1") for i in range(5)
        ]
    assert [e.id for e in outbox.pending(conn, 3)] == ids[:3]
    with db.transaction(conn):
        assert outbox.mark_delivered(conn, {ids[0]: 1, ids[1]: 2}) == 2
        outbox.mark_rejected(conn, ids[2], "scope_refused: /events/2/category: no agreement")
    assert [e.id for e in outbox.pending(conn)] == ids[3:]
    s = outbox.stats(conn)
    assert (s.pending, s.rejected, s.delivered) == (2, 1, 2)
    with db.transaction(conn):
        assert outbox.retry_rejected(conn) == 1
    assert [e.id for e in outbox.pending(conn)] == [ids[2], *ids[3:]]


def test_stats_flag_undelivered_events_older_than_24_hours(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "sscard.db")
    now = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    with db.transaction(conn):
        late = outbox.enqueue(
            conn,
            "card.issued",
            issued(1),
            service_point="sp-1",
            occurred_at=now - timedelta(hours=24, minutes=1),
        )
        outbox.enqueue(
            conn,
            "card.issued",
            issued(2),
            service_point="sp-1",
            occurred_at=now - timedelta(hours=23, minutes=59),
        )
        delivered = outbox.enqueue(
            conn,
            "card.issued",
            issued(3),
            service_point="sp-1",
            occurred_at=now - timedelta(days=3),
        )
        outbox.mark_delivered(conn, {delivered: 7})
    s = outbox.stats(conn, now)
    assert s.violation_count == 1
    assert [v.id for v in s.violations] == [late]
    assert s.oldest_age_seconds == pytest.approx(24 * 3600 + 60)
    assert json.loads(json.dumps(s.to_json()))["undelivered"] == 2


def test_pulled_block_list_is_last_writer_wins_in_any_order(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "sscard.db")

    def item(seq: int, category: str, at: str, payload: dict[str, object]) -> dict[str, object]:
        return pulled(seq, category, at, payload, service_point="sp-2")

    block = item(1, "card.blocked", "2024-06-01T10:00:00.000000Z", blocked("A0000001S"))
    unblock = item(
        2,
        "card.unblocked",
        "2024-06-01T09:00:00.000000Z",
        {"card_number": "A0000001S", "reason": "found"},
    )
    with db.transaction(conn):
        inbox.apply_pulled(conn, [unblock, block], 2)  # the older unblock arrives first
    assert inbox.blocked(conn, "A0000001S") is not None
    assert inbox.cursor(conn) == 2
    later = item(
        3,
        "card.unblocked",
        "2024-06-01T11:00:00.000000Z",
        {"card_number": "A0000001S", "reason": "found"},
    )
    with db.transaction(conn):
        inbox.apply_pulled(conn, [later], 3)
    assert inbox.blocked(conn, "A0000001S") is None


def test_holder_updates_wait_until_written_or_superseded(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "sscard.db")

    def change(seq: int, at: str, written: bool, name: str) -> dict[str, object]:
        payload = {
            "ssn": SSN,
            "card_number": "A0000001S",
            "changes": {"name": name},
            "written_to_card": written,
        }
        return pulled(seq, "holder.changed", at, payload, department="civil", service_point="sp-2")

    first = change(1, "2024-06-01T10:00:00.000000Z", False, "王五")
    with db.transaction(conn):
        inbox.apply_pulled(conn, [first, first], 1)  # a repeat is stored once
    [update] = inbox.pending_updates(conn, "A0000001S")
    assert update.changes == {"name": "王五"}
    with db.transaction(conn):
        inbox.apply_pulled(conn, [change(2, "2024-06-02T10:00:00.000000Z", True, "赵六")], 2)
    assert inbox.pending_updates(conn) == []
    assert not inbox.mark_applied(conn, update.event_id)  # already superseded


def test_enqueue_many_queues_every_event_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sscard.db"
    conn = open_store(path)
    events = [("card.issued", issued(i)) for i in range(5)]
    # one invalid event: every problem named by its index, nothing queued
    bad = [*events, ("card.blocked", {"card_number": "a-1", "reason": "lost", "on_card": False})]
    with pytest.raises(InvalidInput) as err:
        outbox.enqueue_many(conn, [*bad, ("card.stolen", {})], service_point="sp-1")
    assert {f for f, _ in err.value.problems} == {
        "events/5/payload/card_number",
        "events/6/category",
    }
    assert conn.execute("SELECT count(*) FROM outbox_events").fetchone()[0] == 0
    # alone: a transaction of its own, committed
    ids = outbox.enqueue_many(conn, events, service_point="sp-1")
    other = sqlite3.connect(path)  # what another process sees on disk
    assert [r[0] for r in other.execute("SELECT id FROM outbox_events ORDER BY seq")] == ids
    assert [e.payload for e in outbox.pending(conn)] == [p for _, p in events]
    # the insert fails half-way (a repeated id): none of the batch stays, alone ...
    monkeypatch.setattr(outbox, "new_event_id", lambda: "0190a6e2-7c1e-7d3a-9b1c-3f4e5d6c7b8a")
    with pytest.raises(db.IntegrityError):
        outbox.enqueue_many(conn, events, service_point="sp-1")
    assert other.execute("SELECT count(*) FROM outbox_events").fetchone()[0] == 5
    # ... or in a caller's transaction, whose own writes are kept if it goes on
    conn.execute("CREATE TABLE cards (number TEXT PRIMARY KEY)")
    with db.transaction(conn):
        conn.execute("INSERT INTO cards VALUES ('A0000001S')")
        with pytest.raises(db.IntegrityError):
            outbox.enqueue_many(conn, events, service_point="sp-1")
    assert other.execute("SELECT count(*) FROM cards").fetchone()[0] == 1
    assert other.execute("SELECT count(*) FROM outbox_events").fetchone()[0] == 5
    # and they roll back with the caller's change
    monkeypatch.setattr(outbox, "new_event_id", new_event_id)
    with pytest.raises(RuntimeError), db.transaction(conn):
        outbox.enqueue_many(conn, events, service_point="sp-1")
        raise RuntimeError("the change that caused them failed")
    assert other.execute("SELECT count(*) FROM outbox_events").fetchone()[0] == 5


def test_pending_reads_the_undelivered_index_not_every_delivered_event(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "sscard.db")
    outbox.enqueue(conn, "card.issued", issued(1), service_point="sp-1")
    statements: list[str] = []
    conn.raw.set_trace_callback(statements.append)  # type: ignore[attr-defined]
    outbox.pending(conn, 5)
    conn.raw.set_trace_callback(None)  # type: ignore[attr-defined]
    (query,) = [s for s in statements if s.startswith("SELECT")]
    plan = conn.execute(f"EXPLAIN QUERY PLAN {query}").fetchall()
    assert "USING INDEX outbox_events_undelivered" in str(plan), plan
