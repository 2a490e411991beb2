"""A client we did not write must agree: national terminal software's APDUs on our card.

Raw pyscard sends, through pcscd + vpcd, exactly the commands public terminal code
sends to a real social security card (docs/card.md, "Recognising a card", "Reading
records", "3.0 cards"), and the answers are checked byte for byte against the holder
data, encoded here by hand. The 3.0 read authentication is computed with the
``cryptography`` library's own SM4 from the published development roots
(docs/keys.md, "Development keys"), not with sscard's key code. Cards with vendor ATRs
of several shapes are recognised from their data alone, and a card whose card
identification code was altered is refused with the national −20.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from smartcard.System import readers

from sscard.applets.cos import EmulatedCard
from sscard.applets.factory import new_card_file, new_memory_card
from sscard.applets.pcsc_rig import VPCD_READERS, card_in_reader
from sscard.cli.exit_codes import ExitCode
from sscard.transport import InProcessTransport
from tests.cardkit import SAMPLE_HOLDER, SERIALS, issue, session
from tests.operatorkit import env_for

SSCARD = str(Path(sys.executable).with_name("sscard"))
HOLDER: dict[str, Any] = {**SAMPLE_HOLDER, "name_ext": "阿卜杜拉"}  # EF06 4E written too
CITY = "310100"  # the holder's region: the city level of the card keys
SELECT_SSSE = "00 A4 04 00 0F 7378312E73682EC9E7BBE1B1A3D5CF"  # DF name, 15 bytes
SELECT_EF05, SELECT_EF06 = "00 A4 02 00 02 EF05", "00 A4 02 00 02 EF06"


# --- the holder data as a terminal expects it, encoded here ---------------------------


def tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag, len(value))) + value


def expected_ef05(version: str) -> dict[str, bytes]:
    """EF05 items by the APDU terminals read them with (card identification code apart)."""
    return {
        "00 B2 07 00 0B": tlv(0x07, HOLDER["card_number"].encode("ascii")),
        "00 B2 03 00 06": tlv(0x03, version.encode("ascii")),
    }


def expected_ef06() -> dict[str, bytes]:
    return {
        "00 B2 08 00 14": tlv(0x08, HOLDER["ssn"].encode("ascii")),
        "00 B2 09 00 20": tlv(0x09, HOLDER["name"].encode("gbk").ljust(30, b"\0")),
        "00 B2 4E 00 16": tlv(0x4E, HOLDER["name_ext"].encode("gbk").ljust(20, b"\0")),
        "00 B2 4E 30 16": tlv(0x4E, HOLDER["name_ext"].encode("gbk").ljust(20, b"\0")),  # SFI 6
    }


# --- an independent construction of the development card keys (docs/keys.md) ----------


def _des3(key: bytes) -> TripleDES:
    """Two-key 3DES (16 bytes) or single DES (8 bytes) as a 24-byte TripleDES key."""
    return TripleDES(key * 3 if len(key) == 8 else key + key[:8])


def _ecb(key: bytes, data: bytes, algorithm: str) -> bytes:
    cipher = algorithms.SM4(key) if algorithm == "sm4" else _des3(key)
    enc = Cipher(cipher, modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def _diversify(key: bytes, factor: bytes, algorithm: str) -> bytes:
    """E_K(F ‖ ~F) (SM4), E_K(F) ‖ E_K(~F) (3DES)."""
    both = factor + bytes(b ^ 0xFF for b in factor)
    return _ecb(key, both, algorithm)


def dev_key(ref: str, algorithm: str, serial: bytes, *, levels: int = 3) -> bytes:
    """The development key of slot ``ref`` (version 1) diversified down ``levels`` of
    province ``310000sh`` → city ``310100sx`` → chip serial."""
    seed = f"sscard development root|{ref}|1|{algorithm}".encode("ascii")
    key = hashlib.sha256(seed).digest()[:16]
    for factor in ((CITY[:2] + "0000sh").encode(), (CITY + "sx").encode(), serial)[:levels]:
        key = _diversify(key, factor, algorithm)
    return key


def _cryptogram(key: bytes, r8: bytes, algorithm: str) -> bytes:
    """3DES ``E(R8)``, SM4 ``E(R8 ‖ 00×8)``."""
    return _ecb(key, r8 if algorithm == "3des" else r8 + bytes(8), algorithm)


def _pad(data: bytes, n: int) -> bytes:
    data += b"\x80"
    return data + bytes(-len(data) % n)


def card_id_mac(serial: bytes, data: bytes, algorithm: str) -> bytes:
    """The card identification code's MAC: the card's own IAK, zero IV, CBC-MAC (SM4) or
    ISO 9797-1 algorithm 3 (3DES), first 4 bytes (docs/card.md) [ours]."""
    key = dev_key("SSSE/IAK/01", algorithm, serial)
    if algorithm == "sm4":
        enc = Cipher(algorithms.SM4(key), modes.CBC(bytes(16))).encryptor()
        return (enc.update(_pad(data, 16)) + enc.finalize())[-16:][:4]
    left, right = key[:8], key[8:]
    enc = Cipher(_des3(left), modes.CBC(bytes(8))).encryptor()
    last = (enc.update(_pad(data, 8)) + enc.finalize())[-8:]
    dec = Cipher(_des3(right), modes.ECB()).decryptor()
    return _ecb(left, dec.update(last) + dec.finalize(), "3des")[:4]


def expected_card_id(serial: bytes, algorithm: str) -> bytes:
    """EF05 item 01: region ‖ D156000005 ‖ card sequence (serial's last 4 bytes) ‖ MAC."""
    head = bytes.fromhex(CITY) + bytes.fromhex("D156000005") + serial[-4:]
    return tlv(0x01, head + card_id_mac(serial, head + serial, algorithm))


# --- raw pyscard ------------------------------------------------------------------------


class Terminal:
    """A PC/SC connection through pyscard's own API: APDUs as hex, answers as sent."""

    def __init__(self, reader: str) -> None:
        found = next(r for r in readers() if str(r) == reader)
        self.connection = found.createConnection()
        self.connection.connect()

    def send(self, text: str) -> tuple[bytes, int]:
        data, sw1, sw2 = self.connection.transmit(list(bytes.fromhex(text.replace(" ", ""))))
        return bytes(data), (sw1 << 8) | sw2

    def sw(self, text: str) -> int:
        return self.send(text)[1]

    def close(self) -> None:
        self.connection.disconnect()


def issued(profile: str) -> EmulatedCard:
    card = new_memory_card(profile, SERIALS[profile])
    issue(card, profile, HOLDER)
    return card


@pytest.fixture
def served(vpcd_port: int, request: pytest.FixtureRequest) -> Iterator[tuple[Terminal, bytes]]:
    """An issued card of profile ``request.param`` in a vpcd reader; a raw terminal on it."""
    card = issued(request.param)
    with card_in_reader(card, vpcd_port):
        terminal = Terminal(VPCD_READERS[vpcd_port])
        try:
            yield terminal, card.serial
        finally:
            terminal.close()


def _select_ssse(t: Terminal) -> bytes:
    """SELECT SSSE by DF name as terminals send it, and with Le for the FCI; the FCI."""
    sw = t.sw(SELECT_SSSE)  # case 3: no Le (with or without the FCI, or 61xx on T=0)
    assert sw == 0x9000 or sw >> 8 == 0x61
    fci, sw = t.send(SELECT_SSSE + " 00")
    assert sw == 0x9000
    assert bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF") in fci
    return fci


def _indicator(fci: bytes) -> int | None:
    at = fci.find(bytes.fromhex("9F0C038601"))
    return None if at < 0 else fci[at + 5]


# --- 2.0: everything reads freely --------------------------------------------------------


@pytest.mark.pcsc
@pytest.mark.parametrize("served", ["national-2"], indirect=True)
def test_a_terminal_reads_a_2_0_card_byte_for_byte(served: tuple[Terminal, bytes]) -> None:
    t, serial = served
    assert _indicator(_select_ssse(t)) == 0x01  # DES / 3DES
    assert t.sw(SELECT_EF05) == 0x9000
    data, sw = t.send("00 B2 01 00 12")
    assert sw == 0x9000 and data == expected_card_id(serial, "3des")
    for apdu, want in expected_ef05("2.00").items():
        assert t.send(apdu) == (want, 0x9000), apdu
    assert t.send("00 B2 05 00 06") == (tlv(0x05, bytes.fromhex("20261127")), 0x9000)
    assert t.send("00 B2 06 00 06") == (tlv(0x06, bytes.fromhex("20361127")), 0x9000)
    assert t.sw(SELECT_EF06) == 0x9000
    for apdu, want in expected_ef06().items():
        assert t.send(apdu) == (want, 0x9000), apdu


# --- 3.0: the read authentication first ----------------------------------------------------


def _read_authentication(t: Terminal, serial: bytes, *, cryptogram_ok: bool = True) -> int:
    """The national 3.0 sequence in raw APDUs (docs/card.md, "3.0 cards"); the SW of
    EXTERNAL AUTHENTICATE with RKSSSE."""
    random, sw = t.send("00 84 00 00 08")
    assert sw == 0x9000
    factor, sw = t.send("00 84 00 00 08")
    assert sw == 0x9000
    answer, sw = t.send("00 88 00 01 10" + (factor + random).hex() + "00")
    assert sw == 0x9000
    iak = dev_key("SSSE/IAK/01", "sm4", serial)
    assert answer == _cryptogram(_diversify(iak, factor, "sm4"), random, "sm4")  # genuine
    factor, _ = t.send("00 84 00 00 08")  # the process factor: usable by the next command
    challenge, _ = t.send("00 84 00 00 08")
    rk = dev_key("SSSE/RK/0A", "sm4", serial)
    cryptogram = _cryptogram(_diversify(rk, factor, "sm4"), challenge, "sm4")
    if not cryptogram_ok:
        cryptogram = bytes(b ^ 0x01 for b in cryptogram)
    return t.sw("00 82 00 0A 10" + cryptogram.hex())


@pytest.mark.pcsc
@pytest.mark.parametrize("served", ["national-3"], indirect=True)
def test_a_terminal_reads_a_3_0_card_after_the_read_authentication(
    served: tuple[Terminal, bytes],
) -> None:
    t, serial = served
    assert _indicator(_select_ssse(t)) == 0x03  # SM4
    assert t.sw(SELECT_EF05) == 0x9000
    assert t.send("00 B2 01 00 12") == (expected_card_id(serial, "sm4"), 0x9000)
    for apdu, want in expected_ef05("3.00").items():
        assert t.send(apdu) == (want, 0x9000), apdu
    assert t.sw("00 B2 05 00 06") == 0x6982  # issue date: after authentication
    assert t.sw(SELECT_EF06) == 0x9000
    for apdu in expected_ef06():
        assert t.sw(apdu) == 0x6982, apdu

    # RKSSSE without the 16-byte INTERNAL AUTHENTICATE first: conditions not satisfied
    t.send("00 84 00 00 08")
    t.send("00 84 00 00 08")
    assert t.sw("00 82 00 0A 10" + "00" * 16) == 0x6985
    _select_ssse(t)
    assert _read_authentication(t, serial, cryptogram_ok=False) == 0x63CE  # 15 tries, 1 spent
    assert t.sw(SELECT_EF06) == 0x9000
    assert t.sw("00 B2 08 00 14") == 0x6982  # still closed
    _select_ssse(t)
    assert _read_authentication(t, serial) == 0x9000
    assert t.sw(SELECT_EF05) == 0x9000
    assert t.send("00 B2 05 00 06") == (tlv(0x05, bytes.fromhex("20261127")), 0x9000)
    assert t.send("00 B2 06 00 06") == (tlv(0x06, bytes.fromhex("20361127")), 0x9000)
    assert t.sw(SELECT_EF06) == 0x9000
    for apdu, want in expected_ef06().items():
        assert t.send(apdu) == (want, 0x9000), apdu
    _select_ssse(t)  # selecting the application again closes it
    assert t.sw("00 B2 08 30 14") == 0x6982  # EF06 by SFI


# --- recognition through pcscd, whatever the ATR -------------------------------------------

REAL_LIKE_ATR = "3B6D0000" + "0087CF20018649618B00930612"  # T=0, a real card's historical bytes
T1_ATR_WITH_TCK = "3B8A800100" + "31C173C84000009000"  # T=1; its TCK is appended below


def _tck(atr_hex: str) -> str:
    atr = bytes.fromhex(atr_hex)
    check = 0
    for b in atr[1:]:
        check ^= b
    return atr_hex + f"{check:02X}"


@pytest.mark.pcsc
@pytest.mark.parametrize(
    ("atr", "profile"),
    [
        (REAL_LIKE_ATR, "national-3"),
        (_tck(T1_ATR_WITH_TCK), "national-2"),
        (None, "national-3"),  # the emulator's default vendor-like ATR
    ],
    ids=["real-t0", "t1-tck", "default"],
)
def test_cards_are_recognised_from_their_data_whatever_the_atr(
    tmp_path: Path, vpcd_port: int, atr: str | None, profile: str
) -> None:
    card = new_card_file(
        tmp_path / "card.img",
        profile,
        SERIALS[profile],
        atr=bytes.fromhex(atr) if atr else None,
    )
    issue(card, profile, HOLDER)
    reader = VPCD_READERS[vpcd_port]
    with card_in_reader(card, vpcd_port):
        done = subprocess.run(
            [SSCARD, "--json", "-r", reader, "info"], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["profile"] == profile
    assert info["serial"] == SERIALS[profile].hex().upper()  # GET DATA, not the ATR
    assert info["atr"] == card.atr.hex().upper()
    if atr is not None:
        assert info["atr"] == atr.upper()


# --- the card identification code (national −20) ------------------------------------------


def _altered(tmp_path: Path, profile: str, change: Any) -> Path:
    """An issued card image whose EF05 item 01 was rewritten with the staff EAK."""
    path = tmp_path / f"{profile}.img"
    card = new_card_file(path, profile, SERIALS[profile])
    issue(card, profile, HOLDER)
    transport = InProcessTransport(card)
    transport.connect()
    try:
        c = session(transport, profile)
        record = c.read_record("EF05", 1)
        c.external_authenticate("SSSE")
        c.update_record("EF05", 1, change(record))
    finally:
        transport.disconnect()
    return path


def _read(path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [SSCARD, "--json", "-r", f"virtual:{path}", "read", *args],
        capture_output=True,
        text=True,
        env=env_for("service"),
        timeout=60,
    )
    out = done.stdout if done.returncode == 0 else done.stderr
    return done.returncode, json.loads(out[out.index("{") :])


def _flip_mac(record: bytes) -> bytes:
    return record[:-1] + bytes([record[-1] ^ 0x01])


def _break_rid(record: bytes) -> bytes:
    return record[:5] + b"\xee" + record[6:]  # D156000005 → D1EE000005: not a card id


@pytest.mark.parametrize("profile", ["national-3", "national-2"])
def test_a_card_identification_code_that_does_not_verify_is_the_national_minus_20(
    tmp_path: Path, profile: str
) -> None:
    path = _altered(tmp_path, profile, _flip_mac)
    code, error = _read(path, "--keystore", "dev")
    assert code == ExitCode.AUTH, error
    assert error["error"] == "BadCardIdentificationCode" and error["national_code"] == -20
    assert "does not verify" in error["message"]


@pytest.mark.parametrize("profile", ["national-3", "national-2"])
def test_a_malformed_card_identification_code_is_refused_with_or_without_keys(
    tmp_path: Path, profile: str
) -> None:
    path = _altered(tmp_path, profile, _break_rid)
    for args in (("--keystore", "dev"), ()):
        code, error = _read(path, *args)
        assert code == ExitCode.AUTH, (args, error)
        assert error["national_code"] == -20 and "malformed" in error["message"], args


def test_an_untouched_card_reads_and_a_good_code_is_not_flagged(tmp_path: Path) -> None:
    path = _altered(tmp_path, "national-3", lambda record: record)  # rewritten identically
    code, data = _read(path, "--keystore", "dev")
    assert code == 0, data
    assert data["name"] == HOLDER["name"] and data["card_number"] == HOLDER["card_number"]
