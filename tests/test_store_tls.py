"""A centre's store over the network: TLS to PostgreSQL, with station certificates (issue 20).

The regulation asks for encrypted transfer; a station reaches the centre's
PostgreSQL server across the network. libpq (not sscard) does the TLS: the
server is verified against the centre's CA (``sslmode=verify-full``) and the
station presents its client certificate (``clientcert=verify-full`` in the
server's pg_hba.conf); scram besides. These tests start such a server
(tests/pgrig.py, ``tls=True``) and run real ``sscard`` processes against it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sscard.exchange.ca import init_ca
from tests.pgrig import PgServer

SSCARD = str(Path(sys.executable).with_name("sscard"))
pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def tls_server() -> Iterator[PgServer]:
    server = PgServer.start(tls=True, private=True)
    try:
        yield server
    finally:
        server.stop()


def sscard(server: PgServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **server.env(), "SSCARD_LANG": "en"}
    return subprocess.run([SSCARD, *args], capture_output=True, text=True, env=env, timeout=120)


def test_a_station_uses_the_centre_store_over_verified_tls(tls_server: PgServer) -> None:
    url = tls_server.tls_url(tls_server.create_database().rsplit("/", 1)[1])
    init = sscard(tls_server, "--store", url, "store", "init")
    assert init.returncode == 0, init.stderr
    status = sscard(tls_server, "--json", "--store", url, "store", "status")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["engine"] == "postgresql"
    with psycopg.connect(url, passfile=str(tls_server.pgpass)) as conn:
        ssl, version = conn.execute(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone()
    assert ssl is True and version in ("TLSv1.2", "TLSv1.3")


def test_plain_text_and_a_server_of_another_ca_are_refused(
    tls_server: PgServer, tmp_path: Path
) -> None:
    name = tls_server.create_database().rsplit("/", 1)[1]
    plain = f"{tls_server.url(name)}?sslmode=disable"
    r = sscard(tls_server, "--store", plain, "store", "status")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "pg_hba.conf rejects" in r.stderr or "no encryption" in r.stderr

    other = init_ca(tmp_path / "other-ca", [])["ca"].cert
    forged = tls_server.tls_url(name).replace(tls_server.tls_files["ca"], str(other))
    r = sscard(tls_server, "--store", forged, "store", "status")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "certificate verify failed" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2  # the error and its hint


def test_a_station_without_its_certificate_is_refused(tls_server: PgServer) -> None:
    name = tls_server.create_database().rsplit("/", 1)[1]
    files = tls_server.tls_files
    no_cert = f"{tls_server.url(name)}?sslmode=verify-full&sslrootcert={files['ca']}"
    r = sscard(tls_server, "--store", no_cert, "store", "status")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "certificate" in r.stderr
