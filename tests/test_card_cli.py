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
from sscard.transport import pcsc
from tests.cardkit import SAMPLE_HOLDER, SERIALS, issue

SSCARD = str(Path(sys.executable).with_name("sscard"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SSCARD, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def issued_file(tmp_path: Path) -> Path:
    path = tmp_path / "issued.img"
    issue(new_card_file(path, "ss2-3des", SERIALS["ss2-3des"]), "ss2-3des")
    return path


def test_virtual_new_then_info(tmp_path: Path) -> None:
    path = tmp_path / "blank.img"
    made = run(
        "--json",
        "virtual",
        "new",
        str(path),
        "--profile",
        "ss2-3des",
        "--serial",
        "00112233445566AA",
    )
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    assert data["serial"] == "00112233445566AA" and data["lifecycle"] == "BLANK"
    info = json.loads(run("--json", "-r", f"virtual:{path}", "info").stdout)
    assert info == {
        "atr": data["atr"],
        "serial": "00112233445566AA",
        "profile": "ss2-3des",
        "lifecycle": "BLANK",
        "pin_tries_left": None,
    }
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
    assert (info["lifecycle"], info["pin_tries_left"], info["profile"]) == ("ISSUED", 6, "ss2-3des")
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
        assert json.loads(info.stdout)["serial"] == SERIALS["ss2-3des"].hex().upper()
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
