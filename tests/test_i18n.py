"""The interface language (docs/i18n.md): catalogs in order, every text marked, Chinese CLI.

The catalog checks run Babel's extraction over the code (scripts/i18n.py) and
compare: a message in the code but not in the catalogs, an untranslated or fuzzy
zh_CN entry, or a compiled catalog older than its .po fails here, as does a
string a person reads that is not marked for translation.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import click
import pytest
from click.testing import CliRunner

from sscard import errors, i18n
from sscard.cli import click_texts, language
from sscard.cli.main import cli
from sscard.national import NationalCode

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sscard_i18n_script", ROOT / "scripts/i18n.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def subcommands(group: click.Group) -> Iterator[tuple[str, click.Command]]:
    """The sub-commands of ``group`` as Click finds them (sscard's are loaded on demand)."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        yield name, command


@pytest.fixture
def zh() -> Iterator[None]:
    """The active language is Simplified Chinese for the test, English again after it."""
    i18n.set_language("zh_CN")
    try:
        yield
    finally:
        i18n.set_language("en")


# --- the catalogs ---------------------------------------------------------------


def test_catalogs_are_complete_and_fresh() -> None:
    """Extract from the code and compare: nothing missing, fuzzy, untranslated or stale."""
    problems = _script().problems()
    assert problems == [], "\n".join(problems[:40])


def test_every_help_text_has_a_translation(zh: None) -> None:
    """Walk the command tree as Click renders it: every help text is in the zh_CN catalog."""
    language.localize(cli)
    untranslated: list[str] = []

    def walk(command: click.Command, path: str) -> None:
        source = getattr(command, language._SOURCE)
        for name in ("help", "short_help"):
            text = source.get(name)
            if text and i18n._(inspect.cleandoc(text)) == inspect.cleandoc(text):
                untranslated.append(f"{path} ({name})")
        for param in command.params:
            template = getattr(param, "help_template", None)  # options.TemplateHelpOption
            if template is not None:
                texts = [template, *getattr(param, "help_fragments", {}).values()]
            else:
                texts = [getattr(param, language._SOURCE, {}).get("help")]
            if any(text and i18n._(text) == text for text in texts):
                untranslated.append(f"{path} {param.opts[0]}")
        if isinstance(command, click.Group):
            for name, sub in subcommands(command):
                walk(sub, f"{path} {name}")

    walk(cli, "sscard")
    i18n.set_language("en")
    language.localize(cli)
    assert untranslated == []


def test_national_texts_keep_their_original_wording(zh: None) -> None:
    """In Chinese each national error text is the wording terminals show, exactly."""
    for code in NationalCode:
        assert i18n._(code.english) == code.chinese, code


def test_click_texts_are_still_clicks() -> None:
    """Each Click text sscard translates is one the installed Click still uses."""
    from babel.messages.extract import extract_from_dir

    used: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        os.path.dirname(click.__file__),
        method_map=[("**.py", "python")],
        keywords={"_": None, "ngettext": (1, 2)},
    ):
        used.add(message[0] if isinstance(message, tuple) else message)
    ours = list(click_texts.TEXTS) + [singular for singular, _plural in click_texts.PLURALS]
    assert [text for text in ours if text not in used] == []


def _glossary() -> tuple[set[str], set[str]]:
    """The glossary's Chinese terms and its words never to use (docs/glossary.md)."""
    terms: set[str] = set()
    never: set[str] = set()
    for line in (ROOT / "docs/glossary.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("English (source)", "---"):
            continue
        terms.update(re.findall(r"[\u4e00-\u9fff]+", cells[1]))
        never.update(w.strip() for w in cells[2].split(",") if w.strip())
    return terms, never


def test_catalog_uses_the_glossary_terms() -> None:
    """No zh_CN message uses a word the glossary rules out (docs/glossary.md, "never")."""
    terms, never = _glossary()
    banned = {w for w in never if not any(w in term for term in terms)}
    assert "登陆" in banned and "秘钥" in banned
    script = _script()
    national = {code.chinese for code in NationalCode}
    offenders: list[str] = []
    for message in script._read_po(script.po_path("zh_CN"), "zh_CN"):
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for text in strings:
            if not text or text in national:
                continue
            offenders.extend(f"{word!r} in {text!r}" for word in banned if word in text)
    assert offenders == []


def test_an_installed_wheel_finds_its_catalogs(tmp_path: Path) -> None:
    """Build the wheel, unpack it as an installation would, and translate from it."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("sscard-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "sscard/locale/zh_CN/LC_MESSAGES/sscard.mo" in names
        archive.extractall(tmp_path / "site")
    probe = (
        "import sscard.i18n as i, pathlib; i.set_language('zh_CN');"
        "assert pathlib.Path(i.__file__).is_relative_to(pathlib.Path.cwd()), i.__file__;"
        "print(i._('Usage:'))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path / "site",
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.strip() == "用法："


# --- every text a person reads is marked -------------------------------------------

_OUTPUT_CALLS = {"echo", "secho", "prompt", "confirm", "fail", "with_hint"}
_LOG_CALLS = {"warning", "error", "exception", "critical"}
_UNMARKED_OK = {
    # Modules whose texts never reach a person (developer tools, the wire format of
    # the stand-in exchange platform) or are the marking machinery itself.
    "sscard/i18n.py",
    "sscard/cli/click_texts.py",
}


def _error_classes() -> set[str]:
    names: set[str] = set()
    pending: list[type] = [errors.SscardError, click.ClickException]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names


def _has_words(node: ast.expr) -> bool:
    """A literal (or f-string) holding letters: text for a person, not a separator."""
    return _is_prose(_literal_text(node))


def _literal_text(node: ast.expr) -> str:
    """The literal characters of a string, f-string or concatenation (placeholders as spaces)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_literal_text(part) if isinstance(part, ast.Constant) else "\0"
                       for part in node.values)  # fmt: skip
    if isinstance(node, ast.BinOp):
        return _literal_text(node.left) + "\0" + _literal_text(node.right)
    return ""


def _is_prose(text: str) -> bool:
    """Words a person reads: letters and a space (a lone code such as 'sequence' is not)."""
    return bool(re.search(r"[A-Za-z]{2}", text)) and " " in text


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _unmarked(path: Path, error_classes: set[str]) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        texts: list[ast.expr] = []
        if name in _OUTPUT_CALLS or name in error_classes:
            texts = list(node.args[:1])
        elif name == "emit":
            texts = list(node.args[1:2]) + [k.value for k in node.keywords if k.arg == "human"]
        elif name in _LOG_CALLS and isinstance(node.func, ast.Attribute):
            texts = list(node.args[:1])
        texts += [k.value for k in node.keywords if k.arg in ("message", "hint")]
        for text in texts:
            if _has_words(text):
                yield f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(text)[:70]}"


def test_every_text_for_people_is_marked() -> None:
    """Messages, output and hints go through _() (docs/i18n.md, "What is marked")."""
    classes = _error_classes()
    found: list[str] = []
    for path in sorted((ROOT / "sscard").rglob("*.py")):
        if path.relative_to(ROOT).as_posix() not in _UNMARKED_OK:
            found.extend(_unmarked(path, classes))
    assert found == [], "\n".join(found)


def test_the_unmarked_check_catches_what_it_should(tmp_path: Path) -> None:
    """The check itself: an f-string error, an echo and a hint are caught; marked ones pass."""
    sample = ROOT / "sscard" / "_i18n_probe_tmp.py"
    sample.write_text(
        "raise NoCard(f'no card in {reader}')\n"
        "click.echo('Issued 3 cards')\n"
        "err.with_hint('run sscard readers')\n"
        "log.warning('store is busy')\n"
        "raise NoCard(_('no card in {reader}').format(reader=r))\n"
        "click.echo(f'{a}  {b}')\n"
        "log.debug('APDU %s', x)\n",
        encoding="utf-8",
    )
    try:
        found = list(_unmarked(sample, _error_classes()))
    finally:
        sample.unlink()
    assert [line.split(": ", 1)[0].rsplit(":", 1)[1] for line in found] == ["1", "2", "3", "4"]


def test_no_translation_inside_an_f_string() -> None:
    """Babel cannot see ``_("...")`` written inside an f-string: it would stay English.

    (``_(TABLE[key])`` inside one is fine: the table's texts are marked with ``N_``.)
    """
    found: list[str] = []
    for path in sorted((ROOT / "sscard").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                found.extend(
                    f"{path.relative_to(ROOT)}:{call.lineno}"
                    for call in ast.walk(node)
                    if isinstance(call, ast.Call)
                    and _name(call.func) in ("_", "ngettext")
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                )
    assert found == []


def test_no_module_rebinds_the_translation_function() -> None:
    """A module using ``_`` for translation never also uses ``_`` as a throwaway name."""
    found: list[str] = []
    for path in sorted((ROOT / "sscard").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imports_it = any(
            isinstance(n, ast.ImportFrom) and any(a.name == "_" for a in n.names)
            for n in ast.walk(tree)
        )
        if not imports_it:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "_" and isinstance(node.ctx, ast.Store):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.arg) and node.arg == "_":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


# --- choosing the language ------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "explicit", "expected"),
    [
        ({}, None, "en"),
        ({"LANG": "zh_CN.UTF-8"}, None, "zh_CN"),
        ({"LANG": "zh_CN.UTF-8", "LC_ALL": "C"}, None, "en"),
        ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "zh_CN.GB18030"}, None, "zh_CN"),
        ({"LANG": "zh_CN.UTF-8", "SSCARD_LANG": "en"}, None, "en"),
        ({"SSCARD_LANG": "zh-CN"}, None, "zh_CN"),
        ({"SSCARD_LANG": "zh_CN", "LANG": "zh_CN.UTF-8"}, "en", "en"),
        ({"LANG": "fr_FR.UTF-8"}, None, "en"),
        ({}, "zh_Hans", "zh_CN"),
    ],
)
def test_language_resolution(environ: dict[str, str], explicit: str | None, expected: str) -> None:
    """--lang, then $SSCARD_LANG, then LC_ALL, LC_MESSAGES, LANG; unknown means English."""
    assert i18n.resolve(explicit, environ) == expected


def _run(args: list[str], **env: str) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("SSCARD_LANG", "LC_ALL", "LANG")}
    environ.update({"COLUMNS": "80", **env})  # help wraps to the width the checks expect
    done = subprocess.run(
        [sys.executable, "-m", "sscard", *args], capture_output=True, text=True, env=environ
    )
    return done.returncode, done.stdout, done.stderr


def test_cli_follows_the_locale_and_lang_overrides_it() -> None:
    """LANG=zh_CN.UTF-8 gives Chinese help; --lang en and $SSCARD_LANG=en give English."""
    code, out, _err = _run(["--help"], LANG="zh_CN.UTF-8")
    assert code == 0 and "用法：" in out and "显示本帮助并退出。" in out
    # Chinese help wraps by terminal columns (a Chinese character takes two).
    assert max(i18n.columns(line) for line in out.splitlines()) <= 80
    code, out, _err = _run(["--lang", "en", "--help"], LANG="zh_CN.UTF-8")
    assert code == 0 and "Show this message and exit." in out
    code, out, _err = _run(["--help"], LANG="zh_CN.UTF-8", SSCARD_LANG="en")
    assert "Usage:" in out
    code, _out, err = _run(["--lang", "fr", "readers"])
    assert code == 2 and "unsupported language 'fr'" in err and "Traceback" not in err


def test_errors_are_localized_and_codes_stay(tmp_path: Path) -> None:
    """A JSON error carries the Chinese message beside the same kind, exit and national codes."""
    missing = tmp_path / "nothing.img"
    args = ["--json", "-r", f"virtual:{missing}", "info"]
    code_en, _out, err_en = _run(args, SSCARD_LANG="en")
    code_zh, _out, err_zh = _run(["--lang", "zh_CN", *args])
    en, zh = json.loads(err_en), json.loads(err_zh)
    assert code_en == code_zh and en["exit_code"] == zh["exit_code"]
    assert en["error"] == zh["error"] and en["national_code"] == zh["national_code"]
    assert en["message"] != zh["message"] and re.search(r"[\u4e00-\u9fff]", zh["message"])
    assert set(en) == set(zh)
    _code, _out, err = _run(["--lang", "zh_CN", "-r", f"virtual:{missing}", "info"])
    assert err.startswith("错误：") and "Traceback" not in err


def test_usage_errors_are_in_chinese() -> None:
    """Click's own texts (a mistyped command) come out in Chinese too."""
    runner = CliRunner()
    result = runner.invoke(cli, ["--lang", "zh_CN", "readerz"])
    i18n.set_language("en")
    assert result.exit_code == 2
    assert "没有命令 'readerz'。" in result.output and "用法：" in result.output


def test_every_command_help_renders_in_chinese_without_login(tmp_path: Path) -> None:
    """`--help` of each of the commands works in Chinese, logged in or not (nothing to audit)."""
    runner = CliRunner(env={"SSCARD_OPERATOR_TOKEN": str(tmp_path / "no.token")})
    paths: list[list[str]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        paths.append(path)
        if isinstance(command, click.Group):
            for name, sub in subcommands(command):
                walk(sub, [*path, name])

    walk(cli, [])
    # English help first: Click builds each --help option once, and it must follow the language.
    assert "Show this message and exit." in runner.invoke(cli, ["--lang", "en", "--help"]).output
    try:
        for path in paths:
            result = runner.invoke(cli, ["--lang", "zh_CN", *path, "--help"])
            assert result.exit_code == 0, (path, result.output)
            joined = "".join(result.output.split())  # Chinese may wrap anywhere
            assert "用法：" in joined and "显示本帮助并退出。" in joined, path
    finally:
        i18n.set_language("en")
    assert len(paths) > 60


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_gnu_msgfmt_agrees_with_the_catalogs(lang: str, tmp_path: Path) -> None:
    """GNU gettext's msgfmt (not Babel) checks every entry's placeholders and compiles
    the .po to the same translations the shipped .mo holds."""
    import gettext

    script = _script()
    compiled = tmp_path / "gnu.mo"
    done = subprocess.run(
        ["msgfmt", "--check", "-o", str(compiled), str(script.po_path(lang))],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr, done.stderr
    if lang == "en":
        return  # the source language: nothing translated to compare
    with compiled.open("rb") as gnu_file, script.mo_path(lang).open("rb") as ours_file:
        gnu = gettext.GNUTranslations(gnu_file)._catalog  # type: ignore[attr-defined]
        ours = gettext.GNUTranslations(ours_file)._catalog  # type: ignore[attr-defined]
    gnu.pop("", None)
    ours.pop("", None)
    assert gnu == ours and len(ours) > 1000
