"""The software key store file: encryption at rest, typed failures, atomic writes (docs/keys.md)."""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path

import pytest

from sscard.errors import (
    AuthenticationError,
    CorruptKeyStore,
    InvalidInput,
    KeyExists,
    UnknownKeyReference,
    WrongKeyLength,
    WrongPassphrase,
)
from sscard.keys.entry import KeyEntry
from sscard.keys.software_store import MAGIC, ScryptParams, SoftwareKeyStore

FAST = ScryptParams(n=2**10)  # test-only cost; the default is 2**17
PASS = "correct horse battery"
ROOT = bytes.fromhex("00112233445566778899AABBCCDDEEFF")


def _entry(version: int = 1, value: bytes = ROOT, algorithm: str = "sm4") -> KeyEntry:
    return KeyEntry("SSSE/EAK/01", version, algorithm, 3, 0, value)


def _store(tmp_path: Path) -> Path:
    path = tmp_path / "roots.ks"
    SoftwareKeyStore.create(path, PASS, entries=[_entry()], scrypt=FAST)
    return path


def test_round_trip_keeps_keys(tmp_path: Path) -> None:
    path = _store(tmp_path)
    store = SoftwareKeyStore.open(path, PASS)
    e = store.get("SSSE/EAK/01")
    assert e.value == ROOT and e.version == 1 and e.algorithm == "sm4"
    store.add(_entry(2, bytes(range(16))))
    store.save()
    again = SoftwareKeyStore.open(path, PASS)
    assert again.versions("SSSE/EAK/01") == [1, 2]
    assert again.get("SSSE/EAK/01").version == 2  # highest by default


def test_file_is_private_and_holds_no_clear_key(tmp_path: Path) -> None:
    path = _store(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    blob = path.read_bytes()
    assert blob.startswith(MAGIC)
    assert ROOT not in blob and ROOT.hex().encode() not in blob
    assert ROOT.hex().upper().encode() not in blob
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_wrong_passphrase_is_typed_and_an_authentication_error(tmp_path: Path) -> None:
    path = _store(tmp_path)
    with pytest.raises(WrongPassphrase) as info:
        SoftwareKeyStore.open(path, PASS + "x")
    assert isinstance(info.value, AuthenticationError)
    assert PASS not in str(info.value)


def _flip(path: Path, offset: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x01
    path.write_bytes(bytes(blob))


def test_tampered_body_is_corrupt_not_garbage(tmp_path: Path) -> None:
    path = _store(tmp_path)
    _flip(path, len(path.read_bytes()) - 20)
    with pytest.raises(CorruptKeyStore):
        SoftwareKeyStore.open(path, PASS)


def test_tampered_header_fails(tmp_path: Path) -> None:
    path = _store(tmp_path)
    blob = path.read_bytes()
    (n,) = struct.unpack(">H", blob[8:10])
    header = json.loads(blob[10 : 10 + n])
    header["kind"] = "zone"  # same length change is not needed: length is in the AAD
    hb = json.dumps(header, sort_keys=True).encode()
    path.write_bytes(MAGIC + struct.pack(">H", len(hb)) + hb + blob[10 + n :])
    with pytest.raises(CorruptKeyStore):
        SoftwareKeyStore.open(path, PASS)


@pytest.mark.parametrize("content", [b"", b"hello", MAGIC + b"\x00\x05{}", MAGIC + b"\xff\xff"])
def test_not_a_store_is_corrupt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.ks"
    path.write_bytes(content)
    with pytest.raises(CorruptKeyStore):
        SoftwareKeyStore.open(path, PASS)


def test_truncated_file_is_corrupt(tmp_path: Path) -> None:
    path = _store(tmp_path)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(CorruptKeyStore):
        SoftwareKeyStore.open(path, PASS)


def test_hostile_scrypt_cost_is_refused(tmp_path: Path) -> None:
    path = _store(tmp_path)
    blob = path.read_bytes()
    (n,) = struct.unpack(">H", blob[8:10])
    header = json.loads(blob[10 : 10 + n])
    header["n"] = 2**30
    hb = json.dumps(header).encode()
    path.write_bytes(MAGIC + struct.pack(">H", len(hb)) + hb + blob[10 + n :])
    with pytest.raises(CorruptKeyStore):
        SoftwareKeyStore.open(path, PASS)


def test_create_refuses_overwrite_and_short_passphrase(tmp_path: Path) -> None:
    path = _store(tmp_path)
    before = path.read_bytes()
    with pytest.raises(InvalidInput):
        SoftwareKeyStore.create(path, PASS, scrypt=FAST)
    assert path.read_bytes() == before
    with pytest.raises(InvalidInput):
        SoftwareKeyStore.create(tmp_path / "new.ks", "short", scrypt=FAST)
    assert not (tmp_path / "new.ks").exists()


def test_default_scrypt_cost_is_strong() -> None:
    assert ScryptParams().n >= 2**17 and ScryptParams().r >= 8


def test_lookup_errors_are_typed(tmp_path: Path) -> None:
    store = SoftwareKeyStore.open(_store(tmp_path), PASS)
    with pytest.raises(UnknownKeyReference):
        store.get("DF01/EAK/01")
    with pytest.raises(UnknownKeyReference):
        store.get("SSSE/EAK/01", 9)
    with pytest.raises(KeyExists):
        store.add(_entry())


def test_entry_validation_and_redaction() -> None:
    with pytest.raises(WrongKeyLength):
        _entry(value=bytes(8))
    with pytest.raises(InvalidInput):
        KeyEntry("not a ref", 1, "sm4", 3, 0, ROOT)
    with pytest.raises(InvalidInput):
        KeyEntry("SSSE/EAK/01", 1, "sm4", 3, 2, ROOT)  # zone key without a city
    e = _entry()
    assert ROOT.hex() not in repr(e).lower() and "redacted" in repr(e)
    assert "value" not in e.info()


def test_save_failure_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _store(tmp_path)
    before = path.read_bytes()
    store = SoftwareKeyStore.open(path, PASS)
    store.add(_entry(2))

    def boom(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.save()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
