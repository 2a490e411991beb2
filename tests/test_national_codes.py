"""National error codes (issue 14 item 6): every error carries the national terminal
interface's code, in the library exception and in the CLI's JSON error object."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sscard import errors
from sscard.applets.factory import new_card_file
from sscard.i18n import set_language
from sscard.national import UNCLASSIFIED, NationalCode, code_for_sw, sw_code
from sscard.pin import PinManager
from sscard.pinpolicy import PinPolicyError
from sscard.status import tries_left
from sscard.transport import InProcessTransport
from tests.cardkit import PIN, issue, issued_card, session
from tests.operatorkit import env_for
from tests.test_errors import ALL

ROOT = Path(__file__).resolve().parent.parent
SSCARD = str(Path(sys.executable).with_name("sscard"))


# --- the status-word rule -------------------------------------------------------


@pytest.mark.parametrize(
    ("sw", "code"),
    [
        (0x9000, 0),
        (0x6A82, -27266),  # the national table's own example
        (0x6A83, -27267),
        (0x6982, -27010),
        (0x6700, -26368),
        (0x9303, -37635),
        (0x63C2, NationalCode.WRONG_PIN),
        (0x63C0, NationalCode.WRONG_PIN),
        (0x6983, NationalCode.PIN_BLOCKED),
    ],
)
def test_code_for_a_status_word(sw: int, code: int) -> None:
    assert code_for_sw(sw) == code


def test_63cx_is_a_wrong_pin_with_its_tries_left_and_the_bare_rule_keeps_the_word() -> None:
    assert (code_for_sw(0x63C2), tries_left(0x63C2)) == (-51, 2)
    assert sw_code(0x63C2) == -25538 and sw_code(0x6983) == -27011
    assert UNCLASSIFIED == -0x6F00 == -28416
    with pytest.raises(ValueError):
        sw_code(0x10000)


def test_every_national_code_has_its_wording() -> None:
    assert len(NationalCode) == 26
    for code in NationalCode:
        assert code < 0 and code.chinese and code.english
        assert not code.chinese.isascii()
    assert NationalCode(-20).chinese == "卡识别码格式错误"
    assert NationalCode.PSAM_LACKS_RKSSSE == -2203


def test_a_national_code_message_is_in_the_active_language() -> None:
    set_language("en")
    try:
        assert all(code.message == code.english for code in NationalCode)
    finally:
        set_language(None)


# --- every error class has a code, and docs/cli.md says which -------------------


def _instance(cls: type[errors.SscardError]) -> errors.SscardError:
    """An instance without running ``__init__`` (the code must not depend on it)."""
    exc = cls.__new__(cls)
    if isinstance(exc, errors.ApduError):
        exc.sw = 0x6A82
    if isinstance(exc, PinPolicyError):
        exc.rule = "sequence"
    return exc


def _documented() -> dict[str, str]:
    """Class name → national code cell, from docs/cli.md's "National error codes" table."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    section = text.split("## National error codes")[1]
    table = section.split("| code | meaning | sscard errors |")[1].split("\n\n")[0]
    out: dict[str, str] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("code", "---"):
            for name in re.findall(r"`([A-Z][A-Za-z]+)`", cells[2]):
                assert name not in out, f"{name} is in two rows of the table"
                out[name] = cells[0]
    return out


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_has_a_national_code_and_docs_say_which(
    cls: type[errors.SscardError],
) -> None:
    code = _instance(cls).national_code
    assert isinstance(code, int) and code < 0
    documented = _documented()
    assert cls.__name__ in documented, f"{cls.__name__} is missing from the national table"
    cell = documented[cls.__name__]
    if cell == "SW":  # the status word's own code
        assert code == code_for_sw(0x6A82)
    else:
        assert code == int(cell.replace("−", "-")), f"{cls.__name__}: docs/cli.md says {cell}"


def test_the_national_table_names_only_real_error_classes() -> None:
    assert set(_documented()) <= {cls.__name__ for cls in ALL}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.PinIncorrect(2), -51),
        (errors.PinBlocked(), -52),
        (errors.KeyBlocked(), -27011),  # 6983 of a key is "key locked", not the PIN
        (errors.AuthenticationFailed(2), -25538),  # a key's 63C2, as terminals show it
        (errors.FileNotFound(0x6A82), -27266),
        (errors.CardBlocked(0x6A81), -27265),
        (errors.ApplicationBlocked(0x9303), -37635),
        (errors.NoCard("no card"), -2),
        (errors.CardRemoved("removed"), -2),
        (errors.ReaderNotFound("no reader"), -11),
        (errors.ReaderBusy("busy"), -12),
        (errors.CommunicationError("no answer"), -4),
        (errors.InvalidInput("bad", [("name", "empty")]), -23),
        (errors.BadCardIdentificationCode("its MAC does not verify"), -20),
        (errors.MechanismUnavailable("SM4"), -2202),
        (errors.UnknownKeyReference("RKSSSE"), -27272),
        (errors.PlatformUnavailable("down"), UNCLASSIFIED),  # not a reader: no national word
        (errors.CorruptKeyStore("truncated"), -23),  # two categories: the earlier one wins
        (errors.WrongPassphrase("wrong"), -27010),
        (PinPolicyError("length"), -33),
        (PinPolicyError("sequence"), -23),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_the_code_of_an_error(error: errors.SscardError, code: int) -> None:
    assert error.national_code == code


def test_a_bad_card_identification_code_says_what_and_what_to_do() -> None:
    exc = errors.BadCardIdentificationCode("the MAC does not verify")
    assert "card identification code" in str(exc) and "MAC does not verify" in str(exc)
    assert exc.hint and "issuer" in exc.hint
    assert isinstance(exc, errors.AuthenticationError)


# --- the library exception of a real session, and the CLI's JSON error -------------


def test_a_wrong_pin_on_a_card_raises_with_the_national_code() -> None:
    transport = InProcessTransport(issued_card())
    transport.connect()
    try:
        pins = PinManager(session(transport, "national-3"))
        with pytest.raises(errors.PinIncorrect) as info:
            pins.verify("000000")
    finally:
        transport.disconnect()
    assert info.value.national_code == -51 and info.value.tries_left == 5


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SSCARD, "--json", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env_for("issuer"),
        timeout=60,
    )


def test_the_json_error_object_carries_the_national_code(tmp_path: Path) -> None:
    missing = _cli("-r", f"virtual:{tmp_path / 'none.img'}", "info")
    error = json.loads(missing.stderr)
    assert (error["error"], error["exit_code"], error["national_code"]) == ("NoCard", 5, -2)
    assert list(error)[:4] == ["error", "message", "exit_code", "national_code"]

    path = tmp_path / "card.img"
    issue(new_card_file(path), "national-3")
    card = f"virtual:{path}"
    wrong = json.loads(_cli("-r", card, "pin", "verify", "--pin-stdin", stdin="000000\n").stderr)
    assert (wrong["error"], wrong["national_code"], wrong["tries_left"]) == ("PinIncorrect", -51, 5)
    for _ in range(5):
        _cli("-r", card, "pin", "verify", "--pin-stdin", stdin="000000\n")
    blocked = json.loads(_cli("-r", card, "pin", "verify", "--pin-stdin", stdin=f"{PIN}\n").stderr)
    assert (blocked["error"], blocked["exit_code"], blocked["national_code"]) == (
        "PinBlocked",
        4,
        -52,
    )
