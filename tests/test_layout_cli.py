"""``sscard profile`` and ``sscard holder``: output, validation and exit code 7 on bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from sscard.cli.main import cli
from sscard.layout import HOLDER_FIELDS, load_profile


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def good_holder(**changes: Any) -> dict[str, Any]:
    holder: dict[str, Any] = {
        "ssn": "11010519491231002X",
        "name": "张三",
        "gender": "2",
        "ethnicity": 1,
        "birthplace": "110105",
        "birth_date": "1949-12-31",
        "card_number": "A12345671",
        "issue_date": "2024-01-31",
        "expiry_date": "2034-01-31",
        "region": "310000",
        "issuer_org": "310000000000000000000001",
    }
    holder.update(changes)
    return holder


def test_profile_list() -> None:
    result = run("profile", "list")
    assert result.exit_code == 0
    for name in ("national-3", "national-2", "national-base"):
        assert name in result.output
    rows = json.loads(run("--json", "profile", "list").output)
    assert {r["name"]: r["default"] for r in rows}["national-3"] is True


def test_profile_show_human_names_files_records_and_keys() -> None:
    result = run("profile", "show", "national-2")
    assert result.exit_code == 0
    for text in ("3des", "7378312E73682EC9E7BBE1B1A3D5CF", "EF06", "SFI 06", "name_ext"):
        assert text in result.output
    assert "ext-auth(SSSE,01)" in result.output and "EAK 01 v1" in result.output


def test_profile_show_names_aids_the_read_key_and_per_record_read_rules() -> None:
    result = run("profile", "show", "national-3")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "DF name D15600000501" in result.output and "DF name D15600000505" in result.output
    assert "RK 0A v1" in result.output
    assert "algorithm indicator 03 and spec version 3.00; any ATR" in result.output
    protected = "read: ext-auth(SSSE,0A) | ext-auth(SSSE,01)"
    issue_date = next(line for line in lines if line.strip().startswith("#5  tag 05"))
    card_number = next(line for line in lines if line.strip().startswith("#7  tag 07"))
    assert issue_date.endswith(protected) and "read:" not in card_number
    two = run("profile", "show", "national-2").output
    assert "RK 0A" not in two and "ext-auth(SSSE,0A)" not in two


def test_profile_show_json_is_a_valid_profile(tmp_path: Path) -> None:
    result = run("--json", "profile", "show", "national-3")
    assert result.exit_code == 0
    path = tmp_path / "resolved.json"
    path.write_text(result.output, encoding="utf-8")
    assert load_profile(path) == load_profile("national-3")
    checked = run("profile", "validate", str(path))
    assert checked.exit_code == 0, checked.output
    assert "valid profile 'national-3'" in checked.output


def test_profile_validate_lists_unknown_keys_by_path_exit_7(tmp_path: Path) -> None:
    data = load_profile().to_data()
    data["files"][2]["records"][0]["tagg"] = "01"
    data["pinn"] = {}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = run("profile", "validate", str(path))
    assert result.exit_code == 7
    assert "files[2].records[0].tagg: unknown key" in result.stderr
    assert "pinn: unknown key" in result.stderr
    as_json = run("--json", "profile", "validate", str(path))
    assert as_json.exit_code == 7
    error = json.loads(as_json.stderr)
    assert {"field": "pinn", "problem": "unknown key"} in error["problems"]


def test_profile_show_unknown_name_is_exit_7() -> None:
    result = run("profile", "show", "nope")
    assert result.exit_code == 7
    assert "national-3" in result.stderr


def test_a_retired_profile_name_is_exit_7_naming_the_successor() -> None:
    result = run("profile", "show", "ss2-3des")
    assert result.exit_code == 7
    assert "ss2-3des" in result.stderr and "use 'national-2'" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    error = json.loads(run("--json", "profile", "show", "ss3-sm4").stderr)
    assert error["exit_code"] == 7
    assert {"field": "profile", "problem": "use 'national-3', its national-spec successor"} in (
        error["problems"]
    )


def test_holder_validate_good_csv(tmp_path: Path) -> None:
    path = tmp_path / "batch.csv"
    header = ",".join(HOLDER_FIELDS)
    row = ",".join(str(good_holder().get(f, "")) for f in HOLDER_FIELDS)
    path.write_text(f"{header}\n{row}\n{row}\n", encoding="utf-8")
    result = run("holder", "validate", str(path))
    assert result.exit_code == 0, result.output
    assert "2 row(s) valid" in result.output


def test_bad_holder_file_gives_one_message_listing_every_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    rows = [
        good_holder(),
        good_holder(ssn="110105194912310021", card_number="A1"),
        good_holder(expiry_date="2020-01-01", name="王\U00020000"),
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    result = run("holder", "validate", str(path))
    assert result.exit_code == 7
    message = result.stderr
    assert message.count("Error:") == 1
    for where in ("line 2: ssn", "line 2: card_number", "line 3: expiry_date", "line 3: name"):
        assert where in message
    assert "line 1" not in message
    error = json.loads(run("--json", "holder", "validate", str(path)).stderr)
    assert error["exit_code"] == 7
    assert len(error["problems"]) == 4


def test_help_has_examples() -> None:
    for args in (
        ("profile", "--help"),
        ("profile", "show", "--help"),
        ("holder", "validate", "--help"),
    ):
        result = run(*args)
        assert result.exit_code == 0 and "Example" in result.output


# --- issue 12: hostile holder files through 'sscard issue --dry-run' ---------


def _issue_dry_run(path: Path) -> Result:
    return CliRunner().invoke(cli, ["issue", "--holder", str(path), "--dry-run"])


def _refused(result: Result, *words: str) -> None:
    assert result.exit_code == 7, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def test_issue_dry_run_accepts_the_forms_real_data_uses(tmp_path: Path) -> None:
    body = "83000019800101003"
    from sscard.layout.gb11643 import check_digit

    ssn = (body + check_digit(body)).lower()
    path = tmp_path / "h.json"
    holder = good_holder(ssn=ssn, ethnicity="98", birth_date="1980-01-01", gender="1")
    path.write_text(json.dumps(holder), encoding="utf-8")
    result = _issue_dry_run(path)
    assert result.exit_code == 0, result.output


def test_issue_dry_run_refuses_a_control_character_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text(json.dumps(good_holder(name="张\x1b[2J三")), encoding="utf-8")
    result = _issue_dry_run(path)
    _refused(result, "name", "U+001B", "control character")
    assert "\x1b" not in result.stderr


def test_issue_dry_run_refuses_a_trailing_newline_and_a_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text(json.dumps(good_holder(ssn="11010519491231002X\n")), encoding="utf-8")
    _refused(_issue_dry_run(path), "ssn")
    text = json.dumps(good_holder())
    path.write_text(text[:-1] + ', "ssn": "11010519491231002X"}', encoding="utf-8")
    _refused(_issue_dry_run(path), "ssn", "more than once")


def test_issue_dry_run_refuses_a_birth_date_in_year_60(tmp_path: Path) -> None:
    from sscard.layout.gb11643 import check_digit

    body = "11010500600101002"
    path = tmp_path / "h.json"
    holder = good_holder(ssn=body + check_digit(body), birth_date="0060-01-01")
    path.write_text(json.dumps(holder), encoding="utf-8")
    _refused(_issue_dry_run(path), "birth_date", "1900-01-01")


def test_issue_dry_run_deep_json_and_huge_numbers_are_exit_7(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    _refused(_issue_dry_run(path), "nested too deeply")
    path.write_text('{"ethnicity": ' + "7" * 5000 + "}", encoding="utf-8")
    _refused(_issue_dry_run(path), "too many digits")
    csv_path = tmp_path / "h.csv"
    csv_path.write_text(",".join(HOLDER_FIELDS) + "\n" + "x" * 200_000 + "\n", encoding="utf-8")
    _refused(_issue_dry_run(csv_path), "line 2")
