"""Shared fixtures: the real PC/SC stack with a scripted test card in a vpcd reader, and a
real PostgreSQL server for the store (tests/pgrig.py)."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Everything sscard writes by default (emulator key, stores) goes to a scratch
# directory, for this process and the sscard subprocesses the tests start.
os.environ["SSCARD_DATA_DIR"] = tempfile.mkdtemp(prefix="sscard-test-")
# The tests read sscard's English texts, whatever the developer's locale
# (tests/test_i18n.py switches language on purpose).
os.environ["SSCARD_LANG"] = "en"
# Operators (docs/operators.md): the session runs as a logged-in issuer (token in the
# scratch dir); `installation` gives a test its own empty installation instead.
os.environ["SSCARD_OPERATOR_TOKEN"] = os.path.join(os.environ["SSCARD_DATA_DIR"], "operator.token")
# Every sscard subprocess runs in its own process, whatever command server the developer
# has running; tests/test_command_server.py starts its own.
os.environ["SSCARD_COMMAND_SERVER"] = "off"

from sscard.applets import ScriptedCard
from sscard.applets.factory import new_card_file
from sscard.applets.pcsc_rig import (
    VPCD_READERS,
    card_in_reader,
    reader_lock,
    running_pcscd,
)
from sscard.applets.vpcd import VpcdBridge
from tests.cardkit import issue
from tests.operatorkit import installation, session_issuer  # noqa: F401  (fixtures)
from tests.pgrig import PgServer


@pytest.fixture(autouse=True)
def _sscard_log_level() -> Iterator[None]:
    """An in-process CLI run sets the ``sscard`` logger's level (``--log-level``, default
    warning); put it back, or a later test's caplog at DEBUG would see no sscard record."""
    logger = logging.getLogger("sscard")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture(scope="session")
def pcscd() -> Iterator[None]:
    """A running pcscd with the vpcd driver (started here when none runs)."""
    with running_pcscd():
        yield


@pytest.fixture(scope="session")
def vpcd_port(pcscd: None) -> Iterator[int]:
    """One vpcd reader port held exclusively by this test run."""
    with reader_lock() as port:
        yield port


@dataclass
class PluggedCard:
    card: ScriptedCard
    reader: str
    bridge: VpcdBridge


@pytest.fixture
def scripted_card(vpcd_port: int) -> Iterator[PluggedCard]:
    """A scripted test card (T=1 behaviour) in a real PC/SC reader."""
    card = ScriptedCard(
        rules={bytes.fromhex("00A4040007A0000000031010"): bytes.fromhex("6F07840507A00000009000")}
    )
    with card_in_reader(card, vpcd_port) as bridge:
        yield PluggedCard(card, VPCD_READERS[vpcd_port], bridge)


@pytest.fixture
def t0_card(vpcd_port: int) -> Iterator[PluggedCard]:
    """A scripted test card answering T=0 style (61xx / 6Cxx) in a real PC/SC reader."""
    card = ScriptedCard(t0=True)
    with card_in_reader(card, vpcd_port) as bridge:
        yield PluggedCard(card, VPCD_READERS[vpcd_port], bridge)


@pytest.fixture
def card_file(tmp_path: Path) -> Path:
    """An issued card image: national-3, the sample holder, the development keys."""
    path = tmp_path / "card.img"
    issue(new_card_file(path), "national-3")
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the session: a throwaway one (tests/pgrig.py) or the one
    ``$SSCARD_TEST_POSTGRES`` names. For the session, ``PGPASSFILE`` names its pgpass
    file, so psycopg here and ``sscard`` subprocesses log in without a password in
    any URL (a ``PGPASSWORD`` of the developer's would take precedence: it is unset)."""
    server = PgServer.start()
    saved = {name: os.environ.get(name) for name in ("PGPASSFILE", "PGPASSWORD")}
    if not server.external:
        os.environ.pop("PGPASSWORD", None)
    os.environ.update(server.env())
    try:
        yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh, empty database of its own (dropped afterwards, best effort)."""
    url = pg_server.create_database()
    yield url
    try:
        pg_server.drop_database(url)
    except Exception as e:  # a test that broke the server must not fail the next one
        warnings.warn(f"could not drop the test database: {e}", stacklevel=1)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store target for both engines: a fresh SQLite path, or a fresh PostgreSQL
    database's URL (``--store`` / ``$SSCARD_STORE`` / ``db.open_store``)."""
    if request.param == "sqlite":
        return str(tmp_path / "sscard.db")
    url: str = request.getfixturevalue("pg_url")
    return url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the PostgreSQL server get the ``postgres`` marker (``-m "not postgres"``)."""
    for item in items:
        if {"pg_server", "pg_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)
