"""Encrypted, integrity-protected backups of the local stores (regulation art. 15: backups).

``create`` snapshots every SQLite database in the data directory with the
SQLite online backup API (one consistent read transaction per database, while
other processes keep writing) and adds the key store files given, into one
archive::

    b"SSCARDBK" ‖ u16 header length ‖ header (JSON) ‖ AES-256-GCM(tar.gz)

The header carries the scrypt parameters, salt, nonce and a passphrase check
value and is the GCM associated data: a changed byte anywhere is refused. The
tar holds ``manifest.json`` (names, sizes, SHA-256 of every file) and the files.

``restore`` decrypts and checks everything (GCM, manifest hashes, SQLite
``integrity_check``) before it touches anything, stages the files beside their
targets, then moves them into place following a journal
(``.restore-pending.json`` in the data directory): an interrupted restore is
completed by the next ``restore`` and a refused one changes nothing. Stop every
sscard process that uses the data directory before restoring.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import struct
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sscard import __version__
from sscard.clock import iso, now_utc
from sscard.errors import CorruptBackup, InvalidInput, WrongBackupPassphrase
from sscard.fileio import atomic_write, fsync_dir
from sscard.i18n import _
from sscard.keys.software_store import ScryptParams
from sscard.paths import data_dir

MAGIC = b"SSCARDBK"
FORMAT = 1
SUFFIX = ".ssbk"
JOURNAL = ".restore-pending.json"
MIN_PASSPHRASE = 8
_DB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.db$")
_KS_NAME = re.compile(r"^[0-9]{2}-[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class BackupInfo:
    """What an archive holds (its manifest), and where it is."""

    path: Path
    created: str
    databases: list[dict[str, Any]] = field(default_factory=list)
    keystores: list[dict[str, Any]] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        """For JSON output (names, sizes, hashes; nothing secret)."""
        return {
            "archive": str(self.path),
            "created": self.created,
            "databases": self.databases,
            "keystores": self.keystores,
        }


# --- crypto -----------------------------------------------------------------------


def _derive(passphrase: str, salt: bytes, params: ScryptParams) -> tuple[bytes, bytes]:
    out = hashlib.scrypt(
        passphrase.encode("utf-8"), salt=salt, n=params.n, r=params.r, p=params.p,
        maxmem=256 * 1024 * 1024 + 128 * params.r * params.n * 2, dklen=64,
    )  # fmt: skip
    return out[:32], out[32:]


def _check_value(mac_key: bytes) -> bytes:
    return hmac.new(mac_key, b"sscard backup passphrase check", "sha256").digest()[:16]


def _seal(body: bytes, passphrase: str, params: ScryptParams, created: str) -> bytes:
    if len(passphrase) < MIN_PASSPHRASE:
        raise InvalidInput(
            _("passphrase too short"),
            [("passphrase", _("at least {count} characters").format(count=MIN_PASSPHRASE))],
        )
    params.check()
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    key, mac_key = _derive(passphrase, salt, params)
    header = {
        "format": FORMAT, "kdf": "scrypt", "n": params.n, "r": params.r, "p": params.p,
        "salt": salt.hex(), "cipher": "aes-256-gcm", "nonce": nonce.hex(),
        "check": _check_value(mac_key).hex(), "created": created,
    }  # fmt: skip
    hb = json.dumps(header, sort_keys=True).encode("utf-8")
    raw_header = MAGIC + struct.pack(">H", len(hb)) + hb
    return raw_header + AESGCM(key).encrypt(nonce, body, raw_header)


def _open_sealed(blob: bytes, passphrase: str) -> tuple[dict[str, Any], bytes]:
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 2:
        raise CorruptBackup(_("not an sscard backup archive"))
    (n,) = struct.unpack(">H", blob[len(MAGIC) : len(MAGIC) + 2])
    end = len(MAGIC) + 2 + n
    if len(blob) < end + 16:
        raise CorruptBackup(_("the backup archive is truncated"))
    try:
        header = json.loads(blob[len(MAGIC) + 2 : end].decode("utf-8"))
        params = ScryptParams(int(header["n"]), int(header["r"]), int(header["p"]))
        salt, nonce = bytes.fromhex(header["salt"]), bytes.fromhex(header["nonce"])
        check = bytes.fromhex(header["check"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise CorruptBackup(_("the backup archive header is not readable")) from None
    if header.get("format") != FORMAT:
        raise CorruptBackup(_("unsupported backup format"))
    try:
        params.check()
    except InvalidInput:
        raise CorruptBackup(_("the backup archive has out-of-range scrypt parameters")) from None
    key, mac_key = _derive(passphrase, salt, params)
    if not hmac.compare_digest(_check_value(mac_key), check):
        raise WrongBackupPassphrase(
            _("wrong passphrase for this backup (or its header was altered); nothing was restored")
        )
    try:
        body = AESGCM(key).decrypt(nonce, blob[end:], blob[:end])
    except InvalidTag:
        raise CorruptBackup(
            _("the backup archive failed its integrity check (tampered or damaged)")
        ) from None
    return header, body


# --- create -------------------------------------------------------------------------


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


def _snapshot(path: Path, tmp: Path) -> bytes:
    """A consistent copy of the database at ``path`` (SQLite online backup API)."""
    target = tmp / f"{path.name}.snapshot"
    src = sqlite3.connect(path, timeout=10)
    try:
        src.execute("PRAGMA busy_timeout = 10000")
        dest = sqlite3.connect(target)
        try:
            src.backup(dest)  # all pages in one step: one read transaction
            dest.execute("PRAGMA journal_mode = DELETE")  # a self-contained file
        finally:
            dest.close()
    finally:
        src.close()
    data = target.read_bytes()
    target.unlink()
    return data


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    member.mode = 0o600
    tar.addfile(member, io.BytesIO(data))


def databases(directory: Path | None = None) -> list[Path]:
    """The sscard SQLite databases in the data directory (``*.db``), by name."""
    d = directory or data_dir()
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("*.db") if p.is_file() and _is_sqlite(p))


def create(
    out_dir: Path,
    passphrase: str,
    *,
    keystores: Sequence[Path] = (),
    directory: Path | None = None,
    scrypt: ScryptParams | None = None,
) -> BackupInfo:
    """Write an encrypted backup archive into ``out_dir`` (mode 0600) and describe it."""
    src_dir = directory or data_dir()
    dbs = databases(src_dir)
    if not dbs and not keystores:
        raise InvalidInput(
            _("nothing to back up"),
            [
                (
                    "data",
                    _("no sscard database in {directory} and no key store").format(
                        directory=src_dir
                    ),
                )
            ],
        )
    created = iso(now_utc())
    info = BackupInfo(path=Path(), created=created)
    buf = io.BytesIO()
    with (
        tempfile.TemporaryDirectory(prefix="sscard-backup-") as tmp,
        tarfile.open(fileobj=buf, mode="w:gz") as tar,
    ):
        files: list[tuple[str, bytes]] = []
        for db in dbs:
            data = _snapshot(db, Path(tmp))
            files.append((f"db/{db.name}", data))
            info.databases.append(
                {"name": db.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            )
        for i, ks in enumerate(keystores, 1):
            try:
                data = Path(ks).read_bytes()
            except OSError as exc:
                raise InvalidInput(_("cannot read key store"), [(str(ks), str(exc))]) from None
            if not data.startswith(b"SSCARDKS"):
                raise InvalidInput(
                    _("not a key store"), [(str(ks), _("not an sscard key store file"))]
                )
            name = f"{i:02d}-{Path(ks).name}"
            files.append((f"keystores/{name}", data))
            info.keystores.append(
                {"name": name, "path": str(Path(ks).resolve()), "size": len(data),
                 "sha256": hashlib.sha256(data).hexdigest()}
            )  # fmt: skip
        manifest = {"format": FORMAT, "sscard": __version__, **info.info()}
        del manifest["archive"]
        _add(tar, "manifest.json", json.dumps(manifest, indent=2).encode("utf-8"))
        for name, data in files:
            _add(tar, name, data)
    blob = _seal(buf.getvalue(), passphrase, scrypt or ScryptParams(), created)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = created[:19].replace("-", "").replace(":", "")
    path = out_dir / f"sscard-backup-{stamp}Z-{secrets.token_hex(2)}{SUFFIX}"
    atomic_write(path, blob)
    info.path = path
    return info


# --- restore ------------------------------------------------------------------------


def _unpack(body: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
            members: dict[str, bytes] = {}
            for m in tar.getmembers():
                if not m.isfile():
                    raise CorruptBackup(
                        _("unexpected archive member {name}").format(name=repr(m.name))
                    )
                f = tar.extractfile(m)
                assert f is not None
                members[m.name] = f.read()
        manifest = json.loads(members.pop("manifest.json").decode("utf-8"))
    except (tarfile.TarError, KeyError, ValueError, OSError):
        raise CorruptBackup(_("the backup archive content is not valid")) from None
    expected: dict[str, str] = {}
    for db in manifest.get("databases", []):
        if not _DB_NAME.match(str(db.get("name", ""))):
            raise CorruptBackup(_("the backup names a database file it may not restore"))
        expected[f"db/{db['name']}"] = db["sha256"]
    for ks in manifest.get("keystores", []):
        if not _KS_NAME.match(str(ks.get("name", ""))):
            raise CorruptBackup(_("the backup names a key store file it may not restore"))
        expected[f"keystores/{ks['name']}"] = ks["sha256"]
    if set(members) != set(expected):
        raise CorruptBackup(_("the backup archive does not match its manifest"))
    for name, digest in expected.items():
        if hashlib.sha256(members[name]).hexdigest() != digest:
            raise CorruptBackup(
                _("{name} does not match its hash in the manifest").format(name=name)
            )
    return manifest, members


def _check_database(path: Path) -> None:
    """SQLite's integrity check; operator sessions are not restored (log in again)."""
    try:
        conn = sqlite3.connect(path)
        try:
            (result,) = conn.execute("PRAGMA integrity_check").fetchone()
            if (
                result == "ok"
                and conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = 'operator_sessions'"
                ).fetchone()
            ):
                conn.execute("DELETE FROM operator_sessions")
                conn.commit()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        result = "not a database"
    if result != "ok":
        raise CorruptBackup(
            _("{name} in the backup fails SQLite's integrity check").format(name=path.name)
        )


def inspect(archive: Path, passphrase: str) -> BackupInfo:
    """Decrypt and check an archive without restoring it."""
    manifest, _members = _unpack(_open_sealed(_read(archive), passphrase)[1])
    return BackupInfo(archive, manifest["created"], manifest["databases"], manifest["keystores"])


def _read(archive: Path) -> bytes:
    try:
        return Path(archive).read_bytes()
    except OSError as exc:
        raise InvalidInput(_("cannot read the backup"), [(str(archive), str(exc))]) from None


def restore(
    archive: Path,
    passphrase: str,
    *,
    directory: Path | None = None,
    keystore_dir: Path | None = None,
) -> BackupInfo:
    """Restore an archive: every database into the data directory, key stores to their
    original paths (or into ``keystore_dir``). Checks everything first; all or nothing."""
    target_dir = directory or data_dir()
    finish_pending(target_dir)
    _header, body = _open_sealed(_read(archive), passphrase)
    manifest, members = _unpack(body)
    target_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=target_dir))
    moves: list[tuple[str, str]] = []
    try:
        for db in manifest["databases"]:
            staged = staging / db["name"]
            atomic_write(staged, members[f"db/{db['name']}"])
            _check_database(staged)
            moves.append((str(staged), str(target_dir / db["name"])))
        for ks in manifest["keystores"]:
            original = Path(ks["path"])
            dest = (keystore_dir / original.name) if keystore_dir else original
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            staged = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.restore")
            atomic_write(staged, members[f"keystores/{ks['name']}"])
            moves.append((str(staged), str(dest)))
    except BaseException:
        for staged, _target in moves:
            Path(staged).unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    atomic_write(target_dir / JOURNAL, json.dumps({"moves": moves}).encode("utf-8"))
    finish_pending(target_dir)
    shutil.rmtree(staging, ignore_errors=True)
    return BackupInfo(archive, manifest["created"], manifest["databases"], manifest["keystores"])


def finish_pending(directory: Path | None = None) -> bool:
    """Complete a restore that was interrupted after its checks; whether there was one."""
    d = directory or data_dir()
    journal = d / JOURNAL
    try:
        moves = json.loads(journal.read_text(encoding="utf-8"))["moves"]
    except FileNotFoundError:
        return False
    except (ValueError, KeyError, OSError):
        raise CorruptBackup(
            _("{journal} is damaged; restore the backup again").format(journal=journal)
        ) from None
    for staged, target in moves:
        src, dest = Path(staged), Path(target)
        if not src.exists():
            continue  # already moved
        if dest.suffix == ".db":
            for extra in ("-wal", "-shm", "-journal"):
                Path(str(dest) + extra).unlink(missing_ok=True)
        os.replace(src, dest)
        fsync_dir(dest.parent)
    journal.unlink()
    fsync_dir(d)
    return True
