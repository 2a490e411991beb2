"""The store's server goes away mid-run (issue 20): a clear error, nothing half-written.

A PostgreSQL store can vanish under a station: the server stopped, or the
station's session terminated by an administrator (``pg_terminate_backend``).
The library raises :class:`sscard.db.StoreUnavailable`; the CLI prints one
error line (and its hint) and exits 1, never a traceback; an open transaction
is rolled back by the server, so nothing of it is in the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from sscard import audit, cardevents, db
from sscard.auth import OperatorStore, login
from sscard.cli.exit_codes import ExitCode
from sscard.errors import OperationFailed
from sscard.exchange import outbox
from sscard.exchange.platform import Platform
from tests.exchange_support import Pki, blocked, issued, pki, platform
from tests.pgrig import PgServer
from tests.storekit import init_store, opened

pytestmark = pytest.mark.postgres
__all__ = ["pki", "platform"]  # fixtures

SSCARD = str(Path(sys.executable).with_name("sscard"))
PASSWORD = "operator password 1"
SP = "sp-labour"


def _dbname(url: str) -> str:
    return str(conninfo_to_dict(url)["dbname"])


def _terminate(server: PgServer, url: str, *, but: int | None = None) -> int:
    """End every session on the database of ``url`` (but the backend ``but``); how many."""
    with server.admin() as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid() AND pid IS DISTINCT FROM %s",
            (_dbname(url), but),
        ).fetchall()
    return len(rows)


def test_a_session_ended_mid_transaction_leaves_nothing_of_it(
    pg_server: PgServer, pg_url: str
) -> None:
    init_store(pg_url)
    with opened(pg_url) as conn, opened(pg_url) as other:
        conn.execute("CREATE TABLE marks (card TEXT PRIMARY KEY)")

        def writes(c: db.Connection) -> None:
            c.execute("INSERT INTO marks VALUES ('A0000001S')")
            _terminate(pg_server, pg_url, but=other.raw.info.backend_pid)  # type: ignore[attr-defined]

        with pytest.raises(db.StoreUnavailable, match="went away") as gone:
            cardevents.recorded_action(
                "card.block",
                lambda: None,
                conn=conn,
                operator=None,
                service_point=SP,
                card_serial="0011223344556677",
                card_number="A0000001S",
                events=[("card.blocked", blocked("A0000001S"))],
                writes=writes,
            )
        assert "administrator command" in str(gone.value)
        assert other.execute("SELECT count(*) FROM marks").fetchone()[0] == 0
        assert outbox.pending(other) == []
        assert audit.all_records(other) == []
        # the lost connection says so every time; its claims died with its session
        with pytest.raises(db.StoreUnavailable):
            conn.execute("SELECT 1")
        assert db.claim(other, "outbox.push") is not None


def test_a_cancelled_statement_leaves_no_transaction_open(pg_server: PgServer, pg_url: str) -> None:
    """An administrator cancels a station waiting for the write lock: a clear error, and
    the station's connection is usable again at once."""
    init_store(pg_url)
    with opened(pg_url) as first, opened(pg_url) as second:
        waiting = second.raw.info.backend_pid  # type: ignore[attr-defined]
        with db.transaction(first):
            audit.record("card.issue", operator=None, outcome="ok", conn=first)

            def cancel() -> None:
                time.sleep(0.3)
                with pg_server.admin() as admin:
                    admin.execute("SELECT pg_cancel_backend(%s)", (waiting,))

            threading.Thread(target=cancel).start()
            with pytest.raises(OperationFailed, match="did not complete"):
                audit.record("card.issue", operator=None, outcome="ok", conn=second)
            assert not second.in_transaction
        audit.record("card.issue", operator=None, outcome="ok", conn=second)
        assert [r.seq for r in audit.all_records(first)] == [1, 2]
        assert audit.verify(first).ok


def _station_env(url: str, token: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A station's environment: the store, a logged-in service operator, PGPASSFILE."""
    with opened(url) as conn:
        store = OperatorStore(conn)
        if store.find("station-op") is None:
            store.add("admin", "admin", "issuer", PASSWORD, bootstrap=True, cost=10)
            store.add("station-op", "Station", "service", PASSWORD, cost=10)
        login(store, "station-op", PASSWORD, path=token)
    return {
        **os.environ,
        "SSCARD_STORE": url,
        "SSCARD_OPERATOR_TOKEN": str(token),
        **(extra or {}),
    }


def _one_line_error(done: subprocess.CompletedProcess[str] | tuple[int, str]) -> str:
    code, stderr = (
        (done.returncode, done.stderr) if isinstance(done, subprocess.CompletedProcess) else done
    )
    assert code == ExitCode.FAILED, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith("hint:")]
    assert len(errors) == 1 and len(lines) <= 2, stderr  # the error, and a hint to it
    return errors[0]


@pytest.fixture
def looping(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Station processes started by a test, stopped if it fails half-way."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def _sync_loop(env: dict[str, str]) -> subprocess.Popen[str]:
    """``sscard sync run``: every round uses the store (claim, outbox, witness, state)."""
    return subprocess.Popen(
        [SSCARD, "sync", "run", "--period", "0.1", "--cycles", "600", "--no-pull"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _platform_env(platform: Platform, pki: Pki) -> dict[str, str]:
    files = pki.files
    return {
        "SSCARD_PLATFORM_URL": platform.url,
        "SSCARD_EXCHANGE_CERT": str(files["sp-labour"].cert),
        "SSCARD_EXCHANGE_KEY": str(files["sp-labour"].key),
        "SSCARD_EXCHANGE_CA": str(files["ca"].cert),
    }


def _rounds(loop: subprocess.Popen[str], count: int = 2) -> list[str]:
    """The first ``count`` round lines of a sync loop (it is running)."""
    assert loop.stdout is not None
    lines = [loop.stdout.readline() for _ in range(count)]
    assert all(line.startswith("#") for line in lines), lines
    return lines


def test_cli_ends_with_one_line_when_its_session_is_terminated(
    pg_server: PgServer,
    pg_url: str,
    tmp_path: Path,
    pki: Pki,
    platform: Platform,
    looping: list[subprocess.Popen[str]],
) -> None:
    init_store(pg_url)
    env = _station_env(pg_url, tmp_path / "op.token", _platform_env(platform, pki))
    with opened(pg_url) as conn:
        outbox.enqueue(conn, "card.issued", issued(1), service_point=SP)
    looping.append(loop := _sync_loop(env))
    assert _rounds(loop)[0].startswith("#1 pushed 1")
    assert _terminate(pg_server, pg_url) >= 1
    _out, err = loop.communicate(timeout=60)
    line = _one_line_error((loop.returncode, err))
    assert "went away" in line and "administrator command" in line
    with opened(pg_url) as conn:
        assert outbox.stats(conn).delivered == 1
        (last,) = audit.records(conn, action="sync.run", limit=1)
        assert (last.outcome, last.error) == ("failed", "StoreUnavailable")  # recorded anew
        assert audit.verify(conn).ok


def test_cli_when_the_server_stops_mid_run_and_is_gone(
    tmp_path: Path, pki: Pki, platform: Platform, looping: list[subprocess.Popen[str]]
) -> None:
    server = PgServer.start(private=True)
    try:
        url = server.create_database()
        saved = os.environ.get("PGPASSFILE")
        os.environ.update(server.env())
        try:
            init_store(url)
            env = _station_env(url, tmp_path / "op.token", _platform_env(platform, pki))
            looping.append(loop := _sync_loop(env))
            _rounds(loop)
        finally:
            if saved is None:
                os.environ.pop("PGPASSFILE", None)
            else:
                os.environ["PGPASSFILE"] = saved
        server.stop()  # fast shutdown: the server ends every session
        _out, err = loop.communicate(timeout=60)
        assert "went away" in _one_line_error((loop.returncode, err))
        again = subprocess.run(
            [SSCARD, "sync", "status"], capture_output=True, text=True, env=env, timeout=60
        )
        assert "cannot reach the store" in _one_line_error(again)
        assert PASSWORD not in again.stderr
    finally:
        server.stop()
