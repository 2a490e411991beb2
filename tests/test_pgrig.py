"""The PostgreSQL test rig (tests/pgrig.py) with clients we did not write: Debian's psql
and psycopg log in with scram through the pgpass file, a wrong password is refused,
fresh databases are independent, and stopping leaves no process and no directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.pgrig import (
    ENV_EXISTING,
    ROLE,
    PgServer,
    RigError,
    default_base_dir,
    iter_processes,
)

pytestmark = pytest.mark.postgres

PSQL = shutil.which("psql") or "/usr/bin/psql"


def psql(url: str, query: str, passfile: str) -> subprocess.CompletedProcess[str]:
    """Run Debian's psql on ``url`` with only ``passfile`` to find a password in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSFILE"] = passfile
    argv = [PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", query]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


def own_server(server: PgServer) -> None:
    if server.external:
        pytest.skip(f"about the rig's own server ({ENV_EXISTING} is set)")


def test_psql_logs_in_with_scram(pg_server: PgServer, pg_url: str) -> None:
    own_server(pg_server)
    assert pg_server.pgpass is not None
    done = psql(pg_url, "select current_user, current_database()", str(pg_server.pgpass))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("|")[0] == ROLE
    # The password is in the pgpass file only: not in the URL, the file private.
    password = pg_server.pgpass.read_text().splitlines()[0].rsplit(":", 1)[1]
    assert "password" not in conninfo_to_dict(pg_url) and password not in pg_url
    assert pg_server.pgpass.stat().st_mode & 0o777 == 0o600
    assert os.environ["PGPASSFILE"] == str(pg_server.pgpass)  # set for the session
    # The server holds a SCRAM verifier and asks for scram on TCP.
    with pg_server.admin() as admin:
        stored = admin.execute("select rolpassword from pg_authid where rolname = %s", [ROLE])
        assert str(stored.fetchone()[0]).startswith("SCRAM-SHA-256$")  # type: ignore[index]
        rules = admin.execute("select auth_method from pg_hba_file_rules where type = 'host'")
        assert {m for (m,) in rules} == {"scram-sha-256"}


def test_psycopg_logs_in(pg_server: PgServer, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:  # PGPASSFILE from the session fixture
        user, fsync = conn.execute("select current_user, current_setting('fsync')").fetchone()  # type: ignore[misc]
    if not pg_server.external:
        assert (user, fsync) == (ROLE, "off")  # the tests' server is not durable


def test_wrong_or_missing_password_is_refused(
    pg_server: PgServer, pg_url: str, tmp_path: Path
) -> None:
    own_server(pg_server)
    assert pg_server.pgpass is not None
    wrong = tmp_path / "wrong.pgpass"
    wrong.write_text(
        "".join(
            line.rsplit(":", 1)[0] + ":not-the-password\n"
            for line in pg_server.pgpass.read_text().splitlines()
        )
    )
    wrong.chmod(0o600)
    done = psql(pg_url, "select 1", str(wrong))
    assert done.returncode != 0
    assert f'password authentication failed for user "{ROLE}"' in done.stderr
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg_url, passfile=str(wrong)).close()
    done = psql(pg_url, "select 1", str(tmp_path / "absent"))
    assert done.returncode != 0 and "no password supplied" in done.stderr


def test_fresh_databases_are_independent(pg_server: PgServer) -> None:
    first, second = pg_server.create_database(), pg_server.create_database()
    try:
        assert first != second
        with psycopg.connect(first) as conn:
            conn.execute("create table t (x integer primary key)")
            conn.execute("insert into t values (1)")
        with psycopg.connect(second) as conn:
            assert conn.execute("select to_regclass('t')").fetchone() == (None,)
            conn.execute("create table t (x integer primary key)")  # its own namespace
            conn.execute("insert into t values (1)")
        with psycopg.connect(first) as conn:
            assert conn.execute("select count(*) from t").fetchone() == (1,)
    finally:
        pg_server.drop_database(first)
        pg_server.drop_database(second)
    with pg_server.admin() as admin:
        names = {n for (n,) in admin.execute("select datname from pg_database")}
    assert not {conninfo_to_dict(u)["dbname"] for u in (first, second)} & names


def test_store_target_covers_both_engines(store_target: str) -> None:
    if "://" not in store_target:
        assert store_target.endswith("sscard.db") and not Path(store_target).exists()
        return
    with psycopg.connect(store_target) as conn:
        tables = conn.execute("select count(*) from pg_tables where schemaname = 'public'")
        assert tables.fetchone() == (0,)  # fresh and empty


def test_durable_server_stops_without_a_trace() -> None:
    server = PgServer.start(durable=True, private=True)
    assert server.root is not None and server.pgpass is not None
    root, pid = server.root, server.pid
    url = server.create_database()
    # A client still connected does not hold the stop up (fast shutdown).
    conn = psycopg.connect(url, passfile=str(server.pgpass))
    assert conn.execute("select current_setting('fsync')").fetchone() == ("on",)
    server.stop()
    assert not root.exists()
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert list(iter_processes(str(root))) == []
    with pytest.raises(psycopg.OperationalError):
        conn.execute("select 1")
    conn.close()
    server.stop()  # again: nothing to do
    with pytest.raises(RigError, match="stopped"):
        server.create_database()


def test_a_server_that_does_not_start_says_why() -> None:
    base = Path(tempfile.mkdtemp(prefix="sscard-pgrig-test-", dir=default_base_dir(False)))
    try:
        base.chmod(0o711)  # the postgres user traverses it when we are root
        with pytest.raises(RigError) as failed:
            PgServer.start(base, private=True, settings={"shared_buffers": "lots"}, timeout=10)
        assert "did not start" in str(failed.value)
        assert 'invalid value for parameter "shared_buffers"' in str(failed.value)
        assert list(base.iterdir()) == []  # cleaned up
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to postgres")
def test_a_base_dir_postgres_cannot_reach_is_refused(tmp_path: Path) -> None:
    # pytest's own temporary directories are private to root.
    with pytest.raises(RigError, match="postgres user cannot traverse"):
        PgServer.start(tmp_path, private=True)
    assert list(tmp_path.iterdir()) == []


def test_a_given_server_is_used_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    with PgServer.start(private=True) as own:
        admin_url = f"postgresql://postgres@/postgres?host={own.root}&port={own.port}"
        monkeypatch.setenv(ENV_EXISTING, admin_url)
        given = PgServer.start()
        assert given.external and given.pid is None
        url = given.create_database()
        name = conninfo_to_dict(url)["dbname"]
        with psycopg.connect(url) as conn:  # as the given URL's role
            assert conn.execute("select current_user").fetchone() == ("postgres",)
        given.stop()  # drops what it created, leaves the server running
        with own.admin() as admin:
            found = admin.execute("select 1 from pg_database where datname = %s", [name])
            assert found.fetchone() is None
        # A password in the URL is refused, and not repeated.
        monkeypatch.setenv(ENV_EXISTING, "postgresql://postgres:hunter2@127.0.0.1:1/postgres")
        with pytest.raises(RigError, match="contains a password") as refused:
            PgServer.start()
        assert "hunter2" not in str(refused.value)
