"""``sscard audit show | verify | checkpoint | init-key`` (art. 13-14)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner, Result

from sscard import audit, db
from sscard.cli.main import cli
from sscard.keys.software_store import SoftwareKeyStore
from tests.operatorkit import Installation, record

KS_PW = "centre passphrase 1"


def run(*args: str, input: str | None = None) -> Result:
    env = {"SSCARD_KEYSTORE_PASSPHRASE": KS_PW}
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


def _some_history(inst: Installation) -> None:
    admin = inst.add("admin", "issuer")
    svc = inst.add("zhang", "service")
    record("card.issue", operator=admin, outcome="ok", card_number="310115199001011234",
                 card_serial=bytes.fromhex("3100000000000042"))  # fmt: skip
    record("pin.reset", operator=svc, outcome="ok", card_number="310115199001011234")
    record("card.block", operator=svc, outcome="failed", error="CardRemoved",
                 card_number="310115199202022345")  # fmt: skip


def test_show_filters_and_json_for_auditors_only(installation: Installation) -> None:
    _some_history(installation)
    installation.login("zhang", "service")
    assert run("audit", "show").exit_code == 6
    installation.login("audit-1", "auditor")
    r = run("--json", "audit", "show", "--card", "310115199001011234")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [x["action"] for x in rows] == ["card.issue", "pin.reset"]
    assert rows[0]["card_serial"] == "3100000000000042" and rows[0]["role"] == "issuer"
    r = run("--json", "audit", "show", "--card", "3100000000000042")
    assert [x["action"] for x in json.loads(r.output)] == ["card.issue"]
    rows = json.loads(run("--json", "audit", "show", "--operator", "zhang").output)
    assert [(x["action"], x["outcome"]) for x in rows] == [
        ("pin.reset", "ok"), ("card.block", "failed"),
        ("operator.login", "ok"), ("audit.read", "refused"),  # zhang tried to read the trail
    ]  # fmt: skip
    rows = json.loads(run("--json", "audit", "show", "--action", "card").output)
    assert [x["action"] for x in rows] == ["card.issue", "card.block"]
    assert json.loads(run("--json", "audit", "show", "--since", "2099-01-01").output) == []
    assert len(json.loads(run("--json", "audit", "show", "--since", "1h").output)) >= 3
    assert run("audit", "show", "--since", "yesterday-ish").exit_code == 7
    human = run("audit", "show", "--action", "card.block").output
    assert "card.block" in human and "CardRemoved" in human and "zhang/service" in human


def test_verify_exit_codes_and_names_the_first_broken_record(installation: Installation) -> None:
    _some_history(installation)
    installation.login("audit-1", "auditor")
    assert run("audit", "checkpoint", "--keystore", "dev").exit_code == 0
    r = run("--json", "audit", "verify", "--keystore", "dev")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["ok"] and report["checkpoints_verified"] == 1
    raw = sqlite3.connect(installation.store)
    raw.execute("DROP TRIGGER audit_log_no_update")
    raw.execute("UPDATE audit_log SET outcome = 'ok' WHERE action = 'card.block'")
    raw.commit()
    raw.close()
    r = run("audit", "verify", "--keystore", "dev")
    assert r.exit_code == 1
    assert "audit record 3: content does not match its hash" in r.output
    r = run("--json", "audit", "verify")
    assert r.exit_code == 1
    assert json.loads(r.stdout)["first_broken_record"] == 3


def test_checkpoint_key_in_a_key_store_file(installation: Installation, tmp_path: Path) -> None:
    installation.login("admin", "issuer")
    ks = tmp_path / "centre.ks"
    assert run("keys", "init", "--kdf-cost", "10", str(ks)).exit_code == 0
    r = run("audit", "checkpoint", "--keystore", str(ks))
    assert r.exit_code == 7 and "audit init-key" in r.output
    r = run("--json", "audit", "init-key", str(ks))
    assert r.exit_code == 0 and json.loads(r.output)["ref"] == "AUDIT/CPK/01"
    assert run("audit", "checkpoint", "--keystore", str(ks)).exit_code == 0
    assert run("audit", "verify", "--keystore", str(ks)).exit_code == 0
    assert run("audit", "verify", "--keystore", "dev").exit_code == 1  # another key
    entry = SoftwareKeyStore.open(ks, KS_PW).get("AUDIT/CPK/01")
    assert entry.value.hex() not in installation.store.read_bytes().hex()
    steps = [(r.action, r.outcome) for r in audit.records(_conn(installation))]
    assert ("audit.init-key", "ok") in steps and ("audit.checkpoint", "failed") in steps


def _conn(inst: Installation) -> db.Connection:
    return db.open_db(inst.store)


def test_help_has_examples() -> None:
    for cmd in ("show", "verify", "checkpoint", "init-key"):
        r = run("audit", cmd, "--help")
        assert r.exit_code == 0 and "Examples:" in r.output


def _tamper(inst: Installation, statement: str) -> None:
    raw = sqlite3.connect(inst.store)
    raw.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    raw.execute(statement)
    raw.commit()
    raw.close()


def test_show_marks_a_tampered_row_unreadable_and_points_to_verify(
    installation: Installation,
) -> None:
    _some_history(installation)
    record("keys.generate", operator=installation.add("admin", "issuer"), outcome="ok",
                 detail={"ref": "K/01"})  # fmt: skip
    installation.login("audit-1", "auditor")
    _tamper(installation, 'UPDATE audit_log SET detail = \'{"ref": "K/0\' WHERE seq = 4')
    human = run("audit", "show")
    assert human.exit_code == 0, human.output
    line = next(x for x in human.output.splitlines() if x.split()[0] == "4")
    assert "UNREADABLE" in line and "sscard audit verify" in human.output
    r = run("--json", "audit", "show")
    assert r.exit_code == 0, r.output
    row = next(x for x in json.loads(r.stdout) if x["seq"] == 4)
    assert row["detail"] is None and "audit verify" in row["unreadable"]
    assert all("unreadable" not in x for x in json.loads(r.stdout) if x["seq"] != 4)
    _tamper(installation, "UPDATE audit_log SET time = x'ff00' WHERE seq = 2")
    human = run("audit", "show")
    assert human.exit_code == 0, human.output
    assert "UNREADABLE" in next(x for x in human.output.splitlines() if x.split()[0] == "2")
    assert run("--json", "audit", "show").exit_code == 0
    r = run("audit", "verify")
    assert r.exit_code == 1 and "audit record 2" in r.output


def test_verify_names_a_row_with_a_garbled_hash_instead_of_crashing(
    installation: Installation,
) -> None:
    _some_history(installation)
    installation.login("audit-1", "auditor")
    _tamper(installation, "UPDATE audit_log SET prev_hash = 'not hex' WHERE seq = 2")
    r = run("audit", "verify")
    assert r.exit_code == 1 and "audit record 2" in r.output, r.output
