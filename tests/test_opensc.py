"""A client we did not write, opensc-tool, talks to the scripted card through pcscd + vpcd.

This checks that the card side (vpcd bridge, APDU handling) speaks the real
protocol, not just what sscard's own transport expects.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from sscard.applets.pcsc_rig import VPCD_READERS, card_in_reader
from tests.cardkit import SAMPLE_HOLDER, issued_card
from tests.conftest import PluggedCard

pytestmark = pytest.mark.skipif(shutil.which("opensc-tool") is None, reason="opensc not installed")


def _opensc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["opensc-tool", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_opensc_lists_the_reader_with_a_card(scripted_card: PluggedCard) -> None:
    out = _opensc("-l").stdout
    line = next(row for row in out.splitlines() if row.endswith(scripted_card.reader))
    assert " Yes " in line


def test_opensc_reads_the_atr(scripted_card: PluggedCard) -> None:
    result = _opensc("-r", scripted_card.reader, "-a")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().replace(":", "").upper() == scripted_card.card.atr.hex().upper()


def test_opensc_sends_apdus(scripted_card: PluggedCard) -> None:
    result = _opensc(
        "-r",
        scripted_card.reader,
        "-s",
        "00A4040007A0000000031010",
        "-s",
        "80EE000003AABBCC00",
    )
    assert result.returncode == 0, result.stderr
    assert "6F 07 84 05 07 A0 00 00 00" in result.stdout
    assert "AA BB CC" in result.stdout
    assert result.stdout.count("SW1=0x90, SW2=0x00") == 2
    received = scripted_card.card.received
    assert bytes.fromhex("00A4040007A0000000031010") in received
    assert received[-1] == bytes.fromhex("80EE000003AABBCC00")


def test_opensc_talks_to_the_emulated_card(vpcd_port: int) -> None:
    card = issued_card("national-3")
    with card_in_reader(card, vpcd_port):
        reader = VPCD_READERS[vpcd_port]
        atr = _opensc("-r", reader, "-a").stdout.strip().replace(":", "").upper()
        assert atr == card.atr.hex().upper()
        result = _opensc(
            "-r",
            reader,
            "-s",
            "00A404000F7378312E73682EC9E7BBE1B1A3D5CF",  # SSSE by DF name
            "-s",
            "00B2072C00",  # EF05 record 7: card number
            "-s",
            "0020000000",  # PIN tries left
        )
    assert result.returncode == 0, result.stderr
    number = " ".join(f"{b:02X}" for b in b"\x07\x09" + SAMPLE_HOLDER["card_number"].encode())
    assert number in result.stdout
    assert "SW1=0x63, SW2=0xC6" in result.stdout
