"""The emulated card's image: encrypted, atomic, locked; tearing with EEPROM semantics."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sscard import errors
from sscard.applets import load_card
from sscard.applets.cos import EmulatedCard, Latency
from sscard.applets.factory import blank_card_state, new_card_file, open_card_file
from sscard.applets.image import (
    DEFAULT_ATR,
    MAGIC,
    CorruptCardImage,
    FileStorage,
    OutdatedCardImage,
    with_tck,
)
from sscard.keys.dev import development_card_key
from sscard.layout import load_profile
from sscard.transport import InProcessTransport
from tests.cardkit import PIN, SERIALS, issue, issued_card, session

SERIAL = SERIALS["national-3"]


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "card.img"
    card = new_card_file(path, "national-3", SERIAL)
    issue(card, "national-3")
    return path


def _send(card: EmulatedCard, text: str) -> int:
    return int.from_bytes(card.process(bytes.fromhex(text))[-2:], "big")


def _tries(card: EmulatedCard) -> int:
    card.power_on()
    _send(card, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
    sw = _send(card, "0020000000")
    card.power_off()
    return sw & 0x0F if sw & 0xFFF0 == 0x63C0 else 0


def test_image_holds_no_secret_in_clear(image: Path) -> None:
    blob = image.read_bytes()
    assert blob.startswith(MAGIC)
    profile = load_profile("national-3")
    tk = development_card_key(profile.key_scheme.find("MF", "TK", 0), SERIAL)
    for secret in (tk, tk.hex().encode(), bytes.fromhex(PIN), PIN.encode()):
        assert secret not in blob
    assert b"SSSE" not in blob and b"EF05" not in blob  # nothing readable at all


def test_reopened_image_is_the_same_card(image: Path) -> None:
    card = open_card_file(image)
    atr = card.power_on()
    assert card.serial == SERIAL
    # the chip serial comes from GET DATA 80 CA 00 02, not from the vendor-like ATR
    assert card.process(bytes.fromhex("80CA000208")) == SERIAL + b"\x90\x00"
    assert atr == with_tck(DEFAULT_ATR) and SERIAL not in atr
    assert card.state.lifecycle == "ISSUED"
    assert _send(card, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF") == 0x9000
    assert _send(card, f"0020000003{PIN}") == 0x9000


def test_new_refuses_to_overwrite(image: Path) -> None:
    with pytest.raises(errors.InvalidInput, match="already exists"):
        new_card_file(image, "national-3")


def _outdated_image(path: Path, old_profile: str) -> Path:
    """A card image as an earlier sscard made it: its state names a retired profile."""
    state = dataclasses.replace(blank_card_state("national-3", SERIAL), profile=old_profile)
    FileStorage(path).create(state)
    return path


@pytest.mark.parametrize(
    ("old", "successor"), [("ss3-sm4", "national-3"), ("ss2-3des", "national-2")]
)
def test_an_image_of_a_retired_profile_is_outdated_not_corrupt(
    tmp_path: Path, old: str, successor: str
) -> None:
    path = _outdated_image(tmp_path / "old.img", old)
    with pytest.raises(OutdatedCardImage) as info:
        open_card_file(path)
    assert not isinstance(info.value, CorruptCardImage)
    message = str(info.value)
    assert str(path) in message and old in message and f"profile {successor}" in message
    assert info.value.hint == f"make a new card with profile {successor}"


def test_the_cli_refuses_an_outdated_image_with_exit_7_and_no_traceback(tmp_path: Path) -> None:
    path = _outdated_image(tmp_path / "old.img", "ss3-sm4")
    env = {k: v for k, v in os.environ.items() if k not in ("SSCARD_READER", "SSCARD_KEYSTORE")}
    sscard = str(Path(sys.executable).with_name("sscard"))
    human = subprocess.run(
        [sscard, "-r", f"virtual:{path}", "info"], capture_output=True, text=True, env=env
    )
    assert human.returncode == 7, human.stderr
    assert "Traceback" not in human.stderr + human.stdout
    lines = human.stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and "earlier sscard" in lines[0]
    assert "profile national-3" in lines[0]
    assert lines[1].startswith("hint: ") and "sscard virtual new PATH --profile" in lines[1]
    machine = subprocess.run(
        [sscard, "--json", "-r", f"virtual:{path}", "info"], capture_output=True, text=True, env=env
    )
    error = json.loads(machine.stderr)
    assert (error["error"], error["exit_code"]) == ("OutdatedCardImage", 7)


def test_corrupt_image_is_refused(image: Path) -> None:
    blob = bytearray(image.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    image.write_bytes(bytes(blob))
    with pytest.raises(CorruptCardImage, match="corrupt or belongs to another installation"):
        open_card_file(image)
    image.write_bytes(bytes(blob[:40]))  # truncated
    with pytest.raises(CorruptCardImage):
        open_card_file(image)


def test_image_of_another_installation_is_refused(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSCARD_EMULATOR_KEY_FILE", str(tmp_path / "other.key"))
    with pytest.raises(CorruptCardImage, match="another installation"):
        open_card_file(image)


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(100))
    with pytest.raises(errors.InvalidInput, match="not a card file"):
        load_card(path)


def test_failed_write_leaves_the_old_image(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = image.read_bytes()
    card = open_card_file(image)
    card.power_on()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    assert _send(card, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF") == 0x9000
    assert _send(card, "0020000003000000") == 0x6F00  # the counter could not be persisted …
    monkeypatch.undo()
    assert image.read_bytes() == before  # … so nothing changed, and no temp file is left
    assert sorted(p.name for p in image.parent.iterdir()) == ["card.img", "card.img.lock"]


def test_killed_process_never_leaves_a_torn_image(image: Path) -> None:
    # A child hammers the card with EEPROM writes (wrong PIN, then the right one);
    # it is killed with SIGKILL at an arbitrary moment, several times.
    script = (
        "import sys\n"
        "from sscard.applets.factory import open_card_file\n"
        "c = open_card_file(sys.argv[1]); c.power_on()\n"
        "c.process(bytes.fromhex('00A404000F7378312E73682EC9E7BBE1B1A3D5CF'))\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    c.process(bytes.fromhex('0020000003000000'))\n"
        f"    c.process(bytes.fromhex('0020000003{PIN}'))\n"
    )
    for delay in (0.05, 0.13, 0.21):
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(image)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        card = open_card_file(image)  # loads: the image is the one before or after a write
        assert _tries(card) in (4, 5, 6)  # 6 at rest, 5 after the wrong PIN, 4 mid-verify
        card.power_on()
        _send(card, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
        assert _send(card, f"0020000003{PIN}") == 0x9000  # and fully working
        card.power_off()


def test_two_processes_cannot_run_one_card(image: Path) -> None:
    first = open_card_file(image)
    first.power_on()
    second = open_card_file(image)
    with pytest.raises(errors.ReaderBusy, match="in use by another process"):
        second.power_on()
    first.power_off()
    second.power_on()


# --- tearing: each EEPROM write happens entirely or not at all ----------------------


def _torn(card: EmulatedCard, apdu: str, writes: int) -> None:
    transport = InProcessTransport(card)
    transport.connect()
    transport.transmit(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))
    card.arm_tear(1, writes)
    with pytest.raises(errors.CardRemoved):
        transport.transmit(bytes.fromhex(apdu))
    assert not transport.connected
    transport.connect()  # card reinserted
    transport.disconnect()


def test_pin_counter_is_spent_before_the_comparison() -> None:
    card = issued_card()
    _torn(card, f"0020000003{PIN}", writes=1)  # the right PIN, power cut after the decrement
    assert _tries(card) == 5  # the try was spent: tearing cannot be used to guess PINs
    _torn(card, "0020000003000000", writes=0)  # cut before any write: nothing happened
    assert _tries(card) == 5
    card.power_on()
    _send(card, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
    assert _send(card, f"0020000003{PIN}") == 0x9000
    card.power_off()
    assert _tries(card) == 6


def test_torn_record_write_is_all_or_nothing() -> None:
    card = issued_card()
    before = _record(card)
    transport = InProcessTransport(card)
    transport.connect()
    c = session(transport, "national-3")
    c.external_authenticate("SSSE")
    card.arm_tear(1, 0)  # power cut before the write: the old record
    with pytest.raises(errors.CardRemoved):
        c.update_record("EF05", 7, b"\x07\x09" + b"Z99999996")
    assert _record(card) == before
    transport.connect()
    c = session(transport, "national-3")
    c.external_authenticate("SSSE")
    card.arm_tear(1, 1)  # power cut after the write, before the answer: the new record
    with pytest.raises(errors.CardRemoved):
        c.update_record("EF05", 7, b"\x07\x09" + b"Z99999996")
    assert _record(card) == b"\x07\x09" + b"Z99999996"


def _record(card: EmulatedCard) -> bytes:
    card.power_on()
    card.process(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))
    data = card.process(bytes.fromhex("00B2072C00"))[:-2]
    card.power_off()
    return data


def test_latency_model_delays_apdus_and_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Latency.named("realistic") == Latency(0.005, 0.020)
    with pytest.raises(errors.InvalidInput, match="unknown latency model"):
        Latency.named("warp")
    slept: list[float] = []
    monkeypatch.setattr("sscard.applets.chip.time.sleep", slept.append)
    card = issued_card()
    card.latency = Latency.named("realistic")
    card.power_on()
    card.process(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))
    card.process(bytes.fromhex("0020000003000000"))  # one EEPROM write (the counter)
    assert slept == [0.005, 0.005, 0.020]


def test_memory_and_file_storage_agree(image: Path) -> None:
    storage = FileStorage(image)
    state = storage.load()
    assert state.serial == SERIAL and state.profile == "national-3"
    assert [f.label() for f in state.walk()][:3] == ["MF", "7378312E73682EC9E7BBE1B1A3D5CF", "EF05"]
