"""Holder-data updates pulled from the exchange platform, written onto the card at its next
visit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sscard.applets.factory import new_card_file
from sscard.cli.exit_codes import ExitCode
from sscard.db import open_store, transaction
from sscard.exchange import inbox, outbox
from tests.cardkit import SAMPLE_HOLDER, issue
from tests.operatorkit import login_in_store, token_for

SSCARD = str(Path(sys.executable).with_name("sscard"))


@pytest.fixture
def card_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An issued card, and a store of its own for this test (SSCARD_STORE)."""
    store = tmp_path / "sscard.db"
    monkeypatch.setenv("SSCARD_STORE", str(store))
    monkeypatch.setenv("SSCARD_OPERATOR_TOKEN", str(login_in_store(store, "service")))
    path = tmp_path / "card.img"
    issue(new_card_file(path), "national-3")
    return path


def cli(card: Path, *args: str, kiosk: bool = False) -> subprocess.CompletedProcess[str]:
    """Run as this test's service operator (or as a kiosk of the main installation)."""
    env = dict(os.environ)
    if kiosk:
        # The kiosk operator lives in the main installation: make (and cache) its token
        # there, not in this test's store, or later tests get a session that is not valid.
        store = env.pop("SSCARD_STORE")
        del os.environ["SSCARD_STORE"]
        try:
            env["SSCARD_OPERATOR_TOKEN"] = str(token_for("kiosk"))
        finally:
            os.environ["SSCARD_STORE"] = store
    return subprocess.run(
        [SSCARD, "-r", f"virtual:{card}", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def read_back(card: Path) -> dict[str, object]:
    """``sscard --json read`` of the holder data (a 3.0 card reads them with the read key)."""
    done = cli(card, "--json", "read", "--keystore", "dev")
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    data.pop("departments", None)
    return data


def pull(event_id: str, changes: dict[str, object]) -> None:
    """What 'sscard sync pull' stores for a holder.changed event not yet on the card."""
    conn = open_store(None)
    inbox.ensure_schema(conn)
    item = {
        "event": {
            "id": event_id,
            "category": "holder.changed",
            "occurred_at": "2026-11-27T09:00:00Z",
            "payload": {
                "ssn": SAMPLE_HOLDER["ssn"],
                "card_number": SAMPLE_HOLDER["card_number"],
                "changes": changes,
                "written_to_card": False,
            },
        }
    }
    with transaction(conn):
        inbox.apply_pulled(conn, [item], inbox.cursor(conn) + 1)
    conn.close()


def test_pending_update_is_written_verified_and_reported(card_file: Path) -> None:
    pull("01a21c7d-0000-7000-8000-0000000000a1", {"name": "张三丰", "birthplace": "310101"})
    note = cli(card_file, "read", "--keystore", "dev")
    assert "1 holder-data update(s)" in note.stderr
    applied = cli(card_file, "--json", "holder", "update", "--keystore", "dev")
    assert applied.returncode == 0, applied.stderr
    done = json.loads(applied.stdout)["applied"]
    assert done[0]["fields"] == ["birthplace", "name"] and done[0]["records"] == 2
    after = read_back(card_file)
    assert after == {**SAMPLE_HOLDER, "name": "张三丰", "birthplace": "310101"}
    conn = open_store(None)
    assert inbox.pending_updates(conn, SAMPLE_HOLDER["card_number"]) == []
    changed = [e for e in outbox.pending(conn) if e.category == "holder.changed"]
    assert changed[-1].payload["written_to_card"] is True
    again = cli(card_file, "holder", "update", "--keystore", "dev")
    assert "No pending" in again.stdout


def test_a_region_change_is_refused_the_region_is_the_city_of_the_card_keys(
    card_file: Path,
) -> None:
    """The card identification code's region is the city level of the card's keys
    (docs/keys.md, "Which city"): rewriting it would leave a card no key store opens."""
    pull("01a21c7d-0000-7000-8000-0000000000a3", {"name": "张三丰", "region": "310101"})
    refused = cli(card_file, "holder", "update", "--keystore", "dev")
    assert refused.returncode == ExitCode.INVALID_INPUT, refused.stderr
    assert "region" in refused.stderr and "Traceback" not in refused.stderr
    assert read_back(card_file) == SAMPLE_HOLDER
    pin = cli(card_file, "--json", "pin", "status")
    assert pin.returncode == 0, pin.stderr


def test_an_update_that_contradicts_the_ssn_is_refused_and_changes_nothing(card_file: Path) -> None:
    pull("01a21c7d-0000-7000-8000-0000000000a2", {"birth_date": "1950-01-01"})
    refused = cli(card_file, "holder", "update", "--keystore", "dev")
    assert refused.returncode == ExitCode.INVALID_INPUT and "birth_date" in refused.stderr
    assert read_back(card_file) == SAMPLE_HOLDER
    kiosk = cli(card_file, "holder", "update", "--keystore", "dev", kiosk=True)
    assert kiosk.returncode == ExitCode.AUTH
