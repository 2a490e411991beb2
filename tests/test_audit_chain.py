"""The audit trail catches edited, deleted, reordered and rewritten records (art. 14).

Every tamper here is done the way an attacker would: straight in the SQLite
file, with the append-only triggers dropped first.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sscard import audit, db
from sscard.audit.log import record_hash
from sscard.auth import OperatorStore
from sscard.db import open_store as connect
from sscard.keys.software_store import ScryptParams, SoftwareKeyStore
from tests.operatorkit import Installation, record

DEV = audit.CheckpointSigner.development_signer()


@pytest.fixture
def trail(installation: Installation) -> Path:
    """8 records; a signed checkpoint after record 6."""
    op = installation.add("admin", "issuer")
    for i in range(1, 9):
        record(
            "card.issue", operator=op, outcome="ok", card_number=f"31011519900101{i:04d}",
            card_serial=bytes([0x31, 0, 0, 0, 0, 0, 0, i]),
        )  # fmt: skip
        if i == 6:
            with connect() as conn:
                audit.checkpoint(conn, DEV)
    return installation.store


def _tamper(store: Path, *sql: str) -> None:
    raw = sqlite3.connect(store)
    raw.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    raw.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    raw.execute("DROP TRIGGER IF EXISTS audit_checkpoints_no_delete")
    for statement in sql:
        raw.execute(statement)
    raw.commit()
    raw.close()


def _verify(signer: audit.CheckpointSigner | None = DEV) -> audit.VerifyReport:
    conn = connect()
    try:
        return audit.verify(conn, signer)
    finally:
        conn.close()


def test_intact_trail_verifies(trail: Path) -> None:
    report = _verify()
    assert report.ok and report.records == 8 and report.checkpoints_verified == 1
    assert report.last_verified_seq == 6 and report.unsigned_tail == 2


def test_sscard_itself_cannot_update_or_delete_records(trail: Path) -> None:
    conn = connect()
    with pytest.raises(db.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit_log SET outcome = 'failed' WHERE seq = 1")
    with pytest.raises(db.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit_log WHERE seq = 8")


@pytest.mark.parametrize(
    ("sql", "first_broken"),
    [
        (["UPDATE audit_log SET outcome = 'refused' WHERE seq = 3"], 3),
        (["UPDATE audit_log SET card_number = '310115199001019999' WHERE seq = 7"], 7),
        (["UPDATE audit_log SET operator = 'someone' WHERE seq = 1"], 1),
        (["UPDATE audit_log SET time = '2020-01-01T00:00:00.000000Z' WHERE seq = 5"], 5),
    ],
    ids=["outcome", "card-after-checkpoint", "operator", "time"],
)
def test_an_edited_record_is_named(trail: Path, sql: list[str], first_broken: int) -> None:
    _tamper(trail, *sql)
    report = _verify()
    assert not report.ok and report.problem is not None
    assert report.problem.seq == first_broken
    assert "edited" in report.problem.problem


@pytest.mark.parametrize("seq", [1, 4, 7])
def test_a_deleted_record_is_named(trail: Path, seq: int) -> None:
    _tamper(trail, f"DELETE FROM audit_log WHERE seq = {seq}")
    report = _verify(None)  # the chain alone catches it
    assert report.problem is not None and report.problem.seq == seq
    assert "missing" in report.problem.problem


def test_deleting_the_newest_records_a_checkpoint_covers_is_caught(trail: Path) -> None:
    _tamper(trail, "DELETE FROM audit_log WHERE seq >= 5")
    report = _verify()
    assert report.problem is not None and report.problem.seq == 5


def test_swapped_records_are_caught(trail: Path) -> None:
    cols = "time, operator, role, action, card_serial, card_number, outcome, error, detail"
    sets = ", ".join(f"{c} = (SELECT {c} FROM audit_log WHERE seq = 4)" for c in cols.split(", "))
    sets += ", prev_hash = (SELECT prev_hash FROM audit_log WHERE seq = 4)"
    sets += ", hash = (SELECT hash FROM audit_log WHERE seq = 4)"
    _tamper(
        trail,
        "CREATE TABLE keep AS SELECT * FROM audit_log WHERE seq = 3",
        f"UPDATE audit_log SET {sets} WHERE seq = 3",
        f"UPDATE audit_log SET {sets.replace('audit_log WHERE seq = 4', 'keep')} WHERE seq = 4",
    )
    report = _verify(None)
    assert report.problem is not None and report.problem.seq == 3


def test_renumbered_records_are_caught(trail: Path) -> None:
    _tamper(
        trail,
        "UPDATE audit_log SET seq = 100 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 100",
    )
    report = _verify(None)
    assert report.problem is not None and report.problem.seq == 2


def test_an_inserted_record_is_caught(trail: Path) -> None:
    raw = sqlite3.connect(trail)
    raw.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    for seq in range(8, 4, -1):
        raw.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", (seq + 1, seq))
    raw.execute(
        "INSERT INTO audit_log SELECT 5, time, operator, role, 'card.block', card_serial, "
        "card_number, outcome, error, detail, hash, hash FROM audit_log WHERE seq = 4"
    )
    raw.commit()
    raw.close()
    report = _verify(None)
    assert report.problem is not None and report.problem.seq == 5


def _rewrite_chain_after_editing(store: Path, seq: int) -> None:
    """What a careful attacker does: edit, then re-compute every later hash."""
    _tamper(store, f"UPDATE audit_log SET outcome = 'refused' WHERE seq = {seq}")
    raw = sqlite3.connect(store)
    rows = [audit.AuditRecord(*r) for r in raw.execute("SELECT * FROM audit_log ORDER BY seq")]
    prev = rows[seq - 2].hash if seq > 1 else "0" * 64
    for rec in rows[seq - 1 :]:
        new = record_hash(prev, rec.content())
        raw.execute(
            "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, new, rec.seq)
        )
        prev = new
    # …and makes the checkpoints name the new hashes (without the key they cannot re-sign)
    raw.execute("DROP TRIGGER IF EXISTS audit_checkpoints_no_update")
    raw.execute("UPDATE audit_checkpoints SET hash = (SELECT hash FROM audit_log WHERE seq = 6)")
    raw.commit()
    raw.close()


def test_a_recomputed_chain_fools_the_chain_but_not_the_signed_checkpoint(trail: Path) -> None:
    _rewrite_chain_after_editing(trail, 2)
    assert _verify(None).ok  # the chain alone cannot tell: why checkpoints are signed
    report = _verify()
    assert report.problem is not None and report.problem.seq == 6
    assert "bad signature" in report.problem.problem


def test_a_checkpoint_forged_without_the_key_is_caught(trail: Path) -> None:
    _rewrite_chain_after_editing(trail, 2)
    forger_store = SoftwareKeyStore(kind="root")
    from sscard.keys.entry import KeyEntry

    forger_store.add(
        KeyEntry(ref="AUDIT/CPK/01", version=1, algorithm="3des", levels=0, depth=0,
                 value=bytes(range(16)))
    )  # fmt: skip
    forger = audit.CheckpointSigner.from_store(forger_store)
    _tamper(trail, "DELETE FROM audit_checkpoints")
    conn = connect()
    audit.checkpoint(conn, forger)
    conn.close()
    report = _verify()
    assert report.problem is not None
    assert "not in this key store" in report.problem.problem


def test_the_tail_after_the_last_checkpoint_is_reported(trail: Path) -> None:
    report = _verify()
    assert report.unsigned_tail == 2
    assert _verify(None).notes  # says the signatures were not checked


def test_checkpoint_key_in_a_key_store_file_and_its_rotation(
    installation: Installation, tmp_path: Path
) -> None:
    ks_path = tmp_path / "centre.ks"
    ks = SoftwareKeyStore.create(ks_path, "centre passphrase", scrypt=ScryptParams(n=2**10))
    first = audit.init_key(ks)
    op = installation.add("admin", "issuer")
    record("keys.init", operator=op, outcome="ok")
    conn = connect()
    audit.checkpoint(conn, audit.CheckpointSigner.from_store(ks))
    reopened = SoftwareKeyStore.open(ks_path, "centre passphrase")
    second = audit.init_key(reopened)
    assert (first.version, second.version) == (1, 2)
    record("keys.rotate", operator=op, outcome="ok")
    signer = audit.CheckpointSigner.from_store(SoftwareKeyStore.open(ks_path, "centre passphrase"))
    audit.checkpoint(conn, signer)
    report = audit.verify(conn, signer)
    assert report.ok and report.checkpoints_verified == 2
    assert not audit.verify(conn, DEV).ok  # another key: refused
    conn.close()
    assert repr(signer).count("key_id") == 1 and first.value.hex() not in repr(signer)


WRITER = """
import sys
from sscard import audit
from sscard.auth import OperatorStore
operators = OperatorStore.open()
op = operators.get("admin")
for i in range(int(sys.argv[2])):
    audit.record("card.read", operator=op, outcome="ok", card_number=sys.argv[1] + str(i),
                 conn=operators.conn)
"""


def test_concurrent_writers_in_several_processes_keep_one_intact_chain(
    installation: Installation,
) -> None:
    installation.add("admin", "issuer")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, f"w{n}-", "25"]) for n in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    report = _verify(None)
    assert report.ok and report.records == 100
    store = OperatorStore.open()
    numbers = {r.card_number for r in audit.records(store.conn, action="card.read")}
    assert len(numbers) == 100
