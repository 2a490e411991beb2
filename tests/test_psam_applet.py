"""The emulated PSAM (docs/card.md, "The emulated PSAM"): every command's encoding and
status words, checked against an independent computation with ``cryptography``'s
ciphers; images of their own kind; the PSAM in a PC/SC reader beside a card."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from sscard.applets import load_card
from sscard.applets.cos import EmulatedCard
from sscard.applets.factory import (
    new_card_file,
    new_memory_psam,
    new_psam_file,
    open_card_file,
    open_image_file,
    open_psam_file,
)
from sscard.applets.image import WrongImageKind, image_kind
from sscard.applets.pcsc_rig import VPCD_READERS, reader_lock
from sscard.applets.psam import EmulatedPsam
from sscard.errors import ReaderBusy
from sscard.keys.dev import development_card_key
from sscard.layout import load_profile
from sscard.transport import pcsc
from sscard.vocab import KeyType

SSCARD = str(Path(sys.executable).with_name("sscard"))
PSAM_SERIAL = bytes.fromhex("5053414D00000001")
CARD_SERIAL = bytes.fromhex("0011223344556677")
PROCESS_FACTOR = bytes.fromhex("A1A2A3A4A5A6A7A8")
TERMINAL = bytes.fromhex("310100000001")
KEY_IAK = bytes(range(16))
KEY_STK = bytes(range(16, 32))
ALGORITHMS = {"national-3": "sm4", "national-2": "3des"}


# --- an independent reference (cryptography's ciphers, not sscard's) ----------------


def _ecb(alg: str, key: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    cipher = algorithms.SM4(key) if alg == "sm4" else TripleDES(key + key[:8])
    ctx = Cipher(cipher, modes.ECB())
    op = ctx.decryptor() if decrypt else ctx.encryptor()
    return op.update(data) + op.finalize()


def _block(alg: str) -> int:
    return 16 if alg == "sm4" else 8


def _pad(data: bytes, n: int) -> bytes:
    data += b"\x80"
    return data + bytes(-len(data) % n)


def ref_diversify(alg: str, key: bytes, factor: bytes) -> bytes:
    inverted = bytes(b ^ 0xFF for b in factor)
    if alg == "sm4":
        return _ecb(alg, key, factor + inverted)
    return _ecb(alg, key, factor) + _ecb(alg, key, inverted)


def ref_mac(alg: str, key: bytes, data: bytes, iv: bytes) -> bytes:
    """SM4: CBC-MAC; 3DES: ISO/IEC 9797-1 MAC algorithm 3; padding method 2; 4 bytes."""
    n = _block(alg)
    iv = iv + bytes(n - len(iv))
    if alg == "sm4":
        enc = Cipher(algorithms.SM4(key), modes.CBC(iv)).encryptor()
        return enc.update(_pad(data, n))[-16:][:4]
    left, right = key[:8] * 3, key[8:] * 3  # single DES as K ‖ K ‖ K
    enc = Cipher(TripleDES(left), modes.CBC(iv)).encryptor()
    y = enc.update(_pad(data, n))[-8:]
    y = Cipher(TripleDES(right), modes.ECB()).decryptor().update(y)
    return Cipher(TripleDES(left), modes.ECB()).encryptor().update(y)[:4]


def ref_kcv(alg: str, key: bytes) -> bytes:
    return _ecb(alg, key, bytes(_block(alg)))[:3]


# --- talking to the PSAM ----------------------------------------------------------------


def send(psam: EmulatedPsam, apdu: str | bytes) -> tuple[bytes, int]:
    raw = bytes.fromhex(apdu) if isinstance(apdu, str) else apdu
    response = psam.process(raw)
    return response[:-2], int.from_bytes(response[-2:], "big")


def ok(psam: EmulatedPsam, apdu: str | bytes) -> bytes:
    data, sw = send(psam, apdu)
    assert sw == 0x9000, f"{apdu!r}: {sw:04X}"
    return data


def ptk_of(profile: str, serial: bytes = PSAM_SERIAL) -> bytes:
    slot = load_profile(profile).key_scheme.find("MF", KeyType.TK, 0)
    return development_card_key(slot, serial)


def authenticate(psam: EmulatedPsam, alg: str, ptk: bytes) -> int:
    challenge = ok(psam, "0084000008")
    cryptogram = _ecb(alg, ptk, challenge + bytes(_block(alg) - 8))
    return send(psam, bytes((0x00, 0x82, 0, 0, len(cryptogram))) + cryptogram)[1]


def write_key_apdu(
    psam: EmulatedPsam,
    alg: str,
    ptk: bytes,
    record: bytes,
    *,
    usage: int | None = None,
    tamper: bool = False,
) -> bytes:
    """WRITE KEY ``84 D4 01 usage Lc E_PTK(len ‖ record ‖ 80 00…) ‖ MAC``."""
    challenge = ok(psam, "0084000008")
    body = _ecb(alg, ptk, _pad(bytes((len(record),)) + record, _block(alg)))
    header = bytes((0x84, 0xD4, 0x01, record[0] if usage is None else usage))
    lc = bytes((len(body) + 4,))
    mac = ref_mac(alg, ptk, header + lc + body, challenge)
    if tamper:
        mac = bytes((mac[0] ^ 1,)) + mac[1:]
    return header + lc + body + mac


def key_record(usage: int, version: int, alg: str, limit: int, value: bytes) -> bytes:
    return bytes((usage, version, 0x02 if alg == "sm4" else 0x01, limit)) + value


def issue(psam: EmulatedPsam, profile: str, keys: list[bytes]) -> None:
    """The issuance session: authenticate, keys, terminal number, END ISSUANCE."""
    alg, ptk = ALGORITHMS[profile], ptk_of(profile)
    assert authenticate(psam, alg, ptk) == 0x9000
    for record in keys:
        ok(psam, write_key_apdu(psam, alg, ptk, record))
    ok(psam, "00D6960006" + TERMINAL.hex())
    ok(psam, "80EA0000")


def issued(profile: str = "national-3", alg: str | None = None) -> EmulatedPsam:
    """An issued PSAM holding IAK (type 02) and STK (05) version 1 in ``alg``."""
    psam = new_memory_psam(PSAM_SERIAL, profile_name=profile)
    alg = alg or ALGORITHMS[profile]
    issue(
        psam,
        profile,
        [key_record(0x02, 1, alg, 3, KEY_IAK), key_record(0x25, 1, alg, 3, KEY_STK)],
    )
    return psam


# --- a blank PSAM -----------------------------------------------------------------------


def test_a_blank_psam_answers_its_atr_serial_and_files() -> None:
    psam = new_memory_psam(PSAM_SERIAL)
    assert psam.power_on().hex().upper() == "3B8E800100" + b"SSCARDPSAM".hex().upper() + "03900087"
    assert ok(psam, "80CA000208") == PSAM_SERIAL
    assert ok(psam, "80CA000101") == b"\x01"  # BLANK
    assert ok(psam, "00B0960006") == bytes(6)  # terminal number, by SFI
    assert ok(psam, "00B095000E") == PSAM_SERIAL + bytes.fromhex("0103") + bytes(4)
    assert ok(psam, "00A40000023F0000") == bytes.fromhex("6F07820138 83023F00".replace(" ", ""))
    fci = ok(psam, "00A4000002001600")
    assert fci == bytes.fromhex("6F0E 820101 83020016 880116 80020006".replace(" ", ""))
    assert ok(psam, "00B0000006") == bytes(6)  # the current EF
    assert ok(psam, "00B0000400") == bytes(2)  # from offset 4, Le 00
    assert send(psam, "00B0000008") == (bytes(6), 0x6282)  # fewer than Le
    assert send(psam, "00B0000700")[1] == 0x6B00
    assert send(psam, "00A4000002EF05")[1] == 0x6A82
    assert send(psam, "00A40400023F00")[1] == 0x6A86
    assert send(psam, "00B0970000")[1] == 0x6A82
    info = ok(psam, "80CA000300")
    ptk = ptk_of("national-3")
    assert info == bytes.fromhex("1F 01 02 0F 0F".replace(" ", "")) + ref_kcv("sm4", ptk)


def test_a_blank_psam_refuses_service_before_issuance() -> None:
    psam = new_memory_psam(PSAM_SERIAL)
    assert send(psam, "801A2101" + "08" + CARD_SERIAL.hex())[1] == 0x6985
    assert send(psam, "80FA000010" + bytes(16).hex() + "00")[1] == 0x6985
    assert send(psam, "80EA0000")[1] == 0x6982  # END ISSUANCE without the session
    assert send(psam, "00D6960006" + TERMINAL.hex())[1] == 0x6982
    assert send(psam, "80CA000400")[1] == 0x6A88


# --- issuance -------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["national-3", "national-2"])
def test_the_issuance_session_loads_keys_and_the_terminal_number(profile: str) -> None:
    alg = ALGORITHMS[profile]
    psam = issued(profile)
    assert ok(psam, "80CA000101") == b"\x03"  # ISSUED
    assert ok(psam, "00B0960006") == TERMINAL
    info = ok(psam, "80CA000300")
    entries = [info[i : i + 8] for i in range(0, len(info), 8)]
    algo = b"\x02" if alg == "sm4" else b"\x01"
    ptk = ptk_of(profile)
    assert entries == [
        b"\x02\x01" + algo + b"\x03\x03" + ref_kcv(alg, KEY_IAK),
        b"\x05\x01" + algo + b"\x03\x03" + ref_kcv(alg, KEY_STK),  # usage levels not stored
        b"\x1f\x01" + algo + b"\x0f\x0f" + ref_kcv(alg, ptk),
    ]
    # The session ended with END ISSUANCE: no more keys without a new authentication.
    assert send(psam, write_key_apdu(psam, alg, ptk, key_record(3, 1, alg, 3, KEY_IAK)))[1] == (
        0x6982
    )
    assert authenticate(psam, alg, ptk) == 0x9000  # an issued PSAM can be re-keyed
    ok(psam, write_key_apdu(psam, alg, ptk, key_record(3, 1, alg, 3, KEY_IAK)))
    ok(psam, "80EA0000")
    assert ok(psam, "80CA000101") == b"\x03"


def test_the_ptk_counts_down_on_wrong_cryptograms_and_bad_macs() -> None:
    psam = new_memory_psam(PSAM_SERIAL)
    ptk = ptk_of("national-3")
    wrong = bytes(16)
    assert send(psam, "00820000" + "10" + wrong.hex())[1] == 0x6984  # no challenge
    ok(psam, "0084000008")
    assert send(psam, "00820000" + "08" + bytes(8).hex())[1] == 0x6700  # SM4: 16 bytes
    assert authenticate(psam, "sm4", wrong) == 0x63CE
    assert authenticate(psam, "sm4", wrong) == 0x63CD
    assert psam.state.ptk.tries_left == 13  # persisted
    assert authenticate(psam, "sm4", ptk) == 0x9000
    assert psam.state.ptk.tries_left == 15  # given back after success
    record = key_record(0x02, 1, "sm4", 3, KEY_IAK)
    assert send(psam, write_key_apdu(psam, "sm4", ptk, record, tamper=True))[1] == 0x6988
    assert psam.state.ptk.tries_left == 14
    late = write_key_apdu(psam, "sm4", ptk, record)
    ok(psam, "80CA000208")
    assert send(psam, late)[1] == 0x6984  # a challenge serves the next command only
    for _ in range(14):
        authenticate(psam, "sm4", wrong)
    assert authenticate(psam, "sm4", ptk) == 0x6983  # blocked for good
    assert send(psam, write_key_apdu(psam, "sm4", ptk, record))[1] == 0x6982


def test_write_key_checks_its_record_and_replaces_or_deletes() -> None:
    psam = issued()
    ptk = ptk_of("national-3")
    assert authenticate(psam, "sm4", ptk) == 0x9000

    def write(record: bytes, usage: int | None = None) -> int:
        return send(psam, write_key_apdu(psam, "sm4", ptk, record, usage=usage))[1]

    assert write(key_record(0x02, 1, "sm4", 3, KEY_IAK), usage=0x03) == 0x6A80  # P2 ≠ record
    assert write(key_record(0x07, 1, "sm4", 3, KEY_IAK)) == 0x6A86  # no type 07
    assert write(key_record(0x02, 0, "sm4", 3, KEY_IAK)) == 0x6A80  # version 0
    assert write(key_record(0x02, 1, "sm4", 3, KEY_IAK)[:-1]) == 0x6A80  # 19 bytes
    assert write(bytes((0x02, 1, 0x09, 3)) + KEY_IAK) == 0x6A80  # unknown algorithm
    assert write(key_record(0x02, 1, "3des", 5, KEY_STK)) == 0x9000  # replaces v1
    assert write(key_record(0x02, 2, "sm4", 3, KEY_IAK)) == 0x9000  # v2 beside it
    assert [(k.type, k.version, k.error_limit) for k in psam.state.keys if k.type == 2] == [
        (2, 1, 5),
        (2, 2, 3),
    ]
    assert write(key_record(0x02, 2, "sm4", 0, bytes(16))) == 0x9000  # limit 00: delete
    assert psam.state.key(2, 2) is None
    assert write(key_record(0x02, 2, "sm4", 0, bytes(16))) == 0x6A88
    assert write(key_record(0x1F, 1, "sm4", 0, bytes(16))) == 0x6A80  # the PTK stays
    assert send(psam, "00D6960006" + "3101000000AB")[1] == 0x6A80  # not BCD
    assert send(psam, "00D6950001" + "00")[1] == 0x6982  # EF 0015 is the vendor's
    assert send(psam, "00D6960407" + "31010000000100")[1] == 0x6700
    new_ptk = bytes(range(100, 116))
    assert write(key_record(0x1F, 2, "sm4", 15, new_ptk)) == 0x9000  # a new PTK
    assert psam.state.ptk.version == 2
    assert authenticate(psam, "sm4", new_ptk) == 0x9000


# --- service: DELIVERY KEY and CIPHER DATA ----------------------------------------------


@pytest.mark.parametrize(
    ("profile", "alg"),
    [("national-3", "sm4"), ("national-2", "3des"), ("national-3", "3des")],
)
def test_delivery_key_then_cipher_data_matches_an_independent_computation(
    profile: str, alg: str
) -> None:
    psam = issued(profile, alg)
    n = _block(alg)
    # One level (usage 22: type 02, 1 level): the card key of the chip serial.
    ok(psam, "801A2201" + "08" + CARD_SERIAL.hex())
    card_key = ref_diversify(alg, KEY_IAK, CARD_SERIAL)
    blocks = bytes(range(2 * n))
    assert ok(psam, bytes((0x80, 0xFA, 0, 0, len(blocks))) + blocks + b"\x00") == _ecb(
        alg, card_key, blocks
    )
    iv, message = bytes.fromhex("0102030405060708"), b"84DC010C" + bytes(13)
    mac = ok(psam, bytes((0x80, 0xFA, 0x05, 0, 8 + len(message))) + iv + message + b"\x00")
    assert mac == ref_mac(alg, card_key, message, iv)
    # Two levels (usage 42): the session key of a process factor, for the STK (type 05).
    ok(psam, "801A4501" + "10" + CARD_SERIAL.hex() + PROCESS_FACTOR.hex())
    session = ref_diversify(alg, ref_diversify(alg, KEY_STK, CARD_SERIAL), PROCESS_FACTOR)
    challenge = bytes(8)
    assert ok(psam, bytes((0x80, 0xFA, 0, 0, n)) + challenge + bytes(n - 8) + b"\x00") == _ecb(
        alg, session, challenge + bytes(n - 8)
    )
    # Zero levels (usage 02): the stored city-level key itself (card identification code).
    ok(psam, "801A0201")
    assert ok(psam, "80FA050010" + bytes(8).hex() + "0011223344556677" + "00") == ref_mac(
        alg, KEY_IAK, CARD_SERIAL, bytes(8)
    )


def test_delivery_key_and_cipher_data_status_words() -> None:
    psam = issued()
    assert send(psam, "80FA000010" + bytes(16).hex() + "00")[1] == 0x6985  # no DELIVERY KEY
    assert send(psam, "801A2209" + "08" + CARD_SERIAL.hex())[1] == 0x6A88  # no version 9
    assert send(psam, "80FA000010" + bytes(16).hex() + "00")[1] == 0x6984  # key discarded
    assert send(psam, "801A2301" + "08" + CARD_SERIAL.hex())[1] == 0x6A88  # no type 03
    assert send(psam, "801A3F01" + "08" + CARD_SERIAL.hex())[1] == 0x6A88  # the PTK: never
    assert send(psam, "801A2200" + "08" + CARD_SERIAL.hex())[1] == 0x6A86  # version 0
    assert send(psam, "801A4201" + "08" + CARD_SERIAL.hex())[1] == 0x6700  # 2 levels, 1 factor
    assert send(psam, "801A2201" + "09" + CARD_SERIAL.hex() + "00")[1] == 0x6700
    ok(psam, "801A2201" + "08" + CARD_SERIAL.hex())
    assert send(psam, "80FA000008" + bytes(8).hex() + "00")[1] == 0x6700  # SM4: 16-byte blocks
    assert send(psam, "80FA0500" + "04" + bytes(4).hex() + "00")[1] == 0x6700  # no full IV
    assert send(psam, "80FA010010" + bytes(16).hex() + "00")[1] == 0x6A86
    assert send(psam, "80FA000110" + bytes(16).hex() + "00")[1] == 0x6A86
    assert send(psam, "80FA000010" + bytes(16).hex()) == (b"", 0x9000)  # no Le: no data
    assert len(ok(psam, "80FA000010" + bytes(16).hex() + "00")) == 16  # still usable
    # A blocked key (tries 0) answers 6983.
    psam.state.key(2, 1).tries_left = 0  # type: ignore[union-attr]
    psam.storage.commit(psam.state)
    assert send(psam, "801A2201" + "08" + CARD_SERIAL.hex())[1] == 0x6983


def test_power_off_clears_the_temporary_key_and_the_session() -> None:
    psam = issued()
    ok(psam, "801A2201" + "08" + CARD_SERIAL.hex())
    assert authenticate(psam, "sm4", ptk_of("national-3")) == 0x9000
    psam.power_off()
    psam.power_on()
    assert send(psam, "80FA000010" + bytes(16).hex() + "00")[1] == 0x6985
    assert send(psam, "00D6960006" + TERMINAL.hex())[1] == 0x6982  # the session is gone


GARBAGE_SW = {0x6700, 0x6A86, 0x6A88, 0x6A82, 0x6A80, 0x6982, 0x6983, 0x6984, 0x6985}
GARBAGE_SW |= {0x6986, 0x6988, 0x6B00, 0x6D00, 0x6E00, 0x6282, 0x9000, 0x6A84}
GARBAGE_SW |= {0x63C0 | n for n in range(16)}


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([0x00, 0x80, 0x84, 0x04, 0xFF]),
    st.sampled_from([0x1A, 0xFA, 0x82, 0x84, 0xD4, 0xD6, 0xB0, 0xA4, 0xCA, 0xEA, 0xC0, 0x00]),
    st.binary(max_size=40),
)
def test_garbage_apdus_always_get_a_status_word(cla: int, ins: int, rest: bytes) -> None:
    psam = _garbage_target()
    response = psam.process(bytes((cla, ins)) + rest)
    assert len(response) >= 2
    assert int.from_bytes(response[-2:], "big") in GARBAGE_SW


_TARGET: list[EmulatedPsam] = []


def _garbage_target() -> EmulatedPsam:
    if not _TARGET:
        _TARGET.append(issued())
    return _TARGET[0]


def test_random_bytes_never_crash_the_psam() -> None:
    psam = issued()
    rng = random.Random(15)
    for _ in range(2000):
        apdu = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 30)))
        response = psam.process(apdu)
        assert int.from_bytes(response[-2:], "big") != 0x6F00
    assert psam.state.lifecycle == "ISSUED"


# --- images -----------------------------------------------------------------------------


def test_a_psam_image_persists_and_refuses_to_open_as_a_card(tmp_path: Path) -> None:
    path, card_path = tmp_path / "psam.img", tmp_path / "card.img"
    psam = new_psam_file(path, PSAM_SERIAL, profile_name="national-2")
    new_card_file(card_path, "national-3", CARD_SERIAL)
    assert image_kind(path) == "psam" and image_kind(card_path) == "card"
    issue(psam, "national-2", [key_record(0x02, 1, "3des", 3, KEY_IAK)])
    psam.power_off()
    again = open_psam_file(path)
    assert again.state.lifecycle == "ISSUED" and again.state.terminal == TERMINAL
    assert again.state.key(2, 1) is not None and "value=<redacted>" in repr(again.state.key(2, 1))
    assert KEY_IAK.hex() not in repr(again.state)
    with pytest.raises(WrongImageKind, match="is a PSAM image, not a card image"):
        open_card_file(path)
    with pytest.raises(WrongImageKind, match="is a card image, not a PSAM image"):
        open_psam_file(card_path)
    assert isinstance(open_image_file(path), EmulatedPsam)
    assert isinstance(open_image_file(card_path), EmulatedCard)
    assert isinstance(load_card(path), EmulatedPsam)  # -r virtual:PATH
    assert path.read_bytes().startswith(b"SSCARD-PSAM\x00")
    assert KEY_IAK not in path.read_bytes()
    again.power_on()  # powered: the image is locked
    with pytest.raises(ReaderBusy, match=r"the PSAM .* is in use"):
        open_psam_file(path).power_on()
    again.power_off()


# --- CLI --------------------------------------------------------------------------------


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SSCARD, *args], capture_output=True, text=True, timeout=60, input=stdin)


def test_virtual_new_psam_and_raw_apdus(tmp_path: Path) -> None:
    path = tmp_path / "psam.img"
    made = run(
        "--json",
        "virtual",
        "new",
        str(path),
        "--psam",
        "--profile",
        "national-2",
        "--serial",
        PSAM_SERIAL.hex(),
    )
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    assert data["kind"] == "psam" and data["serial"] == PSAM_SERIAL.hex().upper()
    assert data["lifecycle"] == "BLANK" and data["atr"].startswith("3B8E800100")
    text = run("virtual", "new", str(tmp_path / "p2.img"), "--psam")
    assert text.returncode == 0 and "Blank PSAM created" in text.stdout
    key_info = run("--json", "-r", f"virtual:{path}", "apdu", "80CA000208", "80CA000300")
    assert key_info.returncode == 0, key_info.stderr
    out = key_info.stdout
    assert PSAM_SERIAL.hex().upper() in out.upper()
    assert ("1F0101" + "0F0F" + ref_kcv("3des", ptk_of("national-2")).hex()).upper() in (
        out.upper().replace(" ", "")
    )


# --- through pcscd ----------------------------------------------------------------------


@pytest.fixture
def both_readers(vpcd_port: int) -> Iterator[tuple[str, str]]:
    """Both vpcd readers for this test: the session's, then the other one."""
    other = next(p for p in VPCD_READERS if p != vpcd_port)
    with reader_lock((other,)):
        yield VPCD_READERS[35963], VPCD_READERS[35964]


def _transmit(connection: object, apdu: str) -> tuple[bytes, int]:
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex(apdu)))  # type: ignore[attr-defined]
    return bytes(data), (sw1 << 8) | sw2


@pytest.mark.pcsc
def test_serve_puts_a_card_and_a_psam_side_by_side(
    tmp_path: Path, both_readers: tuple[str, str]
) -> None:
    from smartcard.System import readers

    card_reader, psam_reader = both_readers
    card_path, psam_path = tmp_path / "card.img", tmp_path / "psam.img"
    new_card_file(card_path, "national-3", CARD_SERIAL)
    made = new_psam_file(psam_path, PSAM_SERIAL)
    issue(made, "national-3", [])
    made.power_off()
    server = subprocess.Popen(
        [SSCARD, "virtual", "serve", str(card_path), str(psam_path), "--port", "35963"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pcsc.wait_for_card(card_reader, 15)
        pcsc.wait_for_card(psam_reader, 15)
        by_name = {str(r): r for r in readers()}
        psam = by_name[psam_reader].createConnection()
        psam.connect()
        assert bytes(psam.getATR()).startswith(bytes.fromhex("3B8E800100") + b"SSCARDPSAM")
        assert _transmit(psam, "80CA000208") == (PSAM_SERIAL, 0x9000)
        assert _transmit(psam, "00B0960006") == (TERMINAL, 0x9000)
        psam.disconnect()
        card = by_name[card_reader].createConnection()
        card.connect()
        assert _transmit(card, "80CA000208") == (CARD_SERIAL, 0x9000)
        card.disconnect()
    finally:
        server.terminate()
        _, err = server.communicate(timeout=15)
    assert "serving PSAM" in err and "serving card" in err
    pcsc.wait_for_card(psam_reader, 10, present=False)


@pytest.mark.pcsc
def test_a_psam_in_a_pcsc_reader_derives_and_macs(both_readers: tuple[str, str]) -> None:
    from smartcard.System import readers

    from sscard.applets.pcsc_rig import card_in_reader

    psam = issued("national-2")
    with card_in_reader(psam, 35964):
        connection = {str(r): r for r in readers()}[both_readers[1]].createConnection()
        connection.connect()
        assert _transmit(connection, "801A2201" + "08" + CARD_SERIAL.hex()) == (b"", 0x9000)
        message = b"\x84\x1e\x00\x00\x04"
        data, sw = _transmit(connection, "80FA05000D" + bytes(8).hex() + message.hex() + "00")
        connection.disconnect()
    card_key = ref_diversify("3des", KEY_IAK, CARD_SERIAL)
    assert (data, sw) == (ref_mac("3des", card_key, message, bytes(8)), 0x9000)
