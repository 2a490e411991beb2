"""`sscard virtual new | serve`, `sscard info` and `sscard read` on emulated cards."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sscard.applets.factory import new_card_file, open_card_file
from sscard.applets.pcsc_rig import VPCD_READERS
from sscard.cli.exit_codes import ExitCode
from sscard.transport import InProcessTransport, pcsc
from tests.cardkit import SAMPLE_HOLDER, SERIALS, issue, session

SSCARD = str(Path(sys.executable).with_name("sscard"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SSCARD, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def issued_file(tmp_path: Path) -> Path:
    path = tmp_path / "issued.img"
    issue(new_card_file(path, "national-2", SERIALS["national-2"]), "national-2")
    return path


def test_virtual_new_then_info(tmp_path: Path) -> None:
    path = tmp_path / "blank.img"
    made = run(
        "--json",
        "virtual",
        "new",
        str(path),
        "--profile",
        "national-2",
        "--serial",
        "00112233445566AA",
    )
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    assert data["serial"] == "00112233445566AA" and data["lifecycle"] == "BLANK"
    info = json.loads(run("--json", "-r", f"virtual:{path}", "info").stdout)
    assert info == {
        "atr": data["atr"],
        "serial": "00112233445566AA",  # GET DATA, not the ATR
        "profile": None,  # a blank card does not say its profile: issuance brings it
        "lifecycle": "BLANK",
        "pin_tries_left": None,
    }
    issue(open_card_file(path), "national-2")
    info = json.loads(run("--json", "-r", f"virtual:{path}", "info").stdout)
    assert info["profile"] == "national-2" and info["lifecycle"] == "ISSUED"  # recognised
    again = run("virtual", "new", str(path))
    assert again.returncode == ExitCode.INVALID_INPUT and "already exists" in again.stderr


@pytest.mark.parametrize("serial", ["0011", "zz112233445566AA", "00112233445566AABB"])
def test_virtual_new_rejects_bad_serials(tmp_path: Path, serial: str) -> None:
    result = run("virtual", "new", str(tmp_path / "x.img"), "--serial", serial)
    assert result.returncode == ExitCode.INVALID_INPUT
    assert "16 hexadecimal digits" in result.stderr
    assert not (tmp_path / "x.img").exists()


def test_read_blank_card_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "blank.img"
    new_card_file(path)
    result = run("-r", f"virtual:{path}", "read")
    assert result.returncode == ExitCode.FAILED
    assert "not issued yet" in result.stderr and "sscard issue" in result.stderr


def test_read_json_gives_back_the_issuance_input(issued_file: Path) -> None:
    result = run("--json", "-r", f"virtual:{issued_file}", "read")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == SAMPLE_HOLDER
    human = run("-r", f"virtual:{issued_file}", "read")
    assert SAMPLE_HOLDER["name"] in human.stdout and "Not read" in human.stderr


def test_read_with_keys_opens_department_files(issued_file: Path) -> None:
    result = run("--json", "-r", f"virtual:{issued_file}", "read", "--keystore", "dev")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["departments"]) == {"DF01", "DF02", "DF03", "DF04", "DF05"}
    assert "DEVELOPMENT KEY STORE" in result.stderr


def test_info_of_an_issued_card(issued_file: Path) -> None:
    info = json.loads(run("--json", "-r", f"virtual:{issued_file}", "info").stdout)
    assert (info["lifecycle"], info["pin_tries_left"], info["profile"]) == (
        "ISSUED",
        6,
        "national-2",
    )
    assert "PIN tries  6" in run("-r", f"virtual:{issued_file}", "info").stdout


def test_serve_puts_the_card_in_a_pcsc_reader(issued_file: Path, vpcd_port: int) -> None:
    reader = VPCD_READERS[vpcd_port]
    server = subprocess.Popen(
        [SSCARD, "virtual", "serve", str(issued_file), "--port", str(vpcd_port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pcsc.wait_for_card(reader, 15)
        info = run("--json", "-r", reader, "info")
        assert info.returncode == 0, info.stderr
        assert json.loads(info.stdout)["serial"] == SERIALS["national-2"].hex().upper()
        read = run("--json", "-r", reader, "read")
        assert json.loads(read.stdout) == SAMPLE_HOLDER
        busy = run("-r", f"virtual:{issued_file}", "info")  # the served card is taken
        assert busy.returncode == ExitCode.NO_CARD and "in use by another process" in busy.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=15)
    assert server.returncode == 0
    assert "card images are consistent" in err
    pcsc.wait_for_card(reader, 10, present=False)
    card = open_card_file(issued_file)  # the image is intact after SIGTERM
    card.power_on()
    assert card.state.lifecycle == "ISSUED"


def test_read_prints_control_characters_from_a_card_escaped(issued_file: Path) -> None:
    """A card from elsewhere can hold anything: hostile bytes written past validation."""
    name = "张\x1b[2J\r\x7f\x00三"  # ESC clear-screen, CR, DEL, NUL: all GBK single bytes
    name_ext = "\u202e\u2028\x85\x9b\u2066"  # RLO, LINE SEPARATOR, NEL, CSI, LRI
    card = open_card_file(issued_file)
    transport = InProcessTransport(card)
    transport.connect()
    try:
        c = session(transport, "national-2")
        c.external_authenticate("SSSE")
        c.update_record("EF06", 2, b"\x09\x1e" + name.encode("gbk").ljust(30, b"\x00"))
        c.update_record("EF06", 3, b"\x4e\x14" + name_ext.encode("gb18030").ljust(20, b"\x00"))
    finally:
        transport.disconnect()
    hostile = set(name + name_ext) - set("张[2J三")

    def read(*options: str) -> str:
        done = subprocess.run(
            [SSCARD, *options, "-r", f"virtual:{issued_file}", "read"],
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.decode("utf-8")

    human = read()
    assert not hostile & set(human.replace("\n", "")), repr(human)
    assert len(human.splitlines()) == 2 + len(SAMPLE_HOLDER)  # title, fields, name_ext
    assert "张\\x1b[2J\\x0d\\x7f\\x00三" in human
    assert "\\u202e\\u2028\\x85\\x9b\\u2066" in human

    as_json = read("--json")
    assert not hostile & set(as_json.replace("\n", "")), repr(as_json)
    data = json.loads(as_json)
    assert (data["name"], data["name_ext"]) == (name, name_ext)
