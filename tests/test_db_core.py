"""The store door over two engines (issue 20): targets, SQL, migrations, transactions, claims.

Each behaviour runs on SQLite and on a real PostgreSQL server (tests/pgrig.py).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sscard import audit, db, schemas
from sscard.db.connection import to_pyformat
from sscard.db.migrations import VERSIONS_TABLE
from sscard.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[1]


def _init(target: str) -> None:
    schemas.load_all()
    with db.connect(target) as conn:
        db.migrate(conn)


# --- targets -------------------------------------------------------------------


def test_a_path_is_sqlite_and_a_url_is_postgresql() -> None:
    assert db.parse_target("/srv/sscard.db").engine == db.SQLITE
    assert db.parse_target("sqlite:///srv/sscard.db").location == "/srv/sscard.db"
    t = db.parse_target("postgresql://centre@db.example:5433/sscard?sslmode=verify-full")
    assert (t.engine, t.has_password) == (db.POSTGRESQL, False)
    assert t.display == "postgresql://centre@db.example:5433/sscard?sslmode=verify-full"


def test_a_password_never_shows_in_the_displayed_target() -> None:
    for url in (
        "postgresql://centre:s3cret-pw@db.example/sscard",
        "postgres://db.example/sscard?password=s3cret-pw&sslmode=require",
    ):
        t = db.parse_target(url)
        assert t.has_password
        assert "s3cret-pw" not in t.display and "s3cret-pw" not in str(t)
        assert "s3cret-pw" not in repr(t.display)


def test_a_malformed_port_is_refused_not_a_traceback() -> None:
    with pytest.raises(InvalidInput) as e:
        db.parse_target("postgresql://centre@db.example:abc/sscard")
    assert "port" in str(e.value.problems)


def test_an_unknown_kind_of_store_is_refused() -> None:
    with pytest.raises(InvalidInput) as e:
        db.parse_target("mysql://centre@db/sscard")
    assert "mysql" in str(e.value)


def test_placeholders_become_pyformat_outside_quotes_only() -> None:
    assert to_pyformat("SELECT ? , '?' , 'a%b' WHERE x LIKE '%?'") == (
        "SELECT %s , '?' , 'a%%b' WHERE x LIKE '%%?'"
    )


# --- both engines ----------------------------------------------------------------


def test_a_store_is_ready_after_migrate_and_records_each_module(store_target: str) -> None:
    _init(store_target)
    with db.open_store(store_target) as conn:
        rows = {s["module"]: s for s in db.status(conn)}
        assert all(s["current"] for s in rows.values())
        assert rows["issuance"]["version"] == 2
        stored = conn.execute(f"SELECT module, version FROM {VERSIONS_TABLE}").fetchall()
        assert ("issuance", 2) in [tuple(r) for r in stored]
        assert db.migrate(conn) == []  # nothing left to do


def test_a_postgresql_store_is_not_created_behind_the_administrators_back(pg_url: str) -> None:
    schemas.load_all()
    with pytest.raises(db.StoreNotReady) as e:
        db.open_store(pg_url)
    assert dict(e.value.problems)["issuance"].startswith("no tables yet")
    with db.connect(pg_url) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'"
            ).fetchone()[0]
            == 0
        )


def test_a_store_upgraded_by_a_newer_sscard_is_refused(store_target: str) -> None:
    _init(store_target)
    with db.connect(store_target) as conn:
        conn.execute(f"UPDATE {VERSIONS_TABLE} SET version = 99 WHERE module = 'outbox'")
    with pytest.raises(db.StoreTooNew) as e:
        db.open_store(store_target)
    assert "99" in str(e.value.problems)


def test_integrity_errors_are_the_stores_own(store_target: str) -> None:
    _init(store_target)
    with db.open_store(store_target) as conn:
        conn.execute("INSERT INTO outbox_state (key, value) VALUES (?, ?)", ("k", "1"))
        with pytest.raises(db.IntegrityError):
            conn.execute("INSERT INTO outbox_state (key, value) VALUES (?, ?)", ("k", "2"))
        audit.record("card.read", operator=None, outcome="ok", conn=conn)
        with pytest.raises(db.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit_log")
        with pytest.raises(db.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit_log SET outcome = 'failed'")


def test_a_failed_block_rolls_back_and_a_nested_one_is_a_savepoint(store_target: str) -> None:
    _init(store_target)
    with db.open_store(store_target) as conn:
        with db.transaction(conn):
            conn.execute("INSERT INTO outbox_state (key, value) VALUES ('outer', '1')")
            with pytest.raises(db.IntegrityError), db.transaction(conn):
                conn.execute("INSERT INTO outbox_state (key, value) VALUES ('inner', '1')")
                conn.execute("INSERT INTO outbox_state (key, value) VALUES ('inner', '2')")
            conn.execute("INSERT INTO outbox_state (key, value) VALUES ('after', '1')")
        with pytest.raises(RuntimeError), db.transaction(conn):
            conn.execute("INSERT INTO outbox_state (key, value) VALUES ('lost', '1')")
            raise RuntimeError("the block fails")
        keys = [r[0] for r in conn.execute("SELECT key FROM outbox_state ORDER BY key")]
        assert keys == ["after", "outer"]
        assert not conn.in_transaction
        assert (
            conn.executemany(
                "UPDATE outbox_state SET value = ? WHERE key = ?", [("2", "after"), ("2", "nope")]
            )
            == 1
        )


def test_write_transactions_wait_for_each_other(store_target: str) -> None:
    """Two writers that read the head and append after it never interleave."""
    _init(store_target)
    conns = [db.open_store(store_target) for _ in range(2)]
    errors: list[BaseException] = []

    def writer(conn: db.Connection, tag: str) -> None:
        try:
            for i in range(25):
                with db.transaction(conn):
                    (n,) = conn.execute("SELECT count(*) FROM outbox_state").fetchone()
                    conn.execute(
                        "INSERT INTO outbox_state (key, value) VALUES (?, ?)", (f"{tag}{i}", str(n))
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(c, t)) for c, t in zip(conns, "ab", strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    values = sorted(int(r[0]) for r in conns[0].execute("SELECT value FROM outbox_state"))
    for c in conns:
        c.close()
    assert not errors
    assert values == list(range(50))  # each writer saw every write before its own


def test_a_claim_excludes_other_connections_until_released(store_target: str) -> None:
    _init(store_target)
    a, b = db.open_store(store_target), db.open_store(store_target)
    try:
        held = db.claim(a, "holder:110101199001011234")
        assert held is not None and db.claim(a, "holder:110101199001011234") is held
        assert db.claim(b, "holder:110101199001011234") is None
        assert db.claim(b, "holder:other") is not None
        held.release()
        assert db.claim(b, "holder:110101199001011234") is not None
    finally:
        a.close()
        b.close()


def test_a_claim_dies_with_the_process_that_held_it(store_target: str) -> None:
    _init(store_target)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from sscard import db, schemas\n"
            "schemas.load_all()\n"
            "conn = db.open_store(sys.argv[1])\n"
            "assert db.claim(conn, 'card:31AA') is not None\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
            store_target,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with db.open_store(store_target) as conn:
            assert db.claim(conn, "card:31AA") is None
            holder.kill()
            holder.wait(10)
            assert db.claim(conn, "card:31AA", wait=10) is not None
    finally:
        holder.kill()
        holder.wait(10)


# --- a centre's server: sessions that hang ---------------------------------------------


def test_a_station_connects_with_sscards_session_settings(pg_url: str) -> None:
    with db.connect(pg_url) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("lock_timeout", "idle_in_transaction_session_timeout", "application_name")
        }
    assert settings == {
        "lock_timeout": "30s",
        "idle_in_transaction_session_timeout": "1min",
        "application_name": "sscard",
    }
    own = f"{pg_url}?options=-c%20lock_timeout%3D5s&application_name=desk-7"
    with db.connect(own) as conn:
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "5s"  # the URL's own wins
        assert conn.execute("SHOW application_name").fetchone()[0] == "desk-7"


def test_waiting_too_long_for_the_write_lock_is_store_busy(pg_url: str) -> None:
    _init(pg_url)
    with db.open_store(pg_url) as holder, db.open_store(pg_url) as waiter:
        holder.begin(write=True)
        waiter.execute("SET lock_timeout = '300ms'")
        with pytest.raises(db.StoreBusy), db.transaction(waiter):
            pass
        assert not waiter.in_transaction
        holder.commit()
        with db.transaction(waiter):  # free again
            pass


def test_a_station_frozen_inside_a_transaction_is_ended_by_the_server(pg_url: str) -> None:
    _init(pg_url)
    with db.open_store(pg_url) as frozen, db.open_store(pg_url) as other:
        frozen.execute("SET idle_in_transaction_session_timeout = '300ms'")
        frozen.begin(write=True)
        other.execute("SET lock_timeout = '10s'")
        with db.transaction(other):  # the server ends the frozen session and its lock
            other.execute("INSERT INTO outbox_state (key, value) VALUES ('after', '1')")
        with pytest.raises(db.StoreUnavailable):
            frozen.execute("SELECT 1")
