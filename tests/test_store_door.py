"""The one door to the local store (sscard.db) and the layering around it (issue 13)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sscard import audit, db


def test_open_store_creates_every_registered_table(tmp_path: Path) -> None:
    import sscard.auth
    import sscard.exchange.inbox
    import sscard.exchange.outbox
    import sscard.issuance.store  # noqa: F401

    conn = db.open_store(tmp_path / "x.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert {"audit", "operators", "outbox", "inbox", "issuance"} <= set(db.registered())
    assert {"audit_log", "audit_checkpoints", "operators", "operator_sessions",
            "outbox_events", "inbox_block_list", "issuance_cards"} <= tables  # fmt: skip


def test_a_nested_transaction_is_a_savepoint(tmp_path: Path) -> None:
    conn = db.open_db(tmp_path / "t.db")
    conn.execute("CREATE TABLE t (v TEXT)")
    with db.transaction(conn):
        conn.execute("INSERT INTO t VALUES ('outer')")
        with pytest.raises(RuntimeError), db.transaction(conn):
            conn.execute("INSERT INTO t VALUES ('inner')")
            raise RuntimeError("inner block fails")
        with db.transaction(conn):
            conn.execute("INSERT INTO t VALUES ('second')")
    assert [r[0] for r in conn.execute("SELECT v FROM t")] == ["outer", "second"]
    assert not conn.in_transaction


def test_audit_record_needs_the_connection_it_writes_to() -> None:
    with pytest.raises(TypeError):
        audit.record("card.read", operator=None, outcome="ok")  # type: ignore[call-arg]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_transport_layer_does_not_load_the_emulator() -> None:
    done = _python(
        "import sys\n"
        "from sscard.errors import ReaderNotFound\n"
        "from sscard.transport.resolve import open_transport\n"
        "try:\n"
        "    open_transport('virtual:/nonexistent/card.img')\n"
        "except ReaderNotFound as exc:\n"
        "    print('refused', 'sscard.applets' in sys.modules)\n"
    )
    assert done.stdout.strip() == "refused False", done.stderr


def test_importing_the_emulator_registers_the_virtual_reader_form() -> None:
    done = _python(
        "import sscard.applets\n"
        "from sscard.errors import NoCard\n"
        "from sscard.transport.resolve import open_transport\n"
        "try:\n"
        "    open_transport('virtual:/nonexistent/card.img')\n"
        "except NoCard:\n"
        "    print('no card file')\n"
    )
    assert done.stdout.strip() == "no card file", done.stderr
