"""``sscard --store X``: every state-changing command keeps its whole audit trail in X.

The operator check, refusals, the card action and its record all go to the one
local store the command line named; the default store is never opened (issue 13).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from sscard.db import open_store, transaction
from sscard.exchange import inbox
from tests.cardkit import SAMPLE_HOLDER

SSCARD = str(Path(sys.executable).with_name("sscard"))
HOLDER = Path(__file__).resolve().parent.parent / "examples" / "holder.json"
PASSWORD = "operator password 1"
NEW_PIN = "975310"


class Site:
    """One service point whose local store is X, away from the default data directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"  # the default store would be data/sscard.db
        self.store = root / "elsewhere" / "x.db"
        self.card = root / "card.img"

    def run(
        self, *args: str, who: str = "admin", stdin: str | None = None, store: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("SSCARD_STORE", "SSCARD_READER")}
        env |= {
            "SSCARD_DATA_DIR": str(self.data_dir),
            "SSCARD_OPERATOR_TOKEN": str(self.root / f"{who}.token"),
            "SSCARD_KEYSTORE_PASSPHRASE": "key store passphrase 1",
            "SSCARD_SERVICE_POINT": "sp-test",
        }
        argv = [SSCARD, "-r", f"virtual:{self.card}"]
        argv += ["--store", str(self.store)] if store else []
        done = subprocess.run(
            [*argv, *args], capture_output=True, text=True, input=stdin, env=env, timeout=120
        )
        assert done.returncode == 0, f"{args}: {done.stderr}"
        return done


def _actions(store: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(store)
    try:
        rows = conn.execute("SELECT action, outcome FROM audit_log ORDER BY seq")
        return [(a, o) for a, o in rows]
    finally:
        conn.close()


def _pending_update(store: Path) -> None:
    """A holder-data update pulled from the platform, waiting for the card (in X)."""
    conn = open_store(store)
    item = {
        "event": {
            "id": "01a21c7d-0000-7000-8000-0000000000b1",
            "category": "holder.changed",
            "occurred_at": "2026-11-27T09:00:00Z",
            "payload": {
                "ssn": SAMPLE_HOLDER["ssn"],
                "card_number": SAMPLE_HOLDER["card_number"],
                "changes": {"birthplace": "310101"},
                "written_to_card": False,
            },
        }
    }
    with transaction(conn):
        inbox.apply_pulled(conn, [item], inbox.cursor(conn) + 1)
    conn.close()


def test_every_state_changing_command_audits_into_the_store_it_was_given(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.run("virtual", "new", str(site.card))  # its emulator key in the data directory
    pw = f"{PASSWORD}\n"
    site.run("operator", "add", "--bootstrap", "admin", "--name", "Admin", "--kdf-cost", "10",
             "--password-fd", "0", stdin=pw)  # fmt: skip
    site.run("operator", "login", "admin", "--password-fd", "0", stdin=pw)
    site.run("operator", "add", "svc", "--name", "Service", "--role", "service",
             "--kdf-cost", "10", "--password-fd", "0", stdin=pw)  # fmt: skip
    site.run("operator", "login", "svc", "--password-fd", "0", who="svc", stdin=pw)
    site.run("operator", "add", "temp", "--name", "Temp", "--role", "service",
             "--kdf-cost", "10", "--password-fd", "0", stdin=pw)  # fmt: skip
    site.run("operator", "passwd", "temp", "--kdf-cost", "10", "--password-fd", "0",
             stdin="another password 2\n")  # fmt: skip
    site.run("operator", "disable", "temp")
    # `sscard issue --store X` as documented: the same store as the global option
    site.run("issue", "--store", str(site.store), "--holder", str(HOLDER), "--keystore", "dev",
             "--random-pin", store=False)  # fmt: skip
    site.run("pin", "reset", "--keystore", "dev", "--pin-stdin", who="svc",
             stdin=f"{NEW_PIN}\n{NEW_PIN}\n")  # fmt: skip
    site.run("pin", "unblock", "--keystore", "dev", who="svc")
    site.run("block", "--reason", "lost", "--keystore", "dev", who="svc")
    site.run("unblock", "--keystore", "dev", who="svc")
    _pending_update(site.store)
    updated = site.run("--json", "holder", "update", "--keystore", "dev", who="svc")
    assert json.loads(updated.stdout)["applied"]
    site.run("read", "--keystore", "dev", who="svc")  # a 3.0 card: the read key
    keystore = str(tmp_path / "centre.ks")
    site.run("keys", "init", keystore, "--kdf-cost", "10")
    site.run("keys", "generate", keystore, "--profile", "national-3")
    payload = {
        "card_serial": "0011223344556677",
        "card_number": "A0000001S",
        "ssn": SAMPLE_HOLDER["ssn"],
    }
    site.run("sync", "enqueue", "card.blocked", "-", "--service-point", "sp-1",
             stdin=json.dumps({**payload, "reason": "lost", "on_card": True}))  # fmt: skip
    site.run("audit", "checkpoint", "--keystore", "dev")
    site.run("backup", "create", str(tmp_path / "backups"), "--kdf-cost", "10",
             "--passphrase-fd", "0", stdin="backup passphrase 1\n")  # fmt: skip

    actions = _actions(site.store)
    for action in (
        "operator.bootstrap",
        "operator.login",
        "operator.add",
        "operator.passwd",
        "operator.disable",
        "card.issue",
        "pin.reset",
        "pin.unblock",
        "card.block",
        "card.unblock",
        "holder.update",
        "card.read",
        "keys.init",
        "keys.generate",
        "sync.run",
        "audit.checkpoint",
        "backup.create",
    ):
        assert (action, "ok") in actions, action
    assert all(outcome == "ok" for _, outcome in actions), actions

    # A refusal is audited in X too (svc may not issue cards).
    refused = subprocess.run(
        [SSCARD, "--store", str(site.store), "keys", "init", str(tmp_path / "no.ks")],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "SSCARD_DATA_DIR": str(site.data_dir),
            "SSCARD_OPERATOR_TOKEN": str(tmp_path / "svc.token"),
        },
        timeout=60,
    )
    assert refused.returncode == 6, refused.stderr
    assert _actions(site.store)[-1] == ("keys.init", "refused")

    # `sscard --store X audit verify` covers every record written.
    verified = site.run("--json", "audit", "verify", "--keystore", "dev")
    report = json.loads(verified.stdout)
    assert report["records"] == len(_actions(site.store)) - 1  # its own record comes after
    assert report["verified_to"] == report["records"]
    # The default store was never opened, not even created.
    assert not (site.data_dir / "sscard.db").exists()
