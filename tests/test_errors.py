"""Every error is categorised, exits as docs/cli.md says, and speaks library (issue 13 item 8)."""

from __future__ import annotations

import ast
import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import sscard
from sscard import errors
from sscard.cli.exit_codes import ExitCode, exit_code_for
from sscard.cli.hints import hint_for

ROOT = Path(__file__).resolve().parent.parent
SSCARD = str(Path(sys.executable).with_name("sscard"))

# The documented categories, in the order the exit code table tries them.
CATEGORIES: list[tuple[type[errors.SscardError], ExitCode]] = [
    (errors.PinIncorrect, ExitCode.WRONG_PIN),
    (errors.BlockedError, ExitCode.BLOCKED),
    (errors.TransportError, ExitCode.NO_CARD),
    (errors.AuthenticationError, ExitCode.AUTH),
    (errors.InvalidInput, ExitCode.INVALID_INPUT),
    (errors.OperationFailed, ExitCode.FAILED),
]


def _library_modules() -> Iterator[str]:
    for info in pkgutil.walk_packages(sscard.__path__, "sscard."):
        if not info.name.startswith("sscard.cli") and not info.name.endswith("__main__"):
            yield info.name


def _all_errors() -> list[type[errors.SscardError]]:
    for name in _library_modules():
        importlib.import_module(name)
    seen: dict[type[errors.SscardError], None] = {}
    todo = [errors.SscardError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen and not sub.__name__.startswith("_"):
                seen[sub] = None
                todo.append(sub)
    return list(seen)


ALL = _all_errors()


def _documented() -> dict[str, int]:
    """Class name → exit code, from the exit code table of docs/cli.md."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    table = text.split("## Exit codes (stable)")[1].split("\n\n")[1]
    out: dict[str, int] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            for name in re.findall(r"`([A-Z][A-Za-z]+)`", cells[2]):
                assert name not in out, f"{name} is in two rows of the table"
                out[name] = int(cells[0])
    return out


def test_the_walk_finds_errors_outside_errors_py() -> None:
    names = {cls.__name__ for cls in ALL}
    assert {"CardNotIssued", "HolderHasActiveCard", "PinPolicyError", "CorruptCardImage"} <= names
    assert len(ALL) > 60


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_is_categorised_and_exits_as_documented(
    cls: type[errors.SscardError],
) -> None:
    category = next((code for base, code in CATEGORIES if issubclass(cls, base)), None)
    assert category is not None, f"{cls.__name__} is under no category (it would exit 1 by luck)"
    assert exit_code_for(cls.__new__(cls)) == category
    documented = _documented()
    assert cls.__name__ in documented, f"{cls.__name__} is missing from docs/cli.md's table"
    assert documented[cls.__name__] == category, f"{cls.__name__}: docs/cli.md says otherwise"


def test_the_table_names_only_real_error_classes() -> None:
    names = {cls.__name__ for cls in ALL} | {"SscardError"}
    assert set(_documented()) <= names


# --- library messages speak library -------------------------------------------

OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")
COMMAND = re.compile(r"'sscard [a-z]")  # "run 'sscard operator login'": the CLI's to say


def _raised_texts(path: Path) -> Iterator[tuple[int, str]]:
    """String constants inside each ``raise`` statement and ``.with_hint`` call of a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target: ast.AST = node.exc
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Attribute) and t.attr == "hint" for t in node.targets
        ):
            target = node.value
        else:
            continue
        for sub in ast.walk(target):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                yield sub.lineno, sub.value


def test_no_library_error_names_a_command_line_option_or_command() -> None:
    offenders = []
    for name in _library_modules():
        path = Path(importlib.import_module(name).__file__ or "")
        for line, text in _raised_texts(path):
            if OPTION.search(text) or COMMAND.search(text):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert offenders == []


def test_the_option_regex_would_catch_one() -> None:
    assert OPTION.search("give a key store with --keystore")
    assert not OPTION.search("a 6-digit city code, pkcs11:TOKEN-LABEL")


def test_a_hint_is_plain_in_the_library_and_names_the_option_in_the_cli() -> None:
    from sscard.card import KeysRequired

    exc = KeysRequired("this operation needs the card's keys: a key store is needed")
    assert exc.hint is None and "--" not in str(exc)
    assert "--keystore" in (hint_for(exc) or "")
    own = errors.NoCard("no card file at x").with_hint("create a new card at that path")
    assert hint_for(own) == "create a new card at that path"
    assert hint_for(errors.CommunicationError("reader failed")) is None


def test_every_hint_names_an_error_class() -> None:
    """The hints name their classes by path (nothing imported to show an error): each is real."""
    from sscard.cli.hints import HINTS

    for path in HINTS:
        module, _dot, name = path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        assert isinstance(cls, type) and issubclass(cls, errors.SscardError), path
        assert f"{cls.__module__}.{cls.__qualname__}" == path


def test_a_subclass_gets_its_nearest_hint() -> None:
    from sscard.card import CardNotGenuine, UnknownCard

    class NoSession(errors.NotLoggedIn):
        pass

    assert hint_for(NoSession("x")) == hint_for(errors.NotLoggedIn("x"))
    assert hint_for(CardNotGenuine("x")) is None and hint_for(UnknownCard("x")) is None


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SSCARD_READER", "SSCARD_KEYSTORE")}
    return subprocess.run([SSCARD, *args], capture_output=True, text=True, env=env, timeout=60)


def test_the_cli_prints_the_hint_on_its_own_line_and_in_json(tmp_path: Path) -> None:
    card = f"virtual:{tmp_path / 'missing.img'}"
    human = _run("-r", card, "info")
    assert human.returncode == ExitCode.NO_CARD
    lines = human.stderr.strip().splitlines()
    assert lines[0].startswith("Error: no card file at")
    assert lines[1] == "hint: create a new card at that path"
    machine = _run("--json", "-r", card, "info")
    error = json.loads(machine.stderr)
    assert error["error"] == "NoCard" and error["hint"] == "create a new card at that path"
    assert "create a new card" not in error["message"]
