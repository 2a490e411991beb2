"""A client we did not write, opensc-tool, talks to the scripted card through pcscd + vpcd.

This checks that the card side (vpcd bridge, APDU handling) speaks the real
protocol, not just what sscard's own transport expects.
"""

from __future__ import annotations

import re
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


SSSE_AID = "7378312E73682EC9E7BBE1B1A3D5CF"

# One opensc-explorer session, its commands read from stdin.
EXPLORER_SCRIPT = f"""info
cd aid:{SSSE_AID}
info
ls
find EF00 EF10
cat EF05
cat EF05 7
cat sfi:06
info EF05
asn1 EF05 7
apdu 00A4090004DF01EF0500
cd aid:{SSSE_AID}
cd DF01
info
cd 3F00
cd DF01
"""


def _explore(reader: str, script: str) -> tuple[list[tuple[str, str]], str]:
    """Run ``opensc-explorer`` on ``reader`` with ``script``; (command, its stdout) pairs
    and the whole stderr."""
    result = subprocess.run(
        ["opensc-explorer", "-r", reader],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    chunks = re.split(r"^OpenSC \[[^\]]*\]> ", result.stdout, flags=re.MULTILINE)[1:]
    steps = [(c.split("\n", 1)[0], c.split("\n", 1)[1] if "\n" in c else "") for c in chunks]
    return steps, result.stderr


def _dump(data: bytes) -> str:
    return " ".join(f"{b:02X}" for b in data)


@pytest.mark.skipif(shutil.which("opensc-explorer") is None, reason="opensc-explorer missing")
def test_opensc_explorer_browses_the_issued_card(vpcd_port: int) -> None:
    """OpenSC's ISO 7816-4 driver finds its way around the card: the FCI (tag 82 with
    the record structure), SELECT by FID, name and path, records by FID and by SFI."""
    card = issued_card("national-2")
    with card_in_reader(card, vpcd_port):
        steps, err = _explore(VPCD_READERS[vpcd_port], EXPLORER_SCRIPT)
    out = dict(steps)  # by command; the repeated ones ("info", "cd …") by position
    assert [cmd for cmd, _ in steps][: len(EXPLORER_SCRIPT.splitlines())] == (
        EXPLORER_SCRIPT.splitlines()
    )
    assert "Dedicated File  ID 3F00" in steps[0][1]
    assert "Type attributes:         38" in steps[0][1]  # the MF's descriptor (tag 82)
    assert "DF name:                 sx1.sh." in steps[2][1]  # SSSE, selected by name
    # OpenSC's ISO driver has no LIST FILES (a card-specific command): ls cannot list.
    assert "Unable to receive file listing: Not supported" in err
    found = out["find EF00 EF10"]
    assert re.search(r"^ EF05 \t +wEF", found, re.M) and re.search(r"^ EF06 \t +wEF", found, re.M)
    # cat by FID reads every record until 6A83, and no more
    records = out["cat EF05"]
    assert records.count("Record ") == 7 and "Record 8:" not in records
    number = b"\x07\x09" + SAMPLE_HOLDER["card_number"].encode()
    assert _dump(number) in records and _dump(number) in out["cat EF05 7"]
    ssn = b"\x08\x12" + SAMPLE_HOLDER["ssn"].encode()
    assert _dump(ssn[:16]) in out["cat sfi:06"]  # by SFI, from the application DF
    info = out["info EF05"]
    assert "Working Elementary File  ID EF05, SFI 05" in info
    assert "EF structure:            Linear variable" in info
    assert "Number of records:       7" in info
    assert "Max. record size:        18 bytes" in info
    assert "Type attributes:         04 21 00 12 07" in info
    assert out["asn1 EF05 7"].strip() == "07 OBJECT DESCRIPTOR (9 bytes)"
    # SELECT by path from the current DF (P1 09), through OpenSC's raw APDU command
    assert "6F 0E 82 05 04 21 00 52 04 83 02 EF 05 88 01 05" in out["apdu 00A4090004DF01EF0500"]
    assert "Dedicated File  ID DF01" in steps[13][1]
    # By path from the MF (P1 08): DF01 lies under SSSE, which has no FID [ours].
    assert "unable to select DF: File not found" in err
    assert "Incorrect parameters" not in err
