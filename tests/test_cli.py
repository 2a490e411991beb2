"""The ``sscard`` command line: readers, apdu, global options, exit codes, JSON errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sscard import __version__, errors
from sscard.cli.exit_codes import ExitCode, exit_code_for
from sscard.cli.main import cli
from tests.conftest import PluggedCard

SSCARD = str(Path(sys.executable).with_name("sscard"))


def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SSCARD_READER"}
    return subprocess.run(
        [SSCARD, *args], capture_output=True, text=True, input=input, env=env, timeout=60
    )


@pytest.fixture
def scripted_file(tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    path.write_text(
        json.dumps(
            {
                "sscard_card": "scripted",
                "atr": "3B8C80015353430000000000000000014F",
                "rules": [{"command": "00A40000023F00", "response": "9000"}],
            }
        )
    )
    return path


def test_version_and_help() -> None:
    assert run("--version").stdout.strip() == f"sscard, version {__version__}"
    help_text = run("--help").stdout
    for word in ("--reader", "--json", "--log-level", "readers", "apdu", "virtual:PATH"):
        assert word in help_text


def test_readers_through_pcscd(scripted_card: PluggedCard) -> None:
    result = run("readers")
    assert result.returncode == 0, result.stderr
    line = next(r for r in result.stdout.splitlines() if r.startswith(scripted_card.reader))
    assert scripted_card.card.atr.hex().upper() in line
    rows = json.loads(run("--json", "readers").stdout)
    mine = next(r for r in rows if r["name"] == scripted_card.reader)
    assert mine == {
        "name": scripted_card.reader,
        "card_present": True,
        "atr": scripted_card.card.atr.hex().upper(),
        "kind": "pcsc",
        "pin_pad": False,  # vpcd has no PC/SC part 10 (vsmartcard issues 264, 276)
    }


def test_apdu_through_pcscd(scripted_card: PluggedCard) -> None:
    result = run(
        "--reader",
        scripted_card.reader,
        "apdu",
        "00 A4 04 00 07 A0 00 00 00 03 10 10",
        "80EE00000101",
    )
    assert result.returncode == 0, result.stderr
    assert "< 6F07840507A0000000 9000  (success)" in result.stdout
    assert "< 01 9000" in result.stdout
    unknown = run("-r", "pcd 00 0" + scripted_card.reader[-1], "apdu", "00A40000023F00")
    assert unknown.returncode == 0
    assert "6A82  (file or application not found)" in unknown.stdout


def test_apdu_expect_sw(scripted_card: PluggedCard) -> None:
    ok = run("-r", scripted_card.reader, "apdu", "--expect-sw", "90XX", "80EE00000101")
    assert ok.returncode == 0
    bad = run(
        "-r", scripted_card.reader, "apdu", "--expect-sw", "9000", "00A40000023F00", "80EE00000101"
    )
    assert bad.returncode == 1
    assert "expected SW 9000, got 6A82" in bad.stderr
    assert "80EE" not in bad.stdout  # stopped at the first mismatch


def test_apdu_json_output(scripted_file: Path) -> None:
    result = run(
        "--json", "-r", f"virtual:{scripted_file}", "apdu", "00A40000023F00", "80EE0000024142"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"command": "00A40000023F00", "data": "", "sw": "9000", "meaning": "success"},
        {"command": "80EE0000024142", "data": "4142", "sw": "9000", "meaning": "success"},
    ]


def test_secrets_refused_on_argv_and_accepted_on_stdin(scripted_file: Path) -> None:
    refused = run("-r", f"virtual:{scripted_file}", "apdu", "0020000003123456")
    assert refused.returncode == ExitCode.INVALID_INPUT
    assert "--stdin" in refused.stderr
    assert "123456" not in refused.stderr + refused.stdout
    accepted = run("-r", f"virtual:{scripted_file}", "apdu", "--stdin", input="0020000003123456\n")
    assert accepted.returncode == 0
    assert "0020000003 <redacted>" not in accepted.stdout  # the header only, data hidden
    assert "00200000 <redacted>" in accepted.stdout
    assert "123456" not in accepted.stdout + accepted.stderr


def test_trace_log_level_redacts(scripted_file: Path) -> None:
    result = run(
        "--log-level",
        "trace",
        "-r",
        f"virtual:{scripted_file}",
        "apdu",
        "--stdin",
        input="0020000003987654\n00A40000023F00\n",
    )
    assert result.returncode == 0
    assert "TRACE sscard.apdu: > 0020000003 <redacted>" in result.stderr
    assert "TRACE sscard.apdu: > 00A40000023F00" in result.stderr
    assert "987654" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["apdu", "zz"], ExitCode.INVALID_INPUT, "must be hexadecimal"),
        (["apdu", "00A400000201"], ExitCode.INVALID_INPUT, "Lc=2 must be 7 or 8 bytes"),
        (["apdu"], ExitCode.USAGE, "give at least one APDU"),
        (["apdu", "--expect-sw", "9G00", "00A4"], ExitCode.USAGE, "4 hex digits"),
        (["nosuchcommand"], ExitCode.USAGE, "No such command"),
    ],
)
def test_usage_and_input_errors(
    scripted_file: Path, args: list[str], code: int, words: str
) -> None:
    result = run("-r", f"virtual:{scripted_file}", *args)
    assert result.returncode == code
    assert words in result.stderr


def test_errors_as_json_on_stderr(tmp_path: Path) -> None:
    result = run("--json", "-r", f"virtual:{tmp_path / 'missing.json'}", "apdu", "00A40000023F00")
    assert result.returncode == ExitCode.NO_CARD
    assert result.stdout == ""
    payload = json.loads(result.stderr)
    assert payload["error"] == "NoCard"
    assert payload["exit_code"] == 5
    assert "no card file" in payload["message"]


def test_foreign_card_file_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "foreign.json"
    path.write_text('{"hello": 1}')
    result = run("-r", f"virtual:{path}", "apdu", "00A40000023F00")
    assert result.returncode == ExitCode.INVALID_INPUT
    assert "not a card file" in result.stderr


def test_unknown_reader_lists_what_exists(scripted_card: PluggedCard) -> None:
    result = run("-r", "Omnikey 5422", "readers")  # readers ignores a PC/SC --reader
    assert result.returncode == 0
    result = run("-r", "Omnikey 5422", "apdu", "00A40000023F00")
    assert result.returncode == ExitCode.NO_CARD
    assert "no reader matches 'Omnikey 5422'" in result.stderr
    assert scripted_card.reader in result.stderr


def test_reader_from_environment(scripted_file: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["apdu", "00A40000023F00"], env={"SSCARD_READER": f"virtual:{scripted_file}"}
    )
    assert result.exit_code == 0, result.output
    assert "9000  (success)" in result.output


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.PinIncorrect(2), ExitCode.WRONG_PIN),
        (errors.PinBlocked(), ExitCode.BLOCKED),
        (errors.KeyBlocked(), ExitCode.BLOCKED),
        (errors.CardBlocked(0x6A81), ExitCode.BLOCKED),
        (errors.ApplicationBlocked(0x9303), ExitCode.BLOCKED),
        (errors.NoCard("x"), ExitCode.NO_CARD),
        (errors.CardRemoved("x"), ExitCode.NO_CARD),
        (errors.ReaderNotFound("x"), ExitCode.NO_CARD),
        (errors.ReaderBusy("x"), ExitCode.NO_CARD),
        (errors.NoService("x"), ExitCode.NO_CARD),
        (errors.BadMac(0x6988), ExitCode.AUTH),
        (errors.AuthenticationFailed(1), ExitCode.AUTH),
        (errors.SecurityStatusNotSatisfied(0x6982), ExitCode.AUTH),
        (errors.InvalidInput("x"), ExitCode.INVALID_INPUT),
        (errors.FileNotFound(0x6A82), ExitCode.FAILED),
        (errors.ConditionsNotSatisfied(0x6985), ExitCode.FAILED),
        (errors.MalformedResponse(1), ExitCode.FAILED),
    ],
)
def test_exit_code_table(error: errors.SscardError, code: ExitCode) -> None:
    assert exit_code_for(error) == code


def test_readers_lists_the_virtual_card(scripted_file: Path) -> None:
    rows = json.loads(run("--json", "-r", f"virtual:{scripted_file}", "readers").stdout)
    assert rows[0] == {
        "name": f"virtual:{scripted_file}",
        "card_present": True,
        "atr": "3B8C80015353430000000000000000014F",
        "kind": "virtual",
        "pin_pad": False,  # an in-process card sits in a plain reader
    }
