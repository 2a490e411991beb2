"""PKCS#11 back end against a real SoftHSM2 token made in a temp dir (docs/keys.md, "PKCS#11")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute
from pkcs11 import exceptions as p11e

from sscard.cli.exit_codes import ExitCode, exit_code_for
from sscard.errors import (
    KeyExists,
    MechanismUnavailable,
    TokenLocked,
    TokenNotFound,
    WrongTokenPin,
)
from sscard.keys.algorithms import decipher_record, line_mac
from sscard.keys.ceremony import export_zone, generate_root
from sscard.keys.entry import KeyEntry
from sscard.keys.pkcs11_module import SOFTHSM2, Pkcs11SecurityModule, Pkcs11Token, translate
from sscard.keys.records import parse_key_record
from sscard.keys.scheme import KeySlot
from sscard.keys.security_module import SoftwareSecurityModule
from sscard.keys.software_store import ScryptParams, SoftwareKeyStore

pytestmark = pytest.mark.skipif(
    not (os.path.exists(SOFTHSM2) and shutil.which("softhsm2-util")),
    reason="SoftHSM2 is not installed (scripts/install-system-deps.sh installs it)",
)

LABEL, PIN, SO_PIN = "sscard-test", "123456", "87654321"
CITY = "310100"
SERIAL = bytes.fromhex("3100000000000042")
R8 = bytes.fromhex("0102030405060708")
MK = KeySlot("SSSE", "MK", 0, 1, "3des")
EAK = KeySlot("SSSE", "EAK", 1, 1, "3des")
STK = KeySlot("SSSE", "STK", 1, 1, "3des")
TK = KeySlot("MF", "TK", 0, 1, "3des", levels=0)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh SoftHSM2 token directory; SOFTHSM2_CONF points at it for this process."""
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root}/tokens\nobjectstore.backend = file\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", LABEL, "--so-pin", SO_PIN,
         "--pin", PIN],
        check=True, capture_output=True, env=os.environ.copy(),
    )  # fmt: skip
    yield root
    if old is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = old


@pytest.fixture(scope="session")
def roots() -> SoftwareKeyStore:
    return SoftwareKeyStore([generate_root(s) for s in (MK, EAK, STK, TK)])


@pytest.fixture(scope="session")
def token(softhsm: Path, roots: SoftwareKeyStore) -> Iterator[Pkcs11Token]:
    with Pkcs11Token(LABEL, PIN) as tok:
        for e in roots.entries():
            tok.import_key(e)
        yield tok


def test_same_root_same_kcv_and_cryptograms_as_software(
    token: Pkcs11Token, roots: SoftwareKeyStore
) -> None:
    for e in roots.entries():
        assert token.get(e.ref).kcv == e.kcv
    hsm = Pkcs11SecurityModule(token, city=CITY)
    soft = SoftwareSecurityModule(roots, city=CITY)
    for slot in (MK, EAK, STK):
        assert hsm.card_kcv(SERIAL, slot) == soft.card_kcv(SERIAL, slot)
        assert hsm.external_auth(SERIAL, slot, R8) == soft.external_auth(SERIAL, slot, R8)
    data = bytes.fromhex("841E000004")
    assert hsm.mac(SERIAL, STK, data, iv=R8) == soft.mac(SERIAL, STK, data, iv=R8)
    assert hsm.encipher(SERIAL, STK, b"\x06\x12\x34\x56") == soft.encipher(
        SERIAL, STK, b"\x06\x12\x34\x56"
    )


def test_write_key_from_the_token_loads_the_right_card_key(
    token: Pkcs11Token, roots: SoftwareKeyStore
) -> None:
    hsm = Pkcs11SecurityModule(token, city=CITY)
    soft = SoftwareSecurityModule(roots, city=CITY)
    header = bytes.fromhex("84D40101")
    out = hsm.write_key(SERIAL, EAK, under=MK, header=header, challenge=R8)
    assert out.kcv == soft.card_kcv(SERIAL, EAK)
    card_mk = soft._card_key(*soft._resolve(SERIAL, MK))
    enc, mac = out.data[:-4], out.data[-4:]
    assert line_mac(card_mk, header + bytes([len(out.data)]) + enc, iv=R8, algorithm="3des") == mac
    record = parse_key_record(decipher_record(card_mk, enc, algorithm="3des"))
    assert hsm.card_kcv(SERIAL, EAK) == out.kcv
    assert record.type == "EAK" and len(record.value) == 16


def test_roots_are_not_extractable(token: Pkcs11Token) -> None:
    # A second session of this (logged-in) process sees every object the module made.
    with pkcs11.lib(SOFTHSM2).get_token(token_label=LABEL).open() as s:
        found = list(s.get_objects({Attribute.CLASS: pkcs11.ObjectClass.SECRET_KEY}))
        assert len(found) >= 4
        for obj in found:
            key: Any = obj
            assert key[Attribute.EXTRACTABLE] is False
            assert key[Attribute.SENSITIVE] is True
            with pytest.raises(p11e.AttributeSensitive):
                key[Attribute.VALUE]


def test_generated_root_lives_only_in_the_token(token: Pkcs11Token) -> None:
    slot = KeySlot("DF01", "EAK", 1, 1, "3des")
    info = token.generate(slot)
    assert info.depth == 0 and len(info.kcv) == 3
    hsm = Pkcs11SecurityModule(token, city=CITY)
    assert len(hsm.external_auth(SERIAL, slot, R8)) == 8
    with pytest.raises(KeyExists):
        token.generate(slot)


def test_zone_keys_in_a_token_serve_a_service_point(
    token: Pkcs11Token, roots: SoftwareKeyStore
) -> None:
    zone = export_zone([roots.get("SSSE/EAK/01")], "320100")
    zone_entry = KeyEntry(
        "DF02/EAK/01", 1, "3des", 3, 2, zone[0].value, "320100"
    )  # same value under another ref, so it does not clash with the root in the token
    token.import_key(zone_entry)
    hsm = Pkcs11SecurityModule(token, city="320100")
    soft = SoftwareSecurityModule(roots, city="320100")
    assert hsm.external_auth(SERIAL, "DF02/EAK/01", R8) == soft.external_auth(
        SERIAL, "SSSE/EAK/01", R8
    )


def test_sm4_is_a_clear_error_naming_the_mechanism(token: Pkcs11Token) -> None:
    sm4_root = generate_root(KeySlot("DF03", "EAK", 1, 1, "sm4"))
    with pytest.raises(MechanismUnavailable) as info:
        token.import_key(sm4_root)
    assert "SM4" in str(info.value) and "CKM_SM4" in str(info.value)
    assert exit_code_for(info.value) == ExitCode.INVALID_INPUT
    with pytest.raises(MechanismUnavailable):
        token.generate(KeySlot("DF03", "EAK", 1, 1, "sm4"))


def test_undiversified_key_never_leaves_for_a_mac(token: Pkcs11Token) -> None:
    hsm = Pkcs11SecurityModule(token, city=CITY)
    assert len(hsm.external_auth(SERIAL, TK, R8)) == 8  # in-token use is fine
    with pytest.raises(MechanismUnavailable):
        hsm.mac(SERIAL, TK, b"\x84\x16\x00\x00\x04", iv=R8)


_PROBE = """
import sys
from sscard.keys.pkcs11_module import Pkcs11Token
from sscard.cli.exit_codes import exit_code_for
try:
    Pkcs11Token(sys.argv[1], sys.argv[2])
except Exception as exc:
    print(type(exc).__name__, int(exit_code_for(exc)), str(exc))
"""


def test_wrong_pin_and_missing_token(token: Pkcs11Token) -> None:
    # PKCS#11 login is per process, so the wrong PIN is tried in a fresh one.
    # (Test-only argv; real PINs never go on a command line.)
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, LABEL, "000000"],
        capture_output=True, text=True, env=os.environ.copy(), timeout=60,
    )  # fmt: skip
    name, code, message = probe.stdout.split(" ", 2)
    assert (name, int(code)) == (WrongTokenPin.__name__, int(ExitCode.AUTH)), probe.stderr
    assert "000000" not in message
    with pytest.raises(TokenNotFound):
        Pkcs11Token("no-such-token", PIN)
    with pytest.raises(TokenNotFound):
        Pkcs11Token(LABEL, PIN, module="/nonexistent/libpkcs11.so")


def test_locked_pin_maps_to_token_locked() -> None:
    # SoftHSM2 never locks a PIN, so the real lock-out path is exercised through the mapping.
    err = translate(p11e.PinLocked())
    assert isinstance(err, TokenLocked)
    assert exit_code_for(err) == ExitCode.AUTH


def _fresh_token(tmp_path: Path) -> dict[str, str]:
    """A new SoftHSM2 token dir and the environment that points a process at it."""
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path}/tokens\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf), "SSCARD_TOKEN_PIN": PIN}
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "cli", "--so-pin", SO_PIN,
         "--pin", PIN],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    return env


def test_cli_token_import_and_list(tmp_path: Path, softhsm: Path) -> None:
    env = _fresh_token(tmp_path)
    exe = str(Path(sys.executable).with_name("sscard"))
    store = tmp_path / "c.ks"
    pw = "centre passphrase 1"
    SoftwareKeyStore.create(
        store, pw, entries=[generate_root(EAK), generate_root(MK)], scrypt=ScryptParams(n=2**10)
    )
    env["SSCARD_KEYSTORE_PASSPHRASE"] = pw

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, "--json", "keys", *args], capture_output=True, text=True, env=env, timeout=60
        )

    r = run("token-import", str(store), "--token", "cli")
    assert r.returncode == 0, r.stderr
    expected = {e.ref: e.kcv.hex().upper() for e in SoftwareKeyStore.open(store, pw).entries()}
    listed = json.loads(run("token-list", "--token", "cli").stdout)["keys"]
    assert {k["ref"]: k["kcv"] for k in listed} == expected
    # again: the keys exist -> exit 7; a wrong PIN -> exit 6
    assert run("token-import", str(store), "--token", "cli").returncode == 7
    env["SSCARD_TOKEN_PIN"] = "999999"
    assert run("token-list", "--token", "cli").returncode == 6
    env["SSCARD_TOKEN_PIN"] = PIN
    # an SM4 store is refused before anything is imported
    sm4_store = tmp_path / "sm4.ks"
    SoftwareKeyStore.create(
        sm4_store, pw, entries=[generate_root(KeySlot("DF01", "EAK", 1, 1, "sm4"))],
        scrypt=ScryptParams(n=2**10),
    )  # fmt: skip
    r = run("token-import", str(sm4_store), "--token", "cli")
    assert r.returncode == 7 and "SM4" in json.loads(r.stderr)["message"]
    assert len(json.loads(run("token-list", "--token", "cli").stdout)["keys"]) == 2
