"""The whole card life with real keys, never the development ones (issue 12, item 1).

A fresh installation runs the chain a centre and a service point run: key
ceremony (roots generated, the vendor's transport root imported under dual
control), a blank card keyed by the "vendor" from that transport root, issue,
read with keys, PIN reset and unblock, holder update and block. The
development key store is poisoned in every process, so any use of it fails the
test. An independent crypto library (``cryptography``'s own SM4 / 3DES)
recomputes the card's internal-authentication key from the root, the card's
city (the holder's region) and its serial, and talks to the card in raw APDUs.

The second chain runs the 3DES profile with the roots inside a SoftHSM2 token.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sscard.applets import load_card
from sscard.auth import OperatorStore, login
from sscard.keys.pkcs11_module import SOFTHSM2
from sscard.keys.software_store import SoftwareKeyStore
from sscard.layout import load_profile
from sscard.transport import InProcessTransport
from tests.cardkit import SAMPLE_HOLDER
from tests.operatorkit import PASSWORD

PASSPHRASE = "centre passphrase 1"
ZONE_PASSPHRASE = "zone transport passphrase 1"
PIN, NEW_PIN = "135790", "246801"
CITY = str(SAMPLE_HOLDER["region"])

# Runs the real CLI with the development keys made unusable: any call fails loudly.
POISONED_CLI = """
import sys
import sscard.keys.dev as dev

def _poisoned(*args, **kwargs):
    raise SystemExit("DEVELOPMENT KEY USED")

dev.development_root = _poisoned
from sscard.cli.main import main
sys.argv[0] = "sscard"
main()
"""


class Chain:
    """A fresh installation in ``root``: its store, data dir and two operators' tokens."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = {
            **os.environ,
            "SSCARD_DATA_DIR": str(root / "data"),
            "SSCARD_STORE": str(root / "sscard.db"),
            "SSCARD_KEYSTORE_PASSPHRASE": PASSPHRASE,
        }
        for name in ("SSCARD_KEYSTORE", "SSCARD_READER", "SSCARD_OPERATOR_TOKEN"):
            self.base.pop(name, None)
        store = OperatorStore.open(root / "sscard.db")
        try:
            store.add("centre-1", "Issuer", "issuer", PASSWORD, bootstrap=True, cost=10)
            store.add("desk-1", "Service desk", "service", PASSWORD, cost=10)
            self.tokens = {}
            for op, role in (("centre-1", "issuer"), ("desk-1", "service")):
                path = root / f"{role}.token"
                login(store, op, PASSWORD, path=path)
                self.tokens[role] = path
        finally:
            store.close()
        self.stderr: list[str] = []

    def run(
        self,
        *args: str,
        role: str = "issuer",
        input: str | None = None,
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        full = {**self.base, "SSCARD_OPERATOR_TOKEN": str(self.tokens[role]), **(env or {})}
        done = subprocess.run(
            [sys.executable, "-c", POISONED_CLI, *args],
            input=input,
            capture_output=True,
            text=True,
            env=full,
            timeout=120,
            pass_fds=pass_fds,
        )
        self.stderr.append(done.stderr)
        return done

    def ok(self, *args: str, **kwargs: Any) -> dict[str, Any]:
        done = self.run("--json", *args, **kwargs)
        assert done.returncode == 0, f"{args}: {done.stderr}"
        out = done.stdout.strip()
        return json.loads(out) if out else {}

    def assert_no_development_key(self) -> None:
        text = "\n".join(self.stderr)
        assert "DEVELOPMENT KEY USED" not in text
        assert "DEVELOPMENT KEY STORE IN USE" not in text


@pytest.fixture
def chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Chain:
    monkeypatch.setenv("SSCARD_DATA_DIR", str(tmp_path / "data"))
    return Chain(tmp_path)


def _fds(*values: str) -> tuple[tuple[int, ...], list[int]]:
    """Pipes holding one line each; (read ends to pass, read ends to close afterwards)."""
    reads = []
    for v in values:
        r, w = os.pipe()
        os.write(w, (v + "\n").encode())
        os.close(w)
        reads.append(r)
    return tuple(reads), reads


# --- an independent construction of the card key ---------------------------------------


def _ecb(key: bytes, data: bytes, algorithm: str) -> bytes:
    cipher = algorithms.SM4(key) if algorithm == "sm4" else TripleDES(key + key[:8])
    enc = Cipher(cipher, modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def _child(key: bytes, factor: bytes, algorithm: str) -> bytes:
    """docs/keys.md, "Algorithms": E_K(F) ‖ E_K(~F) (3DES), E_K(F ‖ ~F) (SM4)."""
    inverted = bytes(b ^ 0xFF for b in factor)
    if algorithm == "sm4":
        return _ecb(key, factor + inverted, "sm4")
    return _ecb(key, factor, "3des") + _ecb(key, inverted, "3des")


def independent_card_key(root: bytes, city: str, serial: bytes, algorithm: str) -> bytes:
    key = root
    for factor in ((city[:2] + "0000sh").encode(), (city + "sx").encode(), serial):
        key = _child(key, factor, algorithm)
    return key


def raw_internal_authenticate(card_path: Path, r8: bytes) -> tuple[bytes, int]:
    """SELECT the application by DF name, INTERNAL AUTHENTICATE: bytes as a terminal sends."""
    transport = InProcessTransport(load_card(str(card_path)))
    transport.connect()
    try:
        df_name = load_profile("national-3").file("SSSE").df_name
        assert df_name is not None
        select = bytes([0x00, 0xA4, 0x04, 0x00, len(df_name)]) + df_name
        assert transport.transmit(select)[-2:] == b"\x90\x00"
        raw = transport.transmit(bytes([0x00, 0x88, 0x00, 0x01, 0x08]) + r8 + b"\x00")
    finally:
        transport.disconnect()
    return raw[:-2], int.from_bytes(raw[-2:], "big")


def _write_holder(path: Path) -> Path:
    path.write_text(json.dumps(SAMPLE_HOLDER, ensure_ascii=False), encoding="utf-8")
    return path


def _life_after_issue(chain: Chain, card: str, keystore: str, holder_store: str) -> None:
    """Read with keys, PIN reset and unblock, holder update, block: at a service desk."""
    read = chain.ok("-r", card, "read", "--keystore", keystore, role="service")
    assert read["ssn"] == SAMPLE_HOLDER["ssn"] and read["departments"]
    reset = chain.ok(
        "-r", card, "pin", "reset", "--pin-stdin", "--keystore", keystore,
        role="service", input=f"{NEW_PIN}\n{NEW_PIN}\n",
    )  # fmt: skip
    assert reset["action"] == "pin.reset"
    for _ in range(6):
        chain.run("-r", card, "pin", "verify", "--pin-stdin", role="service", input="000000\n")
    blocked = chain.ok("-r", card, "pin", "status", role="service")
    assert blocked["tries_left"] == 0
    unblocked = chain.ok("-r", card, "pin", "unblock", "--keystore", keystore, role="service")
    assert unblocked["tries_left"] == 6
    verify = chain.run("-r", card, "pin", "verify", "--pin-stdin", role="service", input=NEW_PIN)
    assert verify.returncode == 0, verify.stderr

    from tests.test_holder_update import pull

    os.environ["SSCARD_STORE"] = holder_store
    try:
        pull("01a21c7d-0000-7000-8000-00000000c0a1", {"name": "张三丰"})
    finally:
        os.environ.pop("SSCARD_STORE")
    updated = chain.ok("-r", card, "holder", "update", "--keystore", keystore, role="service")
    assert updated["applied"][0]["fields"] == ["name"]
    reread = chain.ok("-r", card, "read", "--keystore", keystore, role="service")
    assert reread["name"] == "张三丰"

    chain.ok("-r", card, "block", "--reason", "lost", "--keystore", keystore, role="service")
    info = chain.ok("-r", card, "info", role="service")
    assert info["lifecycle"].startswith("APP_BLOCKED")


def test_the_whole_chain_with_a_fresh_root_store_and_a_zone_store(
    chain: Chain, tmp_path: Path
) -> None:
    centre, zone = str(tmp_path / "centre.ks"), str(tmp_path / "pudong.ks")
    card = tmp_path / "card.img"
    profile = load_profile("national-3")
    # Key ceremony: roots for every slot but the transport key, which the vendor supplies.
    chain.ok("keys", "init", "--kdf-cost", "10", centre, input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    refs = [s.ref for s in profile.key_scheme.slots if s.type != "TK"]
    chain.ok(
        "keys",
        "generate",
        centre,
        "--profile",
        "national-3",
        *[a for r in refs for a in ("--ref", r)],
    )
    c1, c2 = secrets.token_bytes(16), secrets.token_bytes(16)
    vendor_root = bytes(a ^ b for a, b in zip(c1, c2, strict=True))
    vendor_kcv = _ecb(vendor_root, bytes(16), "sm4")[:3].hex().upper()
    fds, reads = _fds(c1.hex(), " ".join(c2.hex()[i : i + 4] for i in range(0, 32, 4)))
    try:
        imported = chain.ok(
            "keys", "import-transport", centre, "--kcv", vendor_kcv,
            *[a for fd in fds for a in ("--component-fd", str(fd))],
            pass_fds=fds,
        )  # fmt: skip
    finally:
        for r in reads:
            os.close(r)
    assert imported["ref"] == "MF/TK/00" and imported["kcv"] == vendor_kcv
    # The service point gets city-level keys only.
    fds, reads = _fds(ZONE_PASSPHRASE)
    try:
        chain.ok(
            "keys", "export-zone", "--kdf-cost", "10", centre, zone, "--city", CITY,
            "--transport-passphrase-fd", str(fds[0]), pass_fds=fds,
        )  # fmt: skip
    finally:
        os.close(reads[0])

    # The vendor delivers a blank card keyed from the transport root.
    blank = chain.ok("virtual", "new", str(card), "--keystore", centre)
    assert blank["transport_keys"] == "key store"
    holder = _write_holder(tmp_path / "holder.json")
    issued = chain.ok(
        "-r", f"virtual:{card}", "issue", "--keystore", centre, "--holder", str(holder),
        "--pin-stdin", input=f"{PIN}\n{PIN}\n",
    )  # fmt: skip
    assert issued["status"] == "issued"

    # An independent construction agrees with the card: root → 310000sh → 310100sx → serial.
    serial = bytes.fromhex(blank["serial"])
    iak_root = SoftwareKeyStore.open(centre, PASSPHRASE).get("SSSE/IAK/01").value
    r8 = secrets.token_bytes(8)
    response, sw = raw_internal_authenticate(card, r8)
    assert sw == 0x9000
    expected = _ecb(independent_card_key(iak_root, CITY, serial, "sm4"), r8 + bytes(8), "sm4")
    assert response == expected

    # The service desk holds the zone store (its own passphrase), never a root.
    chain.base["SSCARD_KEYSTORE_PASSPHRASE"] = ZONE_PASSPHRASE
    _life_after_issue(chain, f"virtual:{card}", zone, chain.base["SSCARD_STORE"])
    chain.assert_no_development_key()


def test_the_poison_catches_a_development_key(chain: Chain, tmp_path: Path) -> None:
    done = chain.run("virtual", "new", str(tmp_path / "dev.img"))
    assert done.returncode != 0 and "DEVELOPMENT KEY USED" in done.stderr


def test_a_development_card_is_refused_by_real_keys(chain: Chain, tmp_path: Path) -> None:
    """A blank card keyed with the published transport key does not open with real keys."""
    centre = str(tmp_path / "centre.ks")
    chain.ok("keys", "init", "--kdf-cost", "10", centre, input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    chain.ok("keys", "generate", centre, "--profile", "national-3")
    card = tmp_path / "dev.img"
    from sscard.applets.factory import new_card_file

    new_card_file(card)  # development transport key (this process is not poisoned)
    holder = _write_holder(tmp_path / "holder.json")
    done = chain.run(
        "-r", f"virtual:{card}", "issue", "--keystore", centre, "--holder", str(holder),
        "--pin-stdin", input=f"{PIN}\n{PIN}\n",
    )  # fmt: skip
    assert done.returncode == 6, done.stderr
    assert "Traceback" not in done.stderr
    assert "transport" in done.stderr and "import-transport" in done.stderr  # the hint
    # Nothing was written to the card: no in_progress row stays, the attempt is closed.
    listed = chain.ok("issue", "list", "--status", "in_progress")
    assert listed == []
    conn = sqlite3.connect(chain.base["SSCARD_STORE"])
    try:
        outcomes = conn.execute("SELECT outcome, error FROM issuance_attempts").fetchall()
    finally:
        conn.close()
    assert outcomes == [("failed", "TransportKeyRefused")]
    info = chain.ok("-r", f"virtual:{card}", "info")
    assert info["lifecycle"] == "BLANK"


def test_import_transport_refuses_a_mistyped_component(chain: Chain, tmp_path: Path) -> None:
    centre = str(tmp_path / "centre.ks")
    chain.ok("keys", "init", "--kdf-cost", "10", centre, input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    c1, c2 = secrets.token_bytes(16), secrets.token_bytes(16)
    root = bytes(a ^ b for a, b in zip(c1, c2, strict=True))
    kcv = _ecb(root, bytes(16), "sm4")[:3].hex().upper()
    typo = bytearray(c2)
    typo[0] ^= 0x01
    for components, problem in (
        ((c1.hex(), typo.hex()), "KCV"),
        ((c1.hex(), c1.hex()), "distinct"),
        ((c1.hex(), "not hex at all"), "32 hexadecimal"),
    ):
        fds, reads = _fds(*components)
        try:
            done = chain.run(
                "keys", "import-transport", centre, "--kcv", kcv,
                *[a for fd in fds for a in ("--component-fd", str(fd))], pass_fds=fds,
            )  # fmt: skip
        finally:
            for r in reads:
                os.close(r)
        assert done.returncode == 7 and problem in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        for secret in components:
            assert secret not in done.stderr
    assert SoftwareKeyStore.open(centre, PASSPHRASE).entries() == []
    service = chain.run("keys", "import-transport", centre, "--kcv", kcv, role="service")
    assert service.returncode == 6


SO_PIN, TOKEN_PIN, TOKEN = "87654321", "123456", "issuing-hsm"


@pytest.mark.skipif(
    not (os.path.exists(SOFTHSM2) and shutil.which("softhsm2-util")),
    reason="SoftHSM2 is not installed (scripts/install-system-deps.sh installs it)",
)
def test_the_whole_chain_on_the_3des_profile_with_a_softhsm2_token(
    chain: Chain, tmp_path: Path
) -> None:
    hsm = tmp_path / "softhsm"
    (hsm / "tokens").mkdir(parents=True)
    conf = hsm / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {hsm}/tokens\nobjectstore.backend = file\n")
    chain.base["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--so-pin", SO_PIN,
         "--pin", TOKEN_PIN],
        check=True, capture_output=True, env=chain.base,
    )  # fmt: skip
    centre = str(tmp_path / "centre.ks")
    chain.ok("keys", "init", "--kdf-cost", "10", centre, input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    chain.ok("keys", "generate", centre, "--profile", "national-2")
    chain.ok("keys", "token-import", centre, "--token", TOKEN, env={"SSCARD_TOKEN_PIN": TOKEN_PIN})
    iak_root = SoftwareKeyStore.open(centre, PASSPHRASE).get("SSSE/IAK/01").value
    os.unlink(centre)  # from here on only the token holds the roots
    token = f"pkcs11:{TOKEN}"
    pin_env = {"SSCARD_KEYSTORE_PASSPHRASE": TOKEN_PIN}
    card = tmp_path / "card.img"
    blank = chain.ok(
        "virtual", "new", str(card), "--profile", "national-2", "--keystore", token, env=pin_env
    )
    holder = _write_holder(tmp_path / "holder.json")
    issued = chain.ok(
        "-r", f"virtual:{card}", "issue", "--keystore", token, "--holder", str(holder),
        "--profile", "national-2", "--pin-stdin", input=f"{PIN}\n{PIN}\n", env=pin_env,
    )  # fmt: skip
    assert issued["status"] == "issued"
    serial = bytes.fromhex(blank["serial"])
    r8 = secrets.token_bytes(8)
    transport = InProcessTransport(load_card(str(card)))
    transport.connect()
    try:
        df_name = load_profile("national-2").file("SSSE").df_name
        assert df_name is not None
        transport.transmit(bytes([0x00, 0xA4, 0x04, 0x00, len(df_name)]) + df_name)
        raw = transport.transmit(bytes([0x00, 0x88, 0x00, 0x01, 0x08]) + r8 + b"\x00")
    finally:
        transport.disconnect()
    assert raw[-2:] == b"\x90\x00"
    assert raw[:-2] == _ecb(independent_card_key(iak_root, CITY, serial, "3des"), r8, "3des")

    chain.base.update(pin_env)
    _life_after_issue(chain, f"virtual:{card}", token, chain.base["SSCARD_STORE"])
    chain.assert_no_development_key()


def test_a_virtual_batch_with_a_root_store(chain: Chain, tmp_path: Path) -> None:
    """``issue batch --virtual N`` makes its blank cards keyed from the store's transport root."""
    from tests.test_issuance_cli import holders

    centre = str(tmp_path / "centre.ks")
    chain.ok("keys", "init", "--kdf-cost", "10", centre, input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    chain.ok("keys", "generate", centre, "--profile", "national-3")
    rows = holders(3)
    path = tmp_path / "holders.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    done = chain.run(
        "--json", "issue", "--keystore", centre, "batch", str(path), "--virtual", "2",
        "--results", str(tmp_path / "r.jsonl"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["status"] for r in results] == ["issued"] * 3
    chain.assert_no_development_key()
