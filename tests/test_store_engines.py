"""Everything but issuance behaves alike on SQLite and PostgreSQL (issue 20).

The operator store, the audit trail and its checkpoints, the outbox, the inbox,
holder updates and the staff actions' records: each test runs on both engines
(``store_target``), against a real PostgreSQL server for the second.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sscard import audit, blocking, cardevents, db, holder_update
from sscard.applets.cos import EmulatedCard
from sscard.audit.log import GENESIS
from sscard.auth import OperatorStore, current_operator, login, logout, start_session
from sscard.auth.store import Operator
from sscard.card import SocialSecurityCard
from sscard.errors import BootstrapRefused, InvalidInput, LoginFailed, NotLoggedIn
from sscard.exchange import inbox, outbox
from sscard.pin import PinManager, staff_action
from sscard.transport import InProcessTransport
from tests.cardkit import PIN, SAMPLE_HOLDER, issued_card, pin_works, session
from tests.exchange_support import blocked, issued, pulled
from tests.storekit import opened

PASSWORD = "operator password 1"
DEV = audit.CheckpointSigner.development_signer()
SP = "sp-labour"


@pytest.fixture
def conn(store_target: str) -> Iterator[db.Connection]:
    """An initialized, empty store on the engine of ``store_target``."""
    with opened(store_target) as c:
        yield c


def _count(conn: db.Connection, table: str, where: str = "") -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table} {where}").fetchone()[0])


# --- operators and sessions -------------------------------------------------------


def test_operators_add_list_and_refuse_what_they_must(conn: db.Connection) -> None:
    store = OperatorStore(conn)
    assert store.is_empty()
    with pytest.raises(InvalidInput):
        store.add("a1", "A", "service", PASSWORD, bootstrap=True, cost=10)
    store.add("admin", "Li Na", "issuer", PASSWORD, bootstrap=True, cost=10)
    with pytest.raises(BootstrapRefused):
        store.add("intruder", "X", "issuer", PASSWORD, bootstrap=True, cost=10)
    store.add("zhang", "Zhang Wei", "service", PASSWORD, cost=10)
    with pytest.raises(InvalidInput) as exists:
        store.add("zhang", "Other", "kiosk", PASSWORD, cost=10)
    assert exists.value.problems[0][0] == "id"
    with pytest.raises(InvalidInput):
        store.add("li", "Li", "superuser", PASSWORD, cost=10)
    with pytest.raises(db.IntegrityError):  # the role's CHECK rule holds in the database too
        conn.execute(
            "INSERT INTO operators (id, name, role, credential, disabled, created, changed)"
            " VALUES ('x1', 'X', 'root', 'c', 0, 't', 't')"
        )
    assert [(o.id, o.role, o.disabled) for o in store.list()] == [
        ("admin", "issuer", False),
        ("zhang", "service", False),
    ]
    assert store.find("nobody") is None
    assert not conn.in_transaction


def test_login_sessions_and_disabling(
    conn: db.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = OperatorStore(conn)
    store.add("admin", "Li Na", "issuer", PASSWORD, bootstrap=True, cost=10)
    store.add("zhang", "Zhang Wei", "service", PASSWORD, cost=10)
    token = tmp_path / "operator.token"
    with pytest.raises(LoginFailed):
        login(store, "zhang", "wrong password", path=token)
    assert not token.exists()
    session = login(store, "zhang", PASSWORD, ttl=timedelta(minutes=30), path=token)
    assert session.operator.id == "zhang"
    assert current_operator(store, path=token).id == "zhang"
    # a session of the agent's kind (token handed back), then one expiring
    agent = start_session(store, "admin", PASSWORD, ttl=timedelta(minutes=1))
    assert store.session_operator(agent.token).id == "admin"
    later = datetime.now(UTC) + timedelta(minutes=2)
    monkeypatch.setattr("sscard.auth.store.now_utc", lambda: later)
    with pytest.raises(NotLoggedIn, match="expired"):
        store.session_operator(agent.token)
    monkeypatch.undo()
    # disabling ends every session of the operator, at once
    store.disable("zhang")
    with pytest.raises(NotLoggedIn):
        current_operator(store, path=token)
    with pytest.raises(LoginFailed):
        login(store, "zhang", PASSWORD, path=token)
    assert _count(conn, "operator_sessions", "WHERE operator_id = 'zhang'") == 0
    # a new password ends the sessions too
    store.set_password("admin", "new password 22", cost=10)
    with pytest.raises(NotLoggedIn):
        store.session_operator(agent.token)
    login(store, "admin", "new password 22", path=token)
    gone = logout(store, path=token)
    assert gone is not None and gone.id == "admin"
    assert not token.exists()
    logins = [
        (r.operator, r.outcome)
        for r in audit.records(conn, action="operator")
        if r.action == "operator.login"
    ]
    assert logins == [
        ("zhang", "refused"),
        ("zhang", "ok"),
        ("admin", "ok"),
        ("zhang", "refused"),
        ("admin", "ok"),
    ]
    assert audit.verify(conn).ok


# --- the audit trail --------------------------------------------------------------


def _trail(conn: db.Connection, n: int = 8) -> list[audit.AuditRecord]:
    op = Operator("admin", "Li Na", "issuer")
    recs = []
    for i in range(1, n + 1):
        recs.append(
            audit.record(
                "card.issue" if i % 2 else "pin.reset",
                operator=op if i < n else None,
                outcome="ok" if i != 3 else "failed",
                error=ValueError("x") if i == 3 else None,
                card_number=f"31011519900101{i:04d}",
                card_serial=bytes([0x31, 0, 0, 0, 0, 0, 0, i]),
                detail={"step": i, "first": i == 1, "note": None, "名": "值"},
                conn=conn,
            )
        )
        if i == 6:
            audit.checkpoint(conn, DEV)
    return recs


def test_audit_records_filters_and_chain(conn: db.Connection) -> None:
    recs = _trail(conn)
    assert [r.seq for r in recs] == list(range(1, 9))
    assert recs[0].prev_hash == GENESIS and recs[1].prev_hash == recs[0].hash
    stored = audit.all_records(conn)
    assert stored == recs  # the same values back, types included
    assert json.loads(stored[0].detail or "") == {
        "first": True,
        "note": None,
        "step": 1,
        "名": "值",
    }
    assert [r.seq for r in audit.records(conn, action="card")] == [1, 3, 5, 7]
    assert [r.seq for r in audit.records(conn, action="pin.reset")] == [2, 4, 6, 8]
    assert audit.records(conn, action="card.%") == []  # a wildcard is a plain character
    assert [r.seq for r in audit.records(conn, operator="admin", limit=3)] == [5, 6, 7]
    assert [r.seq for r in audit.records(conn, limit=2)] == [7, 8]
    assert [r.seq for r in audit.records(conn, card="310115199001010004")] == [4]
    assert [r.seq for r in audit.records(conn, card="3100000000000005")] == [5]
    assert [r.seq for r in audit.records(conn, card="3100000000000005".lower())] == [5]
    assert len(audit.records(conn, since="1h")) == 8
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert audit.records(conn, since=tomorrow) == []
    assert [r.seq for r in audit.records(conn, since="7d", action="card", limit=1)] == [7]
    (failed,) = [r for r in recs if r.outcome == "failed"]
    assert failed.error == "ValueError"
    assert audit.head(conn) == (8, recs[-1].hash)


def test_checkpoints_signed_and_automatic(conn: db.Connection) -> None:
    _trail(conn)
    (cp,) = audit.checkpoints(conn)
    assert (cp.id, cp.seq) == (1, 6) and DEV.valid(cp)
    assert audit.latest(conn) == cp
    report = audit.verify(conn, DEV)
    assert report.ok and report.checkpoints_verified == 1 and report.unsigned_tail == 2
    audit.use_signer(DEV)
    try:
        audit.record("card.read", operator=None, outcome="ok", conn=conn)  # read-only: none
        assert len(audit.checkpoints(conn)) == 1
        rec = audit.record("card.block", operator=None, outcome="ok", conn=conn)
    finally:
        audit.use_signer(None)
    newest = audit.latest(conn)
    assert newest is not None and (newest.seq, newest.hash, newest.id) == (rec.seq, rec.hash, 2)
    report = audit.verify(conn, DEV)
    assert report.ok and report.checkpoints_verified == 2 and report.unsigned_tail == 0


def test_audit_tables_are_append_only_and_a_fork_is_impossible(conn: db.Connection) -> None:
    recs = _trail(conn, 6)
    for sql in (
        "UPDATE audit_log SET outcome = 'ok' WHERE seq = 3",
        "DELETE FROM audit_log WHERE seq = 3",
        "UPDATE audit_checkpoints SET seq = 1",
        "DELETE FROM audit_checkpoints",
    ):
        with pytest.raises(db.IntegrityError, match="append-only"):
            conn.execute(sql)
    with pytest.raises(db.IntegrityError):  # a second record 3: seq is the key
        conn.execute(
            "INSERT INTO audit_log (seq, time, action, outcome, prev_hash, hash)"
            " VALUES (3, 't', 'card.issue', 'ok', ?, ?)",
            (recs[1].hash, "f" * 64),
        )
    assert audit.verify(conn).ok


def _drop_append_only(conn: db.Connection) -> None:
    """What an attacker with the database's credentials does first."""
    if conn.engine == db.SQLITE:
        for name in ("audit_log_no_update", "audit_log_no_delete"):
            conn.execute(f"DROP TRIGGER {name}")
    else:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")


@pytest.mark.parametrize(
    ("tamper", "broken_at", "words"),
    [
        ("UPDATE audit_log SET outcome = 'ok' WHERE seq = 3", 3, "content does not match"),
        ("DELETE FROM audit_log WHERE seq = 4", 4, "missing"),
        ("DELETE FROM audit_log WHERE seq >= 5", 5, "missing"),  # checkpoint 6 covers it
        ("UPDATE audit_log SET detail = '{' WHERE seq = 5", 5, "not valid JSON"),
    ],
)
def test_tampering_is_caught_on_either_engine(
    conn: db.Connection, tamper: str, broken_at: int, words: str
) -> None:
    _trail(conn)
    _drop_append_only(conn)
    conn.execute(tamper)
    report = audit.verify(conn, DEV)
    assert not report.ok
    assert report.problem is not None and report.problem.seq == broken_at
    assert words in str(report.problem.problem)


# --- the outbox -------------------------------------------------------------------


def test_outbox_commits_and_rolls_back_with_the_callers_change(conn: db.Connection) -> None:
    conn.execute("CREATE TABLE cards (number TEXT PRIMARY KEY)")
    with db.transaction(conn):
        conn.execute("INSERT INTO cards VALUES ('A1')")
        kept = outbox.enqueue(conn, "card.issued", issued(1), service_point=SP)
    with pytest.raises(RuntimeError), db.transaction(conn):
        conn.execute("INSERT INTO cards VALUES ('A2')")
        outbox.enqueue(conn, "card.issued", issued(2), service_point=SP)
        raise RuntimeError("the card refused")
    assert [e.id for e in outbox.pending(conn)] == [kept]
    assert _count(conn, "cards") == 1
    with pytest.raises(InvalidInput) as bad:
        outbox.enqueue(conn, "card.issued", {**issued(3), "pin": "123456"}, service_point=SP)
    assert bad.value.problems
    assert _count(conn, "outbox_events") == 1


def test_outbox_enqueue_many_all_or_none(
    conn: db.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [("card.issued", issued(i)) for i in range(5)]
    bad = [*events, ("card.blocked", {"card_number": "a-1", "reason": "lost", "on_card": False})]
    with pytest.raises(InvalidInput) as err:
        outbox.enqueue_many(conn, bad, service_point=SP)
    assert [p for p, _ in err.value.problems] == ["events/5/payload/card_number"]
    ids = outbox.enqueue_many(conn, events, service_point=SP)
    assert [e.id for e in outbox.pending(conn)] == ids
    assert [e.payload for e in outbox.pending(conn)] == [p for _, p in events]
    monkeypatch.setattr(outbox, "new_event_id", lambda: ids[0])  # a repeated id half-way
    with pytest.raises(db.IntegrityError):
        outbox.enqueue_many(conn, events, service_point=SP)
    with db.transaction(conn):  # inside a caller's transaction: a savepoint of it
        outbox.set_state(conn, "note", "kept")
        with pytest.raises(db.IntegrityError):
            outbox.enqueue_many(conn, events, service_point=SP)
    assert outbox.get_state(conn, "note") == "kept"
    assert _count(conn, "outbox_events") == 5


def test_outbox_delivery_states_stats_and_retry(conn: db.Connection) -> None:
    now = datetime.now(UTC)
    with db.transaction(conn):
        ids = [
            outbox.enqueue(
                conn,
                "card.issued",
                issued(i),
                service_point=SP,
                occurred_at=now - timedelta(hours=26.5 - i),
            )
            for i in range(6)
        ]
    assert [e.id for e in outbox.pending(conn, 2)] == ids[:2]
    with db.transaction(conn):
        assert outbox.mark_delivered(conn, {ids[0]: 11, ids[1]: 12}) == 2
        assert outbox.mark_delivered(conn, {ids[0]: 11}) == 0  # once
        outbox.mark_rejected(conn, ids[2], "scope_refused: " + "x" * 2000)
        outbox.record_failure(conn, ids[3:5], "PlatformUnavailable")
        outbox.set_state(conn, "last_push_at", "2024-01-01T00:00:00Z")
        outbox.set_state(conn, "last_push_at", "2024-01-02T00:00:00Z")
    assert [e.id for e in outbox.pending(conn)] == ids[3:]
    rows = dict(conn.execute("SELECT id, attempts FROM outbox_events").fetchall())
    assert [rows[i] for i in ids] == [1, 1, 1, 1, 1, 0]
    (seq, reason) = conn.execute(
        "SELECT platform_seq, last_error FROM outbox_events WHERE id IN (?, ?) ORDER BY seq",
        (ids[1], ids[2]),
    ).fetchall()
    assert seq[0] == 12 and len(reason[1]) == 1000
    s = outbox.stats(conn)
    assert (s.pending, s.rejected, s.delivered) == (3, 1, 2)
    assert s.violation_count == 1  # only ids[2] is undelivered for more than 24 h
    assert [v.id for v in s.violations] == [ids[2]]
    assert s.last_push_at == "2024-01-02T00:00:00Z"
    assert s.oldest_age_seconds == pytest.approx(24.5 * 3600, abs=60)
    assert json.loads(json.dumps(s.to_json()))["undelivered"] == 4
    with db.transaction(conn):
        assert outbox.retry_rejected(conn) == 1
    assert [e.id for e in outbox.pending(conn)] == ids[2:]


# --- the inbox and holder updates -------------------------------------------------


def test_inbox_block_list_is_last_writer_wins(conn: db.Connection) -> None:
    assert inbox.cursor(conn) == 0
    block = pulled(
        1,
        "card.blocked",
        "2024-06-01T10:00:00.000000Z",
        {**blocked("A0000001S"), "card_serial": "0011223344556677"},
    )
    unblock = pulled(
        2, "card.unblocked", "2024-06-01T09:00:00.000000Z", {"card_number": "A0000001S"}
    )
    other = pulled(3, "pin.reset", "2024-06-01T09:00:00.000000Z", {})
    with db.transaction(conn):
        applied = inbox.apply_pulled(conn, [unblock, block, other], 3)
    assert (applied.blocked, applied.unblocked, applied.ignored) == (1, 1, 1)
    entry = inbox.blocked(conn, "A0000001S")
    assert entry is not None and entry.card_serial == "0011223344556677"
    again = pulled(4, "card.blocked", "2024-06-01T12:00:00.000000Z", blocked("A0000001S"))
    with db.transaction(conn):
        inbox.apply_pulled(conn, [again], 4)  # no serial this time: the known one stays
    entry = inbox.blocked(conn, "A0000001S")
    assert entry is not None and entry.card_serial == "0011223344556677"
    assert [e.card_number for e in inbox.block_list(conn)] == ["A0000001S"]
    later = pulled(5, "card.unblocked", "2024-06-01T13:00:00.000000Z", {"card_number": "A0000001S"})
    with db.transaction(conn):
        inbox.apply_pulled(conn, [later], 5)
    assert inbox.blocked(conn, "A0000001S") is None and inbox.cursor(conn) == 5


def _change(seq: int, at: str, written: bool, changes: dict[str, Any]) -> dict[str, Any]:
    payload = {
        "ssn": SAMPLE_HOLDER["ssn"],
        "card_number": SAMPLE_HOLDER["card_number"],
        "changes": changes,
        "written_to_card": written,
    }
    return pulled(seq, "holder.changed", at, payload)


def test_inbox_holder_updates_wait_until_written_or_superseded(conn: db.Connection) -> None:
    first = _change(1, "2024-06-01T10:00:00.000000Z", False, {"name": "王五"})
    with db.transaction(conn):
        inbox.apply_pulled(conn, [first, first], 1)  # a repeat is stored once
    [update] = inbox.pending_updates(conn, SAMPLE_HOLDER["card_number"])
    assert update.changes == {"name": "王五"} and update.ssn == SAMPLE_HOLDER["ssn"]
    assert inbox.pending_updates(conn, "X0000000X") == []
    with db.transaction(conn):
        inbox.apply_pulled(conn, [_change(2, "2024-06-02T10:00:00.000000Z", True, {})], 2)
    assert inbox.pending_updates(conn) == []
    assert not inbox.mark_applied(conn, update.event_id)  # already superseded


def _card_session(profile: str = "national-3") -> tuple[SocialSecurityCard, EmulatedCard]:
    """A session (development keys) on a freshly issued emulated card, and the card."""
    emulated = issued_card(profile)
    transport = InProcessTransport(emulated)
    transport.connect()
    return session(transport, profile), emulated


def test_holder_update_written_and_recorded(conn: db.Connection) -> None:
    change = _change(1, "2026-11-27T09:00:00Z", False, {"name": "张三丰"})
    with db.transaction(conn):
        inbox.apply_pulled(conn, [change], 1)
    card, _emulated = _card_session()
    op = Operator("zhang", "Zhang Wei", "service")
    done = holder_update.apply_pending(card, conn=conn, operator=op, service_point=SP)
    assert [d["fields"] for d in done] == [["name"]]
    assert card.read_holder()["name"] == "张三丰"
    assert inbox.pending_updates(conn) == []
    (event,) = outbox.pending(conn)
    assert event.category == "holder.changed" and event.payload["written_to_card"] is True
    (rec,) = audit.records(conn, action="holder.update")
    assert (rec.outcome, rec.operator, json.loads(rec.detail or "")) == (
        "ok",
        "zhang",
        {"fields": "name"},
    )


# --- card actions, recorded ---------------------------------------------------------


def test_recorded_action_commits_everything_or_nothing(conn: db.Connection) -> None:
    op = Operator("zhang", "Zhang Wei", "service")
    conn.execute("CREATE TABLE marks (card TEXT PRIMARY KEY)")
    common: dict[str, Any] = {
        "conn": conn,
        "operator": op,
        "service_point": SP,
        "card_serial": "0011223344556677",
        "card_number": "A0000001S",
    }
    ids = cardevents.recorded_action(
        "card.block",
        lambda: None,
        events=[("card.blocked", blocked("A0000001S"))],
        writes=lambda c: c.execute("INSERT INTO marks VALUES ('A0000001S')"),
        detail={"level": "app"},
        **common,
    )
    assert [e.id for e in outbox.pending(conn)] == ids
    # the writes fail after the card said yes: no event, no ok record, no mark; the
    # refusal is audited
    with pytest.raises(db.IntegrityError):
        cardevents.recorded_action(
            "card.block",
            lambda: None,
            events=[("card.blocked", blocked("A0000001S"))],
            writes=lambda c: c.execute("INSERT INTO marks VALUES ('A0000001S')"),
            **common,
        )
    assert not conn.in_transaction
    # the card fails: the failure is recorded, nothing else
    failures: list[str] = []

    def refuse() -> None:
        raise ValueError("6985")

    with pytest.raises(ValueError):
        cardevents.recorded_action(
            "card.unblock",
            refuse,
            events=[("card.unblocked", {"card_number": "A0000001S"})],
            on_failure=lambda exc: failures.append(type(exc).__name__),
            **common,
        )
    assert failures == ["ValueError"]
    assert [e.id for e in outbox.pending(conn)] == ids
    assert _count(conn, "marks") == 1
    assert [(r.action, r.outcome, r.error) for r in audit.all_records(conn)] == [
        ("card.block", "ok", None),
        ("card.block", "failed", "IntegrityError"),
        ("card.unblock", "failed", "ValueError"),
    ]
    assert audit.verify(conn).ok


def test_staff_actions_are_recorded_in_the_store(conn: db.Connection) -> None:
    op = Operator("zhang", "Zhang Wei", "service")
    card, emulated = _card_session()
    result = blocking.block(
        card, level="app", reason="lost", conn=conn, operator=op, service_point=SP
    )
    assert result["lifecycle"] == "APP_BLOCKED_TEMPORARY"
    blocking.unblock(card, conn=conn, operator=op, service_point=SP)
    manager = PinManager(card)
    staff_action(manager, "pin.reset", conn=conn, operator=op, service_point=SP, new_pin="246802")
    assert pin_works(emulated, "246802") and not pin_works(emulated, PIN)
    assert [e.category for e in outbox.pending(conn)] == [
        "card.blocked",
        "card.unblocked",
        "pin.reset",
    ]
    assert {e.payload["ssn"] for e in outbox.pending(conn)} == {SAMPLE_HOLDER["ssn"]}
    assert [(r.action, r.outcome) for r in audit.all_records(conn)] == [
        ("card.block", "ok"),
        ("card.unblock", "ok"),
        ("pin.reset", "ok"),
    ]
    assert audit.verify(conn).ok


# --- values the engines treat differently -----------------------------------------


def test_values_one_engine_would_refuse_are_answered_alike(conn: db.Connection) -> None:
    store = OperatorStore(conn)
    store.add("admin", "Li Na", "issuer", PASSWORD, bootstrap=True, cost=10)
    audit.record("card.issue", operator=None, outcome="ok", conn=conn)
    # a NUL cannot be in a PostgreSQL text: an id with one is simply nobody, on both
    assert store.find("ad\x00min") is None
    with pytest.raises(LoginFailed):
        start_session(store, "ad\x00min", PASSWORD)
    with pytest.raises(InvalidInput) as bad:
        store.add("bob", "Bob\x00", "service", PASSWORD, cost=10)
    assert bad.value.problems[0][0] == "name"
    # LIKE ignores case on SQLite only: action names are matched in lower case on both
    assert [r.seq for r in audit.records(conn, action="CARD")] == [1]
    assert [r.seq for r in audit.records(conn, action="Card.Issue")] == [1]
    # SQLite takes a negative LIMIT as none, PostgreSQL refuses it; a huge one overflows
    with pytest.raises(InvalidInput):
        audit.records(conn, limit=-1)
    assert [r.seq for r in audit.records(conn, limit=1 << 64)] == [1, 2]  # 2: the refusal
    assert audit.records(conn, limit=0) == []
    assert not conn.in_transaction
