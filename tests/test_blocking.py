"""Blocking and unblocking cards, the platform's block list, and who may read cards."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from sscard.cli.exit_codes import ExitCode
from sscard.db import open_store, transaction
from sscard.exchange import inbox
from tests.cardkit import SAMPLE_HOLDER
from tests.operatorkit import env_for

SSCARD = str(Path(sys.executable).with_name("sscard"))


def cli(card: Path, *args: str, role: str = "service") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SSCARD, "-r", f"virtual:{card}", *args],
        capture_output=True,
        text=True,
        env=env_for(role),
        timeout=60,
    )


def _events() -> list[tuple[str, str]]:
    db = sqlite3.connect(Path(os.environ["SSCARD_DATA_DIR"]) / "sscard.db")
    return db.execute("SELECT category, payload FROM outbox_events").fetchall()


def test_temporary_block_then_unblock(card_file: Path) -> None:
    blocked = cli(card_file, "--json", "block", "--reason", "lost", "--keystore", "dev")
    assert blocked.returncode == 0, blocked.stderr
    assert json.loads(blocked.stdout)["lifecycle"] == "APP_BLOCKED_TEMPORARY"
    verify = subprocess.run(
        [SSCARD, "-r", f"virtual:{card_file}", "pin", "verify", "--pin-stdin"],
        input="135790\n",
        capture_output=True,
        text=True,
        env=env_for("service"),
    )
    assert verify.returncode == ExitCode.FAILED  # 6985: the application is blocked
    unblocked = cli(card_file, "--json", "unblock", "--keystore", "dev")
    assert unblocked.returncode == 0, unblocked.stderr
    assert json.loads(unblocked.stdout)["lifecycle"] == "ISSUED"
    payloads = [json.loads(p) for c, p in _events() if c in ("card.blocked", "card.unblocked")]
    assert {"reason": "lost", "on_card": True}.items() <= payloads[-2].items()
    assert payloads[-1]["card_number"] == SAMPLE_HOLDER["card_number"]


def test_card_block_is_for_good(card_file: Path) -> None:
    assert (
        cli(
            card_file, "block", "--level", "card", "--reason", "stolen", "--keystore", "dev"
        ).returncode
        == 0
    )
    info = cli(card_file, "--json", "info")
    assert json.loads(info.stdout)["lifecycle"] == "CARD_BLOCKED"
    again = cli(card_file, "unblock", "--keystore", "dev")
    assert again.returncode == ExitCode.BLOCKED


def test_blocking_needs_the_service_role_and_a_reason(card_file: Path) -> None:
    kiosk = cli(card_file, "block", "--reason", "lost", "--keystore", "dev", role="kiosk")
    assert kiosk.returncode == ExitCode.AUTH and "card.block" in kiosk.stderr
    no_reason = cli(card_file, "block", "--keystore", "dev")
    assert no_reason.returncode == ExitCode.USAGE
    assert json.loads(cli(card_file, "--json", "info").stdout)["lifecycle"] == "ISSUED"


def test_read_is_for_issuers_and_service_staff_and_flags_the_block_list(card_file: Path) -> None:
    refused = cli(card_file, "read", role="kiosk")
    assert refused.returncode == ExitCode.AUTH
    conn = open_store(None)
    inbox.ensure_schema(conn)
    item = {
        "event": {
            "id": "01a21c7d-0000-7000-8000-000000000001",
            "category": "card.blocked",
            "occurred_at": "2026-11-27T08:00:00Z",
            "payload": {
                "card_number": SAMPLE_HOLDER["card_number"],
                "reason": "lost",
                "on_card": False,
            },
        }
    }
    with transaction(conn):
        inbox.apply_pulled(conn, [item], 1)
    conn.close()
    read = cli(card_file, "read", "--keystore", "dev")  # a 3.0 card: the read key
    assert read.returncode == 0, read.stderr
    assert "block list" in read.stderr and "sscard block" in read.stderr
