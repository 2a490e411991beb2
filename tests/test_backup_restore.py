"""``sscard backup create | restore``: encrypted, refuses tampered or foreign archives,
never half-restores (art. 15)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sscard import audit, backup, db
from sscard.cli.main import cli
from sscard.errors import CorruptBackup, WrongBackupPassphrase
from sscard.keys.software_store import ScryptParams, SoftwareKeyStore
from tests.operatorkit import Installation, record

PW = "backup passphrase 1"
KS_PW = "centre passphrase 1"
CARD = "310115199001011234"


def run(*args: str, pw: str = PW) -> Result:
    env = {"SSCARD_BACKUP_PASSPHRASE": pw, "SSCARD_KEYSTORE_PASSPHRASE": KS_PW}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def backed_up(installation: Installation, tmp_path: Path) -> tuple[Path, Path]:
    """An installation with history and a key store; its archive."""
    op = installation.login("admin", "issuer")
    ks = tmp_path / "keys" / "centre.ks"
    ks.parent.mkdir()
    SoftwareKeyStore.create(ks, KS_PW, scrypt=ScryptParams(n=2**10))
    record("card.issue", operator=op, outcome="ok", card_number=CARD)
    r = run("--json", "backup", "create", str(tmp_path / "bk"), "--keystore", str(ks),
            "--kdf-cost", "10")  # fmt: skip
    assert r.exit_code == 0, r.output
    archive = Path(json.loads(r.output)["archive"])
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    return archive, ks


def _mark(inst: Installation) -> None:
    """A change made after the backup: a restore would remove it."""
    conn = sqlite3.connect(inst.store)
    conn.execute("CREATE TABLE after_backup (x)")
    conn.close()


def _untouched(inst: Installation) -> bool:
    conn = db.open_db(inst.store)
    try:
        marked = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'after_backup'").fetchone()
        return marked is not None and audit.verify(conn).ok
    finally:
        conn.close()


def test_archive_is_encrypted(backed_up: tuple[Path, Path]) -> None:
    archive, ks = backed_up
    blob = archive.read_bytes()
    assert blob.startswith(b"SSCARDBK")
    for clear in (CARD.encode(), b"SQLite format 3", b"admin", ks.read_bytes()[:40]):
        assert clear not in blob


def test_restore_brings_back_stores_and_key_store(
    installation: Installation, backed_up: tuple[Path, Path]
) -> None:
    archive, ks = backed_up
    ks_before = ks.read_bytes()
    ks.unlink()
    conn = sqlite3.connect(installation.store)
    conn.execute("CREATE TABLE scratch (x)")  # a change after the backup
    conn.close()
    r = run("backup", "restore", str(archive))
    assert r.exit_code == 0, r.output
    assert ks.read_bytes() == ks_before
    conn = db.open_db(installation.store)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "scratch" not in names
    assert [r.card_number for r in audit.records(conn, action="card.issue")] == [CARD]
    assert conn.execute("SELECT count(*) FROM operator_sessions").fetchone()[0] == 0
    assert audit.verify(conn).ok
    conn.close()
    assert run("operator", "whoami").exit_code == 6  # sessions are not restored


def test_tampered_foreign_and_wrong_passphrase_archives_change_nothing(
    installation: Installation, backed_up: tuple[Path, Path], tmp_path: Path
) -> None:
    archive, _ = backed_up
    _mark(installation)
    blob = bytearray(archive.read_bytes())
    cases = {}
    for offset in (12, len(blob) // 2, len(blob) - 1):  # header, body, GCM tag
        bad = bytearray(blob)
        bad[offset] ^= 0x01
        cases[f"flip{offset}"] = bytes(bad)
    cases["truncated"] = bytes(blob[: len(blob) // 2])
    cases["foreign"] = b"PK\x03\x04 a zip file, not ours" * 10
    key_store = SoftwareKeyStore.create(tmp_path / "x.ks", KS_PW, scrypt=ScryptParams(n=2**10))
    cases["keystore"] = Path(str(key_store.path)).read_bytes()
    for name, data in cases.items():
        bad_path = tmp_path / f"{name}.ssbk"
        bad_path.write_bytes(data)
        r = run("backup", "restore", str(bad_path))
        assert r.exit_code in (6, 7), (name, r.output)
        assert "nothing was restored" in r.output, name
    r = run("backup", "restore", str(archive), pw="not the passphrase")
    assert r.exit_code == 6 and "not the passphrase" not in r.output
    with pytest.raises(WrongBackupPassphrase):
        backup.restore(archive, "not the passphrase")
    assert _untouched(installation)
    assert not [p for p in installation.data_dir.iterdir() if p.name.startswith(".restore")]
    conn = db.open_db(installation.store)
    refused = [(r.outcome, r.error) for r in audit.records(conn, action="backup.restore")]
    assert refused[0] == ("failed", "CorruptBackup") and len(refused) == len(cases) + 1
    assert refused[-1] == ("failed", "WrongBackupPassphrase")


def test_a_restore_failing_while_staging_changes_nothing(
    installation: Installation, backed_up: tuple[Path, Path], tmp_path: Path
) -> None:
    archive, _ = backed_up
    _mark(installation)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the key store directory should be")
    with pytest.raises(OSError):
        backup.restore(archive, PW, keystore_dir=blocker)
    assert _untouched(installation)
    assert not [p for p in installation.data_dir.iterdir() if p.name.startswith(".restore")]


def test_an_interrupted_restore_is_completed_by_the_next(
    installation: Installation,
    backed_up: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    archive, ks = backed_up
    ks.write_bytes(b"SSCARDKS changed after the backup")
    real_replace = os.replace
    calls = []

    def crash_on_second(src: object, dst: object) -> None:
        calls.append(dst)
        if str(dst) == str(ks):
            raise OSError("power cut")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(backup.os, "replace", crash_on_second)
    with pytest.raises(OSError, match="power cut"):
        backup.restore(archive, PW)
    monkeypatch.setattr(backup.os, "replace", real_replace)
    assert (installation.data_dir / backup.JOURNAL).exists()
    assert backup.finish_pending(installation.data_dir)
    assert SoftwareKeyStore.open(ks, KS_PW).entries() == []  # the backed-up store is back
    assert not (installation.data_dir / backup.JOURNAL).exists()


def test_only_an_issuer_restores_but_a_new_installation_may(
    installation: Installation, backed_up: tuple[Path, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    archive, _ = backed_up
    installation.login("zhang", "service")
    assert run("backup", "create", str(tmp_path / "bk2"), "--kdf-cost", "10").exit_code == 0
    assert run("backup", "restore", str(archive)).exit_code == 6
    fresh = tmp_path / "new-machine"
    monkeypatch.setenv("SSCARD_DATA_DIR", str(fresh))
    monkeypatch.setenv("SSCARD_OPERATOR_TOKEN", str(tmp_path / "new.token"))
    r = run("backup", "restore", str(archive))
    assert r.exit_code == 0, r.output
    conn = db.open_db(fresh / "sscard.db")
    last = audit.records(conn)[-1]
    assert (last.action, last.operator, last.outcome) == ("backup.restore", None, "ok")
    assert audit.verify(conn).ok


def test_inspect_and_tampered_manifest(backed_up: tuple[Path, Path]) -> None:
    archive, _ = backed_up
    info = backup.inspect(archive, PW)
    assert [d["name"] for d in info.databases] == ["sscard.db"]
    assert info.keystores[0]["name"] == "01-centre.ks"
    with pytest.raises(CorruptBackup):
        backup._unpack(b"not gzip")


def test_help_has_examples() -> None:
    for cmd in ("create", "restore"):
        r = run("backup", cmd, "--help")
        assert r.exit_code == 0 and "Examples:" in r.output
