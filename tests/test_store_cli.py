"""``sscard store init|upgrade|status`` on both engines, the store setting, and backups of a
PostgreSQL store with the engine's own tools (issue 20, docs/store.md).

Every command runs as a real ``sscard`` process; PostgreSQL is the rig's real
server (tests/pgrig.py), logged in through its pgpass file (``PGPASSFILE``).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sscard import audit, db, schemas
from sscard.audit.signing import CheckpointSigner, checkpoint
from sscard.auth import OperatorStore, login
from sscard.cli.exit_codes import ExitCode
from sscard.exchange import outbox
from sscard.issuance import store as issuance
from tests.exchange_support import issued
from tests.pgrig import PgServer, find_bindir

SSCARD = str(Path(sys.executable).with_name("sscard"))
PASSWORD = "operator password 1"
LEGACY_DDL = Path(__file__).with_name("store_before_issue20.sql")
ISSUANCE_BEFORE_ISSUE_12 = """
CREATE TABLE issuance_cards (
    serial       TEXT PRIMARY KEY,
    card_number  TEXT NOT NULL,
    ssn          TEXT NOT NULL,
    profile      TEXT NOT NULL,
    key_versions TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('in_progress', 'issued', 'replaced')),
    operator     TEXT,
    started_at   TEXT NOT NULL,
    issued_at    TEXT,
    updated_at   TEXT NOT NULL,
    replaces     TEXT,
    batch_key    TEXT,
    last_error   TEXT
)"""


class Station:
    """``sscard`` processes of one station: its own data directory and operator token."""

    def __init__(self, root: Path, store: str) -> None:
        self.root = root
        self.store = store
        self.token = root / "operator.token"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("SSCARD_STORE", "SSCARD_READER")}
        return env | {
            "SSCARD_DATA_DIR": str(self.root / "data"),
            "SSCARD_OPERATOR_TOKEN": str(self.token),
        }

    def argv(self, *args: str, store: str | None = None) -> list[str]:
        return [SSCARD, "--store", store or self.store, *args]

    def run(self, *args: str, store: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args, store=store), capture_output=True, text=True, env=self.env(),
            timeout=120,
        )  # fmt: skip

    def json(self, *args: str, code: int = 0, store: str | None = None) -> Any:
        done = self.run("--json", *args, store=store)
        assert done.returncode == code, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else json.loads(done.stderr)

    def login(self, operator_id: str) -> None:
        """Log ``operator_id`` in at this station (the token file its processes use)."""
        with db.connect(self.store) as conn:
            login(OperatorStore(conn), operator_id, PASSWORD, path=self.token)


def _latest() -> dict[str, int]:
    schemas.load_all()
    return {s.name: s.latest for s in db.schemas()}


def _versions(report: Mapping[str, Any]) -> dict[str, int]:
    return {s["module"]: s["version"] for s in report["schemas"]}


def _seed(conn: db.Connection) -> None:
    """Operators, issued cards with their audit records and events, a checkpoint."""
    store = OperatorStore(conn)
    admin = store.add("admin", "Li Na", "issuer", PASSWORD, bootstrap=True, cost=10)
    store.add("zhao", "Zhao Lei", "auditor", PASSWORD, cost=10)
    for n in range(1, 4):
        serial = f"00112233445566{n:02d}"
        issuance.begin(
            conn, serial=serial, card_number=f"A{n:07d}", ssn=f"11010119900101{n:04d}",
            profile="national-3", key_versions={"mk": 1}, operator="admin", replaces=None,
            batch_key=None,
        )  # fmt: skip
        if n == 3:
            continue  # left in progress
        with db.transaction(conn):
            issuance.mark_issued(conn, serial)
            audit.record("card.issue", operator=admin, outcome="ok", card_serial=serial, conn=conn)
            event = outbox.enqueue(conn, "card.issued", issued(n, serial), service_point="sp-1")
    with db.transaction(conn):
        outbox.mark_delivered(conn, {event: 7})
    checkpoint(conn, CheckpointSigner.development_signer())


def _one_more_record(counts: Mapping[str, Any]) -> dict[str, Any]:
    """``counts`` (of ``store status``) after one more audit record."""
    return {**counts, "audit_records": counts["audit_records"] + 1,
            "audit_head_seq": counts["audit_head_seq"] + 1}  # fmt: skip


def _initialized(target: str) -> None:
    with db.connect(target) as conn:
        schemas.initialize(conn)


# --- init, upgrade, status ------------------------------------------------------


def test_init_upgrade_status_on_both_engines(store_target: str, tmp_path: Path) -> None:
    st = Station(tmp_path, store_target)
    pg = store_target.startswith("postgresql:")
    first = st.run("--json", "store", "status")
    before = json.loads(first.stdout)  # the report on stdout, a refusal on stderr
    assert first.returncode == (ExitCode.INVALID_INPUT if pg else 0), first.stderr
    if pg:
        err = json.loads(first.stderr)
        assert err["error"] == "StoreNotInitialized" and "sscard store init" in err["hint"]
    assert before["state"] == "empty" and set(_versions(before).values()) == {0}
    assert before["engine"] == ("postgresql" if pg else "sqlite")

    made = st.json("store", "init")
    assert sorted((s["module"], s["version"]) for s in made["applied"]) == sorted(
        (name, v) for name, latest in _latest().items() for v in range(1, latest + 1)
    )
    assert all(s["note"] for s in made["applied"])

    again = st.run("--json", "store", "init")
    assert again.returncode == ExitCode.INVALID_INPUT
    err = json.loads(again.stderr)
    assert err["error"] == "StoreNotEmpty" and "sscard store upgrade" in err["hint"]

    assert st.json("store", "upgrade")["applied"] == []
    human = st.run("store", "upgrade")
    assert "Nothing to upgrade" in human.stdout

    with db.open_store(store_target) as conn:
        _seed(conn)
        init_record = audit.all_records(conn)[0]
    assert (init_record.action, init_record.operator, init_record.outcome) == (
        "store.init", None, "ok",
    )  # fmt: skip
    report = st.json("store", "status")
    assert report["state"] == "current" and _versions(report) == _latest()
    assert report["store"] == store_target
    counts = report["counts"]
    assert counts["operators"] == 2 and counts["audit_records"] == 3
    assert counts["audit_head_seq"] == 3 and counts["audit_checkpoints"] == 1
    assert counts["cards"] == {"issued": 2, "in_progress": 1, "replaced": 0, "abandoned": 0}
    assert counts["outbox"] == {"pending": 1, "rejected": 0, "delivered": 1}
    text = st.run("store", "status").stdout
    assert "Engine: " + ("PostgreSQL" if pg else "SQLite") in text
    assert "Audit trail: 3 records, head seq 3, 1 checkpoints" in text
    assert "The store is at this sscard's version." in text


def test_status_of_a_missing_sqlite_store_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "sscard.db"
    st = Station(tmp_path, str(target))
    report = st.json("store", "status")
    assert report["state"] == "empty" and not target.parent.exists()


def _behind(target: str) -> None:
    """Take the store back to issuance 1 and no inbox tables: what an older sscard made."""
    with db.connect(target) as conn, db.transaction(conn):
        conn.execute("DROP INDEX issuance_one_active_card")
        conn.execute("UPDATE sscard_schema SET version = 1 WHERE module = 'issuance'")
        for table in ("inbox_block_list", "inbox_holder_updates", "inbox_state"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DELETE FROM sscard_schema WHERE module = 'inbox'")


def test_a_postgresql_store_behind_is_refused_until_an_issuer_upgrades_it(
    pg_url: str, tmp_path: Path
) -> None:
    st = Station(tmp_path, pg_url)
    _initialized(pg_url)
    with db.open_store(pg_url) as conn:
        _seed(conn)
    st.login("admin")  # before the upgrade: login needs a ready store
    _behind(pg_url)

    refused = st.run("--json", "sync", "status")
    assert refused.returncode == ExitCode.INVALID_INPUT
    err = json.loads(refused.stderr)
    assert err["error"] == "StoreNotReady" and "sscard store upgrade" in err["hint"]
    assert "inbox" in {p["field"] for p in err["problems"]}

    status = st.run("--json", "store", "status")
    assert status.returncode == ExitCode.INVALID_INPUT
    assert json.loads(status.stdout)["state"] == "upgrade_needed"
    assert (
        "Older tables (inbox, issuance): run 'sscard store upgrade'"
        in st.run("store", "status").stdout
    )

    stranger = Station(tmp_path / "other", pg_url)  # no operator logged in there
    denied = stranger.run("--json", "store", "upgrade")
    assert denied.returncode == ExitCode.AUTH, denied.stderr
    assert json.loads(denied.stderr)["error"] == "NotLoggedIn"
    assert st.run("store", "status").returncode == ExitCode.INVALID_INPUT  # unchanged

    done = st.json("store", "upgrade")
    assert [(s["module"], s["version"]) for s in done["applied"]] == [
        ("inbox", 1), ("issuance", 2),
    ]  # fmt: skip
    assert st.json("store", "status")["state"] == "current"
    with db.open_store(pg_url) as conn:
        trail = [(r.action, r.operator, r.outcome) for r in audit.all_records(conn)]
        assert audit.verify(conn).ok
    assert ("store.upgrade", None, "refused") in trail
    assert trail[-1] == ("store.upgrade", "admin", "ok")


def test_two_upgrades_at_once_on_postgresql_apply_each_step_once(
    pg_url: str, tmp_path: Path
) -> None:
    _initialized(pg_url)
    _behind(pg_url)
    stations = [Station(tmp_path / f"s{i}", pg_url) for i in range(3)]
    procs, outputs = _at_once(pg_url, stations, "upgrade")
    assert [p.returncode for p in procs] == [0, 0, 0], [e for _o, e in outputs]
    applied = [
        (s["module"], s["version"]) for out, _err in outputs for s in json.loads(out)["applied"]
    ]
    assert sorted(applied) == [("inbox", 1), ("issuance", 2)]
    assert stations[0].json("store", "status")["state"] == "current"


def _at_once(
    url: str, stations: list[Station], command: str
) -> tuple[list[subprocess.Popen[str]], list[tuple[str, str]]]:
    """``sscard --json store COMMAND`` on every station, all made to wait together behind
    the store's write lock, then let go at once; the processes and their outputs."""
    with db.connect(url) as holder:
        holder.begin(write=True)  # the write lock: every command waits behind it
        procs = [
            subprocess.Popen(
                s.argv("--json", "store", command),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=s.env(),
            )
            for s in stations
        ]
        _wait_for_lock_waiters(holder, len(procs))
        holder.commit()
    return procs, [p.communicate(timeout=120) for p in procs]


def _wait_for_lock_waiters(conn: db.Connection, count: int, timeout: float = 60) -> None:
    """Until ``count`` other sessions wait for the store's write lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (waiting,) = conn.execute(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
        if waiting >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} upgrades never waited for the write lock")


def test_two_inits_at_once_on_postgresql_one_wins(pg_url: str, tmp_path: Path) -> None:
    stations = [Station(tmp_path / f"s{i}", pg_url) for i in range(2)]
    procs, outputs = _at_once(pg_url, stations, "init")
    assert sorted(p.returncode for p in procs) == [0, ExitCode.INVALID_INPUT]
    loser = next(err for p, (_out, err) in zip(procs, outputs, strict=True) if p.returncode)
    assert json.loads(loser)["error"] == "StoreNotEmpty"
    with db.open_store(pg_url) as conn:
        assert [r.action for r in audit.all_records(conn)] == ["store.init"]


def test_upgrade_refuses_a_database_without_sscard_tables(pg_url: str, tmp_path: Path) -> None:
    st = Station(tmp_path, pg_url)
    done = st.run("--json", "store", "upgrade")
    assert done.returncode == ExitCode.INVALID_INPUT
    assert json.loads(done.stderr)["error"] == "StoreNotInitialized"
    with db.connect(pg_url) as conn:
        assert schemas.tables(conn) == set()


def test_a_store_a_newer_sscard_upgraded_is_refused(store_target: str, tmp_path: Path) -> None:
    st = Station(tmp_path, store_target)
    _initialized(store_target)
    with db.connect(store_target) as conn:
        conn.execute("UPDATE sscard_schema SET version = version + 1 WHERE module = 'audit'")
    for args in (("store", "status"), ("store", "upgrade"), ("sync", "status")):
        done = st.run("--json", *args)
        assert done.returncode == ExitCode.INVALID_INPUT, args
        assert json.loads(done.stderr.splitlines()[-1])["error"] == "StoreTooNew", args
    assert json.loads(st.run("--json", "store", "status").stdout)["state"] == "too_new"


# --- a store made before versioned schemas ---------------------------------------


def _legacy_store(path: Path, *, before_issue_12: bool) -> None:
    ddl = LEGACY_DDL.read_text(encoding="utf-8")
    raw = sqlite3.connect(path)
    raw.executescript(ddl)
    if before_issue_12:
        raw.executescript(
            "DROP INDEX issuance_cards_ssn; DROP INDEX issuance_cards_batch;"
            f"DROP TABLE issuance_cards; {ISSUANCE_BEFORE_ISSUE_12};"
            "CREATE INDEX issuance_cards_ssn ON issuance_cards (ssn, status);"
            "CREATE INDEX issuance_cards_batch ON issuance_cards (batch_key);"
        )
    raw.close()


def _copy_rows(source: Path, target: Path) -> None:
    """Every row of ``source`` (made by this sscard) into the older tables of ``target``."""
    raw = sqlite3.connect(target)
    raw.execute("ATTACH DATABASE ? AS src", (str(source),))
    tables = [r[0] for r in raw.execute("SELECT name FROM main.sqlite_master WHERE type='table'")]
    for table in tables:
        if table == "sqlite_sequence":
            continue
        cols = ", ".join(r[1] for r in raw.execute(f"PRAGMA main.table_info({table})"))
        raw.execute(f"INSERT INTO main.{table} ({cols}) SELECT {cols} FROM src.{table}")
    raw.commit()
    raw.close()


@pytest.mark.parametrize("before_issue_12", [False, True], ids=["previous", "before-issue-12"])
def test_an_sqlite_store_of_before_versioned_schemas_upgrades(
    tmp_path: Path, before_issue_12: bool
) -> None:
    made_now = tmp_path / "now.db"
    with db.open_store(made_now) as conn:
        _seed(conn)
    old = tmp_path / "old.db"
    _legacy_store(old, before_issue_12=before_issue_12)
    _copy_rows(made_now, old)
    st = Station(tmp_path, str(old))

    before = st.json("store", "status")
    assert before["state"] == "upgrade_needed" and set(_versions(before).values()) == {0}
    assert "sscard_schema" not in {
        r[0] for r in sqlite3.connect(old).execute("SELECT name FROM sqlite_master")
    }
    done = st.json("store", "upgrade")
    assert {(s["module"], s["version"]) for s in done["applied"]} >= {("issuance", 2)}
    after = st.json("store", "status")
    assert after["state"] == "current" and _versions(after) == _latest()
    assert after["counts"] == _one_more_record(before["counts"])  # the upgrade's own
    with db.open_store(old) as conn:
        assert audit.verify(conn, CheckpointSigner.development_signer()).ok
        sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'issuance_cards'"
        ).fetchone()[0]
        assert "'abandoned'" in sql
        issuance.mark_abandoned(conn, "0011223344556603", "the card is gone")
        with pytest.raises(db.IntegrityError):  # one active card per holder, now a rule
            conn.execute("UPDATE issuance_cards SET status = 'issued', ssn = 'one holder'")


# --- the store setting ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://sscard:Tr0ub4dor-s3cret@127.0.0.1:5/centre",
        "postgres://sscard@127.0.0.1/centre?sslmode=require&password=Tr0ub4dor-s3cret",
    ],
)
def test_a_password_in_the_store_setting_is_refused_and_never_repeated(
    url: str, tmp_path: Path
) -> None:
    st = Station(tmp_path, url)
    runs = [
        st.run("store", "status"),
        st.run("--json", "store", "status"),
        subprocess.run(
            [SSCARD, "sync", "status", "--store", url],
            capture_output=True,
            text=True,
            env=st.env(),
            timeout=60,
        ),
        subprocess.run(
            [SSCARD, "store", "status"],
            capture_output=True,
            text=True,
            env=st.env() | {"SSCARD_STORE": url},
            timeout=60,
        ),
    ]
    for done in runs:
        assert done.returncode == ExitCode.INVALID_INPUT, done.stderr
        assert "Tr0ub4dor" not in done.stdout + done.stderr
        assert "pgpass" in done.stderr and "Traceback" not in done.stderr
    assert json.loads(runs[1].stderr)["error"] == "InvalidInput"
    assert not (tmp_path / "data").exists()


def test_the_help_explains_path_or_url() -> None:
    done = subprocess.run([SSCARD, "--help"], capture_output=True, text=True, timeout=60)
    assert "--store PATH|URL" in done.stdout and "postgresql://" in done.stdout
    assert "store " in done.stdout
    sub = subprocess.run([SSCARD, "store", "--help"], capture_output=True, text=True, timeout=60)
    assert all(name in sub.stdout for name in ("init", "upgrade", "status"))


# --- backups ---------------------------------------------------------------------------


def test_the_encrypted_backup_refuses_a_postgresql_store(pg_url: str, tmp_path: Path) -> None:
    st = Station(tmp_path, pg_url)
    _initialized(pg_url)
    with db.open_store(pg_url) as conn:
        _seed(conn)
    st.login("admin")
    env = st.env() | {"SSCARD_BACKUP_PASSPHRASE": "backup passphrase 1"}
    for args in (["backup", "create", str(tmp_path / "out")], ["backup", "restore", __file__]):
        done = subprocess.run(
            [SSCARD, "--json", "--store", pg_url, *args], capture_output=True, text=True,
            env=env, timeout=60,
        )  # fmt: skip
        assert done.returncode == ExitCode.FAILED, done.stderr
        err = json.loads(done.stderr)
        assert err["error"] == "BackupError" and "pg_dump" in err["hint"]
        assert "docs/store.md" in err["hint"]
    assert not (tmp_path / "out").exists()


def _pg_tool(name: str) -> str:
    try:
        path = find_bindir() / name
    except Exception:
        path = None
    if path is not None and path.is_file():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed")
    return found


def test_pg_dump_and_pg_restore_round_trip(
    pg_server: PgServer, pg_url: str, tmp_path: Path
) -> None:
    """A centre's backup as docs/store.md tells it: pg_dump -Fc, pg_restore into a new
    database; the trail verifies there and the store holds the same."""
    st = Station(tmp_path, pg_url)
    assert st.run("store", "init").returncode == 0
    with db.open_store(pg_url) as conn:
        _seed(conn)
    st.login("zhao")  # an auditor: audit verify
    assert st.run("audit", "verify", "--keystore", "dev").returncode == 0
    before = st.json("store", "status")

    dump = tmp_path / "centre.dump"
    env = st.env()
    subprocess.run(
        [_pg_tool("pg_dump"), "-Fc", "--no-owner", "-f", str(dump), "-d", pg_url],
        check=True, env=env, timeout=120, capture_output=True,
    )  # fmt: skip
    restored = pg_server.create_database()
    subprocess.run(
        [_pg_tool("pg_restore"), "--no-owner", "--exit-on-error", "-d", restored, str(dump)],
        check=True, env=env, timeout=120, capture_output=True,
    )  # fmt: skip
    try:
        verified = st.run("--json", "audit", "verify", "--keystore", "dev", store=restored)
        assert verified.returncode == 0, verified.stderr
        report = json.loads(verified.stdout)
        assert report["ok"] and report["records"] == before["counts"]["audit_records"]
        assert report["checkpoints_verified"] == 1
        after = st.json("store", "status", store=restored)
        assert after["state"] == "current" and after["schemas"] == before["schemas"]
        assert after["counts"] == _one_more_record(before["counts"])  # the verify's own
        # the restored store keeps its rules: still one active card per holder
        with db.open_store(restored) as conn, pytest.raises(db.IntegrityError):
            conn.execute("UPDATE issuance_cards SET status = 'issued', ssn = 'same'")
    finally:
        pg_server.drop_database(restored)
