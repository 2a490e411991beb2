"""Issuing cards through the library: plan, store, resume after tearing at every APDU."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from sscard import errors
from sscard.applets.cos import EmulatedCard
from sscard.applets.factory import new_memory_card
from sscard.card import SocialSecurityCard
from sscard.db import open_store as open_db
from sscard.db import transaction
from sscard.exchange import outbox
from sscard.issuance import store
from sscard.issuance.batch import close_abandoned
from sscard.issuance.plan import VerificationFailed
from sscard.issuance.service import (
    CardAlreadyIssued,
    HolderHasActiveCard,
    issue_card,
)
from sscard.pinpolicy import PinPolicyError
from sscard.transport import InProcessTransport
from tests.cardkit import PIN, SAMPLE_HOLDER, session


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    return open_db(tmp_path / "sscard.db")


class Counting(InProcessTransport):
    """An in-process transport that counts APDUs."""

    sent = 0
    apdus: list[bytes]

    def transmit(self, apdu: bytes) -> bytes:
        self.sent += 1
        self.apdus = [*getattr(self, "apdus", []), bytes(apdu)]
        return super().transmit(apdu)

    def reset_count(self) -> None:
        self.sent, self.apdus = 0, []


def _session(card: EmulatedCard) -> tuple[SocialSecurityCard, Counting]:
    transport = Counting(card)
    transport.connect()
    return session(transport, card.profile.name), transport


GET_CHIP_SERIAL = bytes.fromhex("80CA000208")


def _issue(card: EmulatedCard, conn: sqlite3.Connection, **kw: Any) -> Any:
    c, _ = _session(card)
    holder = kw.pop("holder", SAMPLE_HOLDER)
    return issue_card(
        c, holder, pin=kw.pop("pin", PIN), conn=conn, operator=None, service_point="sp-test", **kw
    )


@pytest.mark.parametrize("profile", ["national-3", "national-2"])
def test_issue_records_card_audit_and_event_together(
    conn: sqlite3.Connection, profile: str
) -> None:
    card = new_memory_card(profile)
    result = _issue(card, conn)
    assert result.status == "issued"
    row = store.card(conn, result.serial)
    assert row is not None and row.status == "issued" and row.ssn == SAMPLE_HOLDER["ssn"]
    assert row.key_versions["SSSE.EAK.01"] == 1 and "MF.TK.00" not in row.key_versions
    events = outbox.pending(conn)
    assert [e.category for e in events] == ["card.issued"]
    assert events[0].payload["card_serial"] == result.serial
    audit_rows = conn.execute("SELECT action, outcome, card_serial FROM audit_log").fetchall()
    assert ("card.issue", "ok", result.serial) in audit_rows
    # Nothing secret in the store: no PIN anywhere in the database file.
    dump = "\n".join(conn.raw.iterdump())
    assert PIN not in dump


def test_second_run_is_idempotent(conn: sqlite3.Connection) -> None:
    card = new_memory_card()
    _issue(card, conn)
    c, transport = _session(card)
    transport.reset_count()  # the session's recognition is not the issuance's doing
    result = issue_card(
        c, SAMPLE_HOLDER, pin=PIN, conn=conn, operator=None, service_point="sp-test"
    )
    assert result.status == "already-issued"
    assert transport.apdus == [GET_CHIP_SERIAL]  # its serial read, nothing else
    assert len(outbox.pending(conn)) == 1


def test_invalid_holder_or_pin_touches_no_card(conn: sqlite3.Connection) -> None:
    card = new_memory_card()
    c, transport = _session(card)
    transport.reset_count()  # the session's recognition is not the issuance's doing
    bad = {**SAMPLE_HOLDER, "ssn": "110105194912310021", "gender": "1", "expiry_date": "2020-01-01"}
    with pytest.raises(errors.InvalidInput) as info:
        issue_card(c, bad, pin=PIN, conn=conn, operator=None, service_point="sp-test")
    fields = {f for f, _ in info.value.problems}
    assert {"ssn", "expiry_date"} <= fields
    with pytest.raises(errors.InvalidInput, match="6 digits"):
        issue_card(c, SAMPLE_HOLDER, pin="12345", conn=conn, operator=None, service_point="sp-test")
    assert transport.sent == 0
    assert card.state.lifecycle == "BLANK"
    assert store.cards(conn) == []


def test_pin_policy_names_the_rule() -> None:
    from sscard.pinpolicy import PinPolicy

    policy = PinPolicy()
    for pin, rule in [
        ("111111", "same-digits"),
        ("123456", "sequence"),
        ("654321", "sequence"),
        ("491231", "birth-date"),
        ("12a456", "length"),
    ]:
        with pytest.raises(PinPolicyError) as info:
            policy.check(pin, birth_date="1949-12-31")
        assert info.value.rule == rule
        assert pin not in str(info.value)
    with pytest.raises(PinPolicyError, match="previous"):
        policy.check("802461", previous="802461")
    policy.check("802461", birth_date="1949-12-31", previous="135790")
    for _ in range(50):
        policy.check(policy.random(birth_date="1949-12-31"), birth_date="1949-12-31")


def test_second_card_for_a_holder_needs_replace(conn: sqlite3.Connection) -> None:
    first = _issue(new_memory_card(), conn)
    second_card = new_memory_card()
    with pytest.raises(HolderHasActiveCard, match="already has an active card") as refused:
        _issue(second_card, conn)
    assert "replace" in str(refused.value.hint)  # the CLI's hint names --replace
    assert second_card.state.lifecycle == "BLANK"
    result = _issue(second_card, conn, replace=True, replace_reason="lost")
    assert result.replaced == first.serial
    assert store.card(conn, first.serial).status == "replaced"  # type: ignore[union-attr]
    assert store.active_card(conn, SAMPLE_HOLDER["ssn"]).serial == result.serial  # type: ignore[union-attr]
    categories = [e.category for e in outbox.pending(conn)]
    assert categories == ["card.issued", "card.replaced", "card.blocked"]


def test_an_issued_card_is_not_issued_again(conn: sqlite3.Connection, tmp_path: Path) -> None:
    card = new_memory_card()
    _issue(card, conn)
    other = {**SAMPLE_HOLDER, "card_number": "C0000001Y"}
    with pytest.raises(CardAlreadyIssued, match="already issued"):
        _issue(card, conn, holder=other)
    elsewhere = open_db(tmp_path / "other.db")  # a store that never saw this card
    with pytest.raises(CardAlreadyIssued, match="not by this issuance store"):
        _issue(card, elsewhere)


def test_failed_verification_is_never_recorded_as_issued(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = new_memory_card()

    def wrong(self: SocialSecurityCard, ef: str, no: int) -> bytes:
        return b"\x00"

    monkeypatch.setattr(SocialSecurityCard, "read_record", wrong)
    with pytest.raises(VerificationFailed):
        _issue(card, conn)
    row = store.cards(conn)[0]
    assert row.status == "in_progress" and row.last_error == "VerificationFailed"
    assert outbox.pending(conn) == []
    assert ("card.issue", "failed") in conn.execute(
        "SELECT action, outcome FROM audit_log"
    ).fetchall()


def _apdus_of_one_issuance(tmp_path: Path) -> int:
    card = new_memory_card()
    c, transport = _session(card)
    conn = open_db(tmp_path / "count.db")
    issue_card(c, SAMPLE_HOLDER, pin=PIN, conn=conn, operator=None, service_point="sp-test")
    return transport.sent


@pytest.mark.parametrize("at_end", [False, True], ids=["before-writes", "after-writes"])
def test_tear_at_every_apdu_then_rerun_finishes(tmp_path: Path, at_end: bool) -> None:
    total = _apdus_of_one_issuance(tmp_path)
    assert total > 100
    for index in range(1, total + 1):
        conn = open_db(tmp_path / f"t{index}-{at_end}.db")
        card = new_memory_card()
        card.arm_tear(index, writes=99 if at_end else 0)
        with pytest.raises(errors.CardRemoved):
            _issue(card, conn)
        # Torn: the store must not claim the card is issued.
        assert all(r.status == "in_progress" for r in store.cards(conn)), f"tear at APDU {index}"
        assert outbox.pending(conn) == []
        card.tear = None
        result = _issue(card, conn)  # the same command again, same card
        assert result.status in ("issued", "resumed"), f"tear at APDU {index}"
        assert store.card(conn, result.serial).status == "issued"  # type: ignore[union-attr]
        assert card.state.lifecycle == "ISSUED"
        assert [e.category for e in outbox.pending(conn)] == ["card.issued"]
        c, _ = _session(card)
        assert c.read_holder() == SAMPLE_HOLDER
        conn.close()


def _begin(conn: sqlite3.Connection, serial: str, ssn: str, held_by: str | None) -> None:
    """What a run does before its first APDU; a run killed then leaves just this."""
    store.begin(
        conn,
        serial=serial,
        card_number="A0000001S",
        ssn=ssn,
        profile="national-3",
        key_versions={},
        operator=None,
        replaces=None,
        batch_key=None,
        held_by=held_by,
    )


def _open_attempts(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT serial FROM issuance_attempts WHERE finished_at IS NULL")
    return {serial for (serial,) in rows}


def test_only_gone_in_memory_cards_are_abandoned(conn: sqlite3.Connection) -> None:
    host = socket.gethostname()
    dead = f"{host}:{_finished_pid()}:"
    ssn = SAMPLE_HOLDER["ssn"]
    _begin(conn, "00000000000000A1", ssn, dead)  # in memory, its process ended
    _begin(conn, "00000000000000B2", "110105194912310029", store.process_id())  # alive: us
    _begin(conn, "00000000000000C3", "110105194912310029", None)  # physical: may come back
    _begin(conn, "00000000000000D4", "110105194912310029", "elsewhere:1:1")  # cannot tell
    assert store.process_gone(dead) and store.process_gone(f"{host}:{os.getpid()}:1")  # reused
    assert not store.process_gone(store.process_id()) and not store.process_gone("junk")

    closed = close_abandoned(conn, None)
    assert [r.serial for r in closed] == ["00000000000000A1"]
    statuses = {r.serial: r.status for r in store.cards(conn)}
    assert statuses == {
        "00000000000000A1": "abandoned",
        "00000000000000B2": "in_progress",
        "00000000000000C3": "in_progress",
        "00000000000000D4": "in_progress",
    }
    gone = store.card(conn, "00000000000000A1")
    assert gone is not None and "in-memory" in (gone.closed_reason or "")
    assert "00000000000000A1" not in _open_attempts(conn)
    (detail,) = conn.execute(
        "SELECT detail FROM audit_log WHERE card_serial = '00000000000000A1' "
        "AND action = 'card.issue' AND outcome = 'failed' AND error = 'CardAbandoned'"
    ).fetchone()
    assert json.loads(detail)["status"] == "abandoned"
    assert close_abandoned(conn, None) == []  # nothing twice

    # Were the card to show up after all, it is issued like any other.
    card = new_memory_card(serial=bytes.fromhex("00000000000000A1"))
    assert _issue(card, conn).status == "issued"
    assert store.card(conn, "00000000000000A1").status == "issued"  # type: ignore[union-attr]


def _finished_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_issuing_closes_the_killed_attempts_of_the_holder(conn: sqlite3.Connection) -> None:
    _begin(conn, "00000000000000C3", SAMPLE_HOLDER["ssn"], None)  # killed on a physical card
    _begin(conn, "00000000000000E5", "110105194912310029", None)  # another holder's card
    result = _issue(new_memory_card(), conn)  # the holder gets another card
    assert result.status == "issued"
    assert _open_attempts(conn) == {"00000000000000E5"}
    (outcome, error) = conn.execute(
        "SELECT outcome, error FROM issuance_attempts WHERE serial = '00000000000000C3'"
    ).fetchone()
    assert outcome == "superseded" and result.serial in error
    # The physical card's row stays resumable: it may come back.
    assert store.card(conn, "00000000000000C3").status == "in_progress"  # type: ignore[union-attr]


def test_an_older_issuance_table_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE issuance_cards (serial TEXT PRIMARY KEY, card_number TEXT NOT NULL,"
            " ssn TEXT NOT NULL, profile TEXT NOT NULL, key_versions TEXT NOT NULL,"
            " status TEXT NOT NULL CHECK (status IN ('in_progress', 'issued', 'replaced')),"
            " operator TEXT, started_at TEXT NOT NULL, issued_at TEXT, updated_at TEXT NOT NULL,"
            " replaces TEXT, batch_key TEXT, last_error TEXT)"
        )
        db.execute("CREATE INDEX issuance_cards_ssn ON issuance_cards (ssn, status)")
        db.execute(
            "INSERT INTO issuance_cards VALUES ('00000000000000F6', 'A1', '1', 'national-3', '{}',"
            " 'in_progress', NULL, 't', NULL, 't', NULL, 'k', 'CardRemoved')"
        )
        db.commit()
    conn = open_db(path)
    row = store.card(conn, "00000000000000F6")
    assert row is not None and (row.last_error, row.held_by) == ("CardRemoved", None)
    with transaction(conn):
        store.mark_abandoned(conn, "00000000000000F6", "test")
    assert store.cards(conn, status="abandoned")[0].closed_reason == "test"
    indexes = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"issuance_cards_ssn", "issuance_cards_batch"} <= indexes
    conn.close()
    open_db(path).close()  # a second open finds nothing to upgrade


def test_the_stored_forms_of_holder_data_are_recorded(conn: sqlite3.Connection) -> None:
    """Ethnicity "01" and a lower-case x are normalized for the store and the event too."""
    holder = {**SAMPLE_HOLDER, "ssn": SAMPLE_HOLDER["ssn"].lower(), "ethnicity": "01"}
    assert holder["ssn"] != SAMPLE_HOLDER["ssn"]
    result = _issue(new_memory_card(), conn, holder=holder)
    row = store.card(conn, result.serial)
    assert row is not None and row.ssn == SAMPLE_HOLDER["ssn"]
    assert outbox.pending(conn)[0].payload["ssn"] == SAMPLE_HOLDER["ssn"]
