"""A backup taken while batch issuance writes restores to a consistent state (art. 15):
every issued card has its audit record and its outbox event, and the audit chain holds."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from sscard import audit, backup, db
from sscard.db import open_store as connect
from sscard.keys.software_store import ScryptParams
from tests.operatorkit import Installation

ROOT = Path(__file__).resolve().parents[1]
PW = "backup passphrase 1"

# The issuance pattern of sscard.issuance.service: card row, outbox event and audit
# record in one BEGIN IMMEDIATE transaction, card after card.
BATCH = """
import sys
from sscard import audit
from sscard.auth import OperatorStore
from sscard.db import open_store
from sscard.exchange import outbox
from sscard.issuance import store
from sscard.layout.cardno import complete
from sscard.layout.gb11643 import check_digit

conn = open_store()
store.ensure_schema(conn); outbox.ensure_schema(conn); audit.ensure_schema(conn)
op = OperatorStore(conn).get("admin")
for i in range(int(sys.argv[1])):
    serial, number = f"31{i:014X}", complete(f"A{i:07d}")
    body = f"11010119900101{i:03d}"  # one holder per card: one active card per holder
    SSN = body + check_digit(body)
    store.begin(conn, serial=serial, card_number=number, ssn=SSN, profile="national-3",
                key_versions={}, operator=op.id, replaces=None, batch_key=None)
    conn.execute("BEGIN IMMEDIATE")
    store.mark_issued(conn, serial)
    outbox.enqueue(conn, "card.issued", {"card_serial": serial, "card_number": number,
                   "ssn": SSN, "profile": "national-3"}, service_point="sp-01")
    audit.record("card.issue", operator=op, outcome="ok", card_serial=serial,
                 card_number=number, conn=conn)
    conn.execute("COMMIT")
"""


def _issued(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT count(*) FROM issuance_cards WHERE status = 'issued'")
        return int(row.fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_backup_during_batch_issuance_restores_consistently(
    installation: Installation, tmp_path: Path
) -> None:
    installation.add("admin", "issuer")
    total = 400
    writer = subprocess.Popen([sys.executable, "-c", BATCH, str(total)], cwd=ROOT)
    archives = []
    try:
        conn = connect()
        deadline = time.monotonic() + 60
        while _issued(conn) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(3):
            archives.append(backup.create(tmp_path / "bk", PW, scrypt=ScryptParams(n=2**10)))
        conn.close()
    finally:
        assert writer.wait(timeout=120) == 0
    counts = []
    for i, info in enumerate(archives):
        target = tmp_path / f"restored-{i}"
        backup.restore(info.path, PW, directory=target)
        conn = db.open_db(target / "sscard.db")
        cards = {r[0] for r in conn.execute(
            "SELECT card_number FROM issuance_cards WHERE status = 'issued'")}  # fmt: skip
        events = [
            r[0] for r in conn.execute("SELECT json_extract(payload, '$.card_number') "
                                       "FROM outbox_events WHERE category = 'card.issued'")
        ]  # fmt: skip
        records = [r.card_number for r in audit.records(conn, action="card.issue")]
        assert sorted(events) == sorted(records) == sorted(cards)
        assert audit.verify(conn).ok
        counts.append(len(cards))
        conn.close()
    assert counts[0] >= 20 and counts == sorted(counts)
    assert counts[0] < total  # taken while the batch was writing
