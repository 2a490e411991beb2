"""The service-point flows with a PSAM as the key store (docs/keys.md, "PSAM").

In-process: every cryptogram and MAC the PSAM computes equals one made with
fresh ``cryptography`` ciphers from the key store's roots for the same card.
Through pcscd + vpcd: a PSAM issued with the real CLI from a real key store in
one reader, a 2.0 or 3.0 card in the other, every service-point flow with
``--keystore psam:READER``. Errors: national codes in the ``--json`` error
object, the card unchanged, the failure audited.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sscard import errors
from sscard.applets.factory import new_memory_psam, new_psam_file, open_psam_file
from sscard.applets.pcsc_rig import VPCD_READERS, reader_lock
from sscard.card import SocialSecurityCard
from sscard.issuance.psam import issue_psam, withdraw_psam
from sscard.keys.dev import development_module
from sscard.keys.psam_module import Psam, PsamMissing, PsamSecurityModule
from sscard.layout import load_profile
from sscard.pin import PinManager
from sscard.transport import InProcessTransport, pcsc
from sscard.vocab import KeyType
from tests.cardkit import PIN, dev_module
from tests.cardkit import issue as issue_in_process
from tests.test_psam_applet import ref_mac
from tests.test_real_keys import PASSPHRASE, Chain, _child, _ecb, _write_holder

PROFILES = {"national-3": "sm4", "national-2": "3des"}
CITY = "310100"
TERMINAL = "310100000001"
PSAM_SERIAL = bytes.fromhex("5053414D00000007")
CARD_SERIAL = bytes.fromhex("5353430300000042")
CHALLENGE = bytes.fromhex("0102030405060708")
PROCESS_FACTOR = bytes.fromhex("A1A2A3A4A5A6A7A8")
NEW_PIN = "246801"


@pytest.fixture
def chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Chain:
    """A fresh installation whose CLI processes cannot use the development keys."""
    monkeypatch.setenv("SSCARD_DATA_DIR", str(tmp_path / "data"))
    return Chain(tmp_path)


# --- an independent construction from the roots ----------------------------------------


def dev_root(ref: str, algorithm: str) -> bytes:
    """docs/keys.md, "Development keys": SHA-256("sscard development root|ref|1|alg")[:16]."""
    return hashlib.sha256(f"sscard development root|{ref}|1|{algorithm}".encode()).digest()[:16]


def city_key(root: bytes, algorithm: str) -> bytes:
    for factor in ((CITY[:2] + "0000sh").encode(), (CITY + "sx").encode()):
        root = _child(root, factor, algorithm)
    return root


def card_key(ref: str, algorithm: str, serial: bytes = CARD_SERIAL) -> bytes:
    return _child(city_key(dev_root(ref, algorithm), algorithm), serial, algorithm)


def _padded(data: bytes, n: int) -> bytes:
    data += b"\x80"
    return data + bytes(-len(data) % n)


def dev_psam(profile: str, kind: str = "service") -> tuple[Any, InProcessTransport]:
    """An emulated PSAM issued in-process from the development key store."""
    psam = new_memory_psam(PSAM_SERIAL, profile_name=profile)
    transport = InProcessTransport(psam)
    issue_psam(
        transport,
        dev_module(profile),
        load_profile(profile),
        kind=kind,
        city=CITY,
        terminal=TERMINAL,
    )
    return psam, transport


@pytest.mark.parametrize("profile", PROFILES)
def test_the_psam_computes_what_the_roots_give(profile: str) -> None:
    alg = PROFILES[profile]
    n = 16 if alg == "sm4" else 8
    _, transport = dev_psam(profile)
    held = Psam(transport)
    module = PsamSecurityModule(held)
    software = dev_module(profile).for_city(CITY)
    slots = load_profile(profile).key_scheme
    eak, iak = slots.find("SSSE", KeyType.EAK, 1), slots.find("SSSE", KeyType.IAK, 1)
    stk, rpk = slots.find("SSSE", KeyType.STK, 1), slots.find("SSSE", KeyType.RPK, 1)
    block = CHALLENGE + bytes(n - 8)

    # The PSAM holds city keys: their KCVs are those of the roots diversified twice.
    for key in held.keys:
        assert key.kcv == _ecb(city_key(dev_root(key.ref, alg), alg), bytes(n), alg)[:3], key.ref
    assert module.terminal_number == TERMINAL and module.city == CITY

    expected = _ecb(card_key(eak.ref, alg), block, alg)
    assert module.external_auth(CARD_SERIAL, eak, CHALLENGE) == expected
    assert software.external_auth(CARD_SERIAL, eak, CHALLENGE) == expected

    read_ref = "SSSE/RK/0A" if alg == "sm4" else iak.ref  # 2.0 has no RK: a 2-level IAK
    session = _child(card_key(read_ref, alg), PROCESS_FACTOR, alg)
    got = module.external_auth(CARD_SERIAL, read_ref, CHALLENGE, process_factor=PROCESS_FACTOR)
    assert got == _ecb(session, block, alg)

    data = bytes.fromhex("841E000004")
    assert module.mac(CARD_SERIAL, stk, data, iv=CHALLENGE) == ref_mac(
        alg, card_key(stk.ref, alg), data, CHALLENGE
    )
    assert module.mac(CARD_SERIAL, stk, data, iv=CHALLENGE) == software.mac(
        CARD_SERIAL, stk, data, iv=CHALLENGE
    )

    pin_block = bytes.fromhex("03135790")
    assert module.encipher(CARD_SERIAL, rpk, pin_block) == _ecb(
        card_key(rpk.ref, alg), _padded(bytes((len(pin_block),)) + pin_block, n), alg
    )

    code = bytes.fromhex("310100D156000005") + CARD_SERIAL
    assert module.card_id_mac(CARD_SERIAL, iak, code) == ref_mac(
        alg, card_key(iak.ref, alg), code, bytes(8)
    )
    genuine = _ecb(card_key(iak.ref, alg), block, alg)
    assert module.verify_internal_auth(CARD_SERIAL, iak, CHALLENGE, genuine)
    assert not module.verify_internal_auth(CARD_SERIAL, iak, CHALLENGE, bytes(len(genuine)))
    # Another card, another key: the PSAM diversifies by the serial it is given.
    other = bytes.fromhex("5353430300000043")
    assert module.external_auth(other, eak, CHALLENGE) != expected


def test_a_psam_reissued_gets_new_versions_and_a_withdrawn_one_holds_no_key() -> None:
    """Rotation: issuing again from a store with version 2 adds it beside version 1; the
    module takes the highest. Withdrawal: every key deleted, the terminal number kept."""
    profile = "national-3"
    _, transport = dev_psam(profile, kind="kiosk")
    assert {(k.ref, k.version) for k in Psam(transport).keys} == {
        ("SSSE/IAK/01", 1),
        ("SSSE/RK/0A", 1),
    }
    scheme = load_profile(profile).key_scheme.slots
    read_key_v2 = [replace(s, version=2) for s in scheme if s.ref == "SSSE/RK/0A"]
    centre = development_module([*scheme, *read_key_v2])  # a store that also holds RK v2
    issue_psam(transport, centre, load_profile(profile), kind="kiosk", city=CITY, terminal=TERMINAL)
    held = Psam(transport)
    assert ("SSSE/RK/0A", 2) in {(k.ref, k.version) for k in held.keys}
    assert PsamSecurityModule(held).key_info("SSSE/RK/0A")["version"] == 2

    done = withdraw_psam(transport, dev_module(profile), load_profile(profile))
    assert {k.ref for k in done.keys} == {"SSSE/IAK/01", "SSSE/RK/0A"}
    after = Psam(transport)
    assert after.keys == () and after.terminal_number == TERMINAL
    with pytest.raises(errors.UnknownKeyReference):
        PsamSecurityModule(after).external_auth(CARD_SERIAL, "SSSE/IAK/01", bytes(8))


def test_a_psam_never_hands_out_a_key() -> None:
    _, transport = dev_psam("national-3")
    module = PsamSecurityModule(Psam(transport))
    tk = load_profile("national-3").key_scheme.find("MF", KeyType.TK, 0)
    with pytest.raises(errors.SscardError):
        module.blank_card_transport_key(CARD_SERIAL, tk)


class _PulledAfter:
    """A PSAM link that loses the PSAM after ``n`` more APDUs."""

    def __init__(self, transport: InProcessTransport, n: int) -> None:
        self.inner, self.left = transport, n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def transmit(self, apdu: bytes) -> bytes:
        if self.left == 0:
            self.inner.remove()
        self.left -= 1
        return self.inner.transmit(apdu)


def test_a_psam_pulled_during_a_pin_reset_leaves_the_pin_as_it_was() -> None:
    from sscard.applets.factory import new_memory_card

    card = new_memory_card("national-3", CARD_SERIAL)
    issue_in_process(card, "national-3")
    psam, _ = dev_psam("national-3")
    card_link = InProcessTransport(card)
    for pulled_after in range(30):
        psam_link = InProcessTransport(psam)
        held = Psam(psam_link)
        held.transport = _PulledAfter(psam_link, pulled_after)  # type: ignore[assignment]
        c = SocialSecurityCard.open(card_link, security=PsamSecurityModule(held))
        try:
            PinManager(c).reload(NEW_PIN)
        except PsamMissing as exc:
            assert exc.national_code == -2201
        else:
            break  # the PSAM's part was over before the pull: the reset went through
        finally:
            card_link.disconnect()
        c = SocialSecurityCard.open(card_link)
        PinManager(c).verify(PIN)  # unchanged
        card_link.disconnect()
    else:
        pytest.fail("the PIN reset never completed")
    # The next run completes with the PSAM back.
    c = SocialSecurityCard.open(
        card_link, security=PsamSecurityModule(Psam(InProcessTransport(psam)))
    )
    PinManager(c).reload(NEW_PIN)
    PinManager(c).verify(NEW_PIN)
    card_link.disconnect()


# --- the CLI through pcscd + vpcd, both readers ---------------------------------------


@pytest.fixture
def both_readers(vpcd_port: int) -> Iterator[tuple[str, str]]:
    """Both vpcd readers for this test: the session's, then the other one."""
    other = next(p for p in VPCD_READERS if p != vpcd_port)
    with reader_lock((other,)):
        yield VPCD_READERS[35963], VPCD_READERS[35964]


class Served:
    """``sscard virtual serve`` of a card (reader 00) and maybe a PSAM (reader 01)."""

    def __init__(self, *paths: Path) -> None:
        self.readers = [VPCD_READERS[35963], VPCD_READERS[35964]][: len(paths)]
        for reader in self.readers:
            pcsc.wait_for_card(reader, 15, present=False)
        sscard = str(Path(sys.executable).with_name("sscard"))
        self.proc = subprocess.Popen(
            [sscard, "virtual", "serve", *map(str, paths), "--port", "35963"],
            stderr=subprocess.DEVNULL,
        )
        for reader in self.readers:
            pcsc.wait_for_card(reader, 15)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)
        for reader in self.readers:
            with suppress(errors.TransportError):
                pcsc.wait_for_card(reader, 15, present=False)


def _centre(chain: Chain, tmp_path: Path, profile: str) -> str:
    """A real (non-development) root store with every slot of ``profile``."""
    centre = str(tmp_path / f"centre-{profile}.ks")
    chain.ok("keys", "init", "--kdf-cost", "10", centre, input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    chain.ok("keys", "generate", centre, "--profile", profile)
    return centre


def _issued_card(chain: Chain, tmp_path: Path, centre: str, profile: str) -> Path:
    card = tmp_path / f"card-{profile}.img"
    chain.ok("virtual", "new", str(card), "--profile", profile, "--keystore", centre)
    holder = _write_holder(tmp_path / "holder.json")
    issued = chain.ok(
        "-r", f"virtual:{card}", "issue", "--profile", profile, "--keystore", centre,
        "--holder", str(holder), "--pin-stdin", input=f"{PIN}\n{PIN}\n",
    )  # fmt: skip
    assert issued["status"] == "issued"
    return card


def _audit(chain: Chain, action: str) -> list[tuple[str, str | None]]:
    conn = sqlite3.connect(chain.base["SSCARD_STORE"])
    try:
        rows = conn.execute(
            "SELECT outcome, error FROM audit_log WHERE action = ? ORDER BY seq", (action,)
        ).fetchall()
    finally:
        conn.close()
    return [(r[0], r[1]) for r in rows]


@pytest.mark.pcsc
@pytest.mark.parametrize("profile", PROFILES)
def test_every_service_point_flow_with_a_psam_in_the_second_reader(
    profile: str, chain: Chain, tmp_path: Path, both_readers: tuple[str, str]
) -> None:
    card_reader, psam_reader = both_readers
    centre = _centre(chain, tmp_path, profile)
    card = _issued_card(chain, tmp_path, centre, profile)
    psam = tmp_path / "psam.img"
    blank = chain.ok("virtual", "new", str(psam), "--psam", "--profile", profile,
                     "--keystore", centre)  # fmt: skip
    assert blank["kind"] == "psam" and blank["transport_keys"] == "key store"

    served = Served(card, psam)
    try:
        done = chain.ok(
            "psam", "issue", psam_reader, "--keystore", centre, "--profile", profile,
            "--kind", "service", "--city", CITY, "--terminal", TERMINAL,
        )  # fmt: skip
        refs = [k["ref"] for k in done["keys"]]
        assert "SSSE/RPK/01" in refs and ("SSSE/RK/0A" in refs) == (profile == "national-3")
        assert ("ok", None) in _audit(chain, "psam.issue")
        info = chain.ok("psam", "info", psam_reader, role="service")
        assert info["terminal_number"] == TERMINAL and info["city"] == CITY
        assert [k["kcv"] for k in info["keys"]] == [k["kcv"] for k in done["keys"]]
        assert {k["algorithm"] for k in info["keys"]} == {PROFILES[profile]}

        keystore = f"psam:{psam_reader}"
        r = ["-r", card_reader]
        read = chain.ok(*r, "read", "--keystore", keystore, role="service")
        assert read["name"] == "张三"
        national = chain.ok(*r, "read", "--national", role="service",
                            env={"SSCARD_KEYSTORE": keystore})  # fmt: skip
        assert national["terminal_number"] == TERMINAL
        reset = chain.ok(*r, "pin", "reset", "--pin-stdin", "--keystore", keystore,
                         role="service", input=f"{NEW_PIN}\n{NEW_PIN}\n")  # fmt: skip
        assert reset["action"] == "pin.reset"
        for _ in range(6):
            chain.run(*r, "pin", "verify", "--pin-stdin", role="service", input="000000\n")
        assert chain.ok(*r, "pin", "status", role="service")["tries_left"] == 0
        unblocked = chain.ok(*r, "pin", "unblock", "--keystore", keystore, role="service")
        assert unblocked["tries_left"] == 6
        verify = chain.run(*r, "pin", "verify", "--pin-stdin", role="service", input=NEW_PIN)
        assert verify.returncode == 0, verify.stderr

        from tests.test_holder_update import pull

        os.environ["SSCARD_STORE"] = chain.base["SSCARD_STORE"]
        try:
            pull("01a21c7d-0000-7000-8000-00000000c0b1", {"name": "张三丰"})
        finally:
            os.environ.pop("SSCARD_STORE")
        updated = chain.ok(*r, "holder", "update", "--keystore", keystore, role="service")
        assert updated["applied"][0]["fields"] == ["name"]

        chain.ok(*r, "block", "--reason", "lost", "--keystore", keystore, role="service")
        assert chain.ok(*r, "info", role="service")["lifecycle"].startswith("APP_BLOCKED")
        chain.ok(*r, "unblock", "--keystore", keystore, role="service")
        assert chain.ok(*r, "info", role="service")["lifecycle"] == "ISSUED"
        again = chain.ok(*r, "read", "--keystore", keystore, role="service")
        assert again["name"] == "张三丰"
    finally:
        served.stop()
    for action in ("pin.reset", "pin.unblock", "card.block", "card.unblock", "holder.update"):
        assert ("ok", None) in _audit(chain, action), action
    chain.assert_no_development_key()


# --- errors: national codes, the card unchanged, audited ------------------------------


def _psam_file(tmp_path: Path, profile: str, name: str = "psam.img") -> Path:
    """An emulated PSAM image issued in-process from the development keys."""
    path = tmp_path / name
    psam = new_psam_file(path, PSAM_SERIAL, profile_name=profile)
    transport = InProcessTransport(psam)
    issue_psam(
        transport, dev_module(profile), load_profile(profile), kind="service", city=CITY,
        terminal=TERMINAL,
    )  # fmt: skip
    transport.disconnect()
    return path


def _dev_card_file(tmp_path: Path, profile: str) -> Path:
    from sscard.applets.factory import new_card_file

    path = tmp_path / f"card-{profile}.img"
    card = new_card_file(path, profile, CARD_SERIAL)
    issue_in_process(card, profile)
    card.power_off()
    return path


def _set_psam_key(path: Path, type_code: int, **changes: int) -> None:
    """Edit an emulated PSAM image directly: a key's counter, or (``drop``) no such key."""
    psam = open_psam_file(path)
    psam.power_on()
    state = psam.state
    if changes.pop("drop", 0):
        state.keys = [k for k in state.keys if k.type != type_code]
    for key in state.keys:
        if key.type == type_code:
            for field, value in changes.items():
                setattr(key, field, value)
    psam.storage.commit(state)
    psam.power_off()


def _refused(chain: Chain, *args: str, code: int, **kwargs: Any) -> dict[str, Any]:
    done = chain.run("--json", *args, role="service", **kwargs)
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    error = json.loads(done.stderr.strip().splitlines()[-1])
    assert error["national_code"] == code, error
    return dict(error)


def _pin_unchanged(chain: Chain, card: str) -> None:
    verify = chain.run("-r", card, "pin", "verify", "--pin-stdin", role="service", input=PIN)
    assert verify.returncode == 0, verify.stderr


def test_psam_errors_carry_national_codes_and_leave_the_card_alone(
    chain: Chain, tmp_path: Path
) -> None:
    card3 = f"virtual:{_dev_card_file(tmp_path, 'national-3')}"
    sm4 = _psam_file(tmp_path, "national-3", "sm4.img")
    tdes = _psam_file(tmp_path, "national-2", "3des.img")
    reset = ("pin", "reset", "--pin-stdin")
    new_pins = f"{NEW_PIN}\n{NEW_PIN}\n"

    # No PSAM at all.
    missing = f"psam:virtual:{tmp_path / 'none.img'}"
    _refused(chain, "-r", card3, *reset, "--keystore", missing, code=-2201, input=new_pins)
    # A PSAM for the 3DES cards on an SM4 card.
    error = _refused(chain, "-r", card3, *reset, "--keystore", f"psam:virtual:{tdes}",
                     code=-2202, input=new_pins)  # fmt: skip
    assert "PSAM" in error["message"] and "sm4" in error["message"]
    # An SM4 PSAM without RKSSSE cannot read a 3.0 card.
    no_rk = _psam_file(tmp_path, "national-3", "no-rk.img")
    _set_psam_key(no_rk, 0x06, drop=1)
    _refused(chain, "-r", card3, "read", "--national", "--keystore", f"psam:virtual:{no_rk}",
             code=-2203)  # fmt: skip
    # The PSAM's reload key is blocked.
    _set_psam_key(sm4, 0x04, tries_left=0)
    error = _refused(chain, "-r", card3, *reset, "--keystore", f"psam:virtual:{sm4}",
                     code=-27011, input=new_pins)  # fmt: skip
    assert "PSAM" in error["message"] and "SSSE/RPK/01" in error["message"]

    _pin_unchanged(chain, card3)
    failed = [e for outcome, e in _audit(chain, "pin.reset") if outcome == "failed"]
    assert failed == ["PsamMissing", "PsamLacksAlgorithm", "PsamKeyBlocked"]
    assert ("failed", "PsamLacksReadKey") in _audit(chain, "card.read")
    assert ("ok", None) not in _audit(chain, "pin.reset")
    chain.assert_no_development_key()


@pytest.mark.pcsc
def test_an_empty_psam_reader_is_no_psam(
    chain: Chain, tmp_path: Path, both_readers: tuple[str, str]
) -> None:
    card_reader, psam_reader = both_readers
    card = _dev_card_file(tmp_path, "national-3")
    served = Served(card)
    try:
        for args in (
            ("pin", "unblock"),
            ("block", "--reason", "lost"),
        ):
            _refused(chain, "-r", card_reader, *args, "--keystore", f"psam:{psam_reader}",
                     code=-2201)  # fmt: skip
        info = chain.ok("-r", card_reader, "info", role="service")
        assert info["lifecycle"] == "ISSUED"
    finally:
        served.stop()
    assert ("failed", "PsamMissing") in _audit(chain, "card.block")
    assert ("failed", "PsamMissing") in _audit(chain, "pin.unblock")


def test_info_on_a_psam_says_it_is_a_psam_not_a_blank_card(tmp_path: Path) -> None:
    path = tmp_path / "psam.img"
    new_psam_file(path)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("sscard")), "--json", "-r", f"virtual:{path}", "info"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 7, result.stderr
    error = json.loads(result.stderr.strip().splitlines()[-1])
    assert error["error"] == "UnknownCard" and "is a PSAM" in error["message"]
    assert error["national_code"] == -1
