"""Start-up stays short without timing it (issue 19; bench/startup.py measures it).

``sscard --version`` and ``--help`` load neither a command's module nor the heavy
parts of the library; ``sscard --help`` lists every command from the table in
sscard.cli.main, whose lines must be the commands' own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from sscard import i18n
from sscard import log as sslog
from sscard.cli import language
from sscard.cli.main import COMMANDS, LOG_LEVELS, cli, load_command

SSCARD = str(Path(sys.executable).with_name("sscard"))

HEAVY = (
    "sscard.exchange.platform",  # the reference platform server
    "sscard.applets",  # the emulated card
    "sscard.agent",  # the local card service
    "jsonschema",
    "cryptography.x509",
    "starlette",
    "uvicorn",
    "asyncio",
)
"""What a plain command line must not import before it needs it."""

REPORT = (
    "import atexit, sys\n"
    "atexit.register(lambda: sys.__stderr__.write("
    "'MODULES ' + ' '.join(sorted(sys.modules)) + '\\n'))\n"
)
"""A sitecustomize that prints the modules a process ended with (on stderr)."""


def _loaded(
    args: list[str], tmp_path: Path, *, env: dict[str, str] | None = None, status: int = 0
) -> set[str]:
    """The modules an ``sscard`` process had imported when it exited (with exit ``status``)."""
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(REPORT, encoding="utf-8")
    env = {**(env or os.environ), "PYTHONPATH": str(hook), "SSCARD_LANG": "en"}
    env.pop("SSCARD_READER", None)
    done = subprocess.run(
        [SSCARD, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == status, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("MODULES ")]
    assert lines, done.stderr
    return set(lines[-1].split()[1:])


def _heavy(modules: set[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in heavy))


READ_PATH_EXTRA = (
    "construct",  # the record codecs are plain bytes code
    "sscard.issuance",
    "sscard.keys.algorithms",  # no key store given: no cipher
    "sscard.keys.psam_module",
    "sscard.layout.fcp",  # a read creates no file
    "sscard.exchange.events",
    "secrets",  # a session check draws no random numbers
)
"""What ``sscard read`` without ``--keystore`` must not import either."""


def test_importing_the_cli_loads_nothing_heavy() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys, sscard.cli.main; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules = set(done.stdout.split())
    assert "sscard.cli.main" in modules
    assert _heavy(modules) == []
    commands = {f"sscard.cli.{entry.target.partition(':')[0]}" for entry in COMMANDS.values()}
    assert sorted(commands & modules) == []


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["--lang", "zh_CN", "--help"]])
def test_version_and_help_load_nothing_heavy(args: list[str], tmp_path: Path) -> None:
    modules = _loaded(args, tmp_path)
    assert "sscard.cli.main" in modules
    assert _heavy(modules) == []
    assert not any(m.startswith("sscard.cli.") and m.endswith("_cmd") for m in modules)


def test_a_command_loads_only_its_own_module(tmp_path: Path) -> None:
    modules = _loaded(["profile", "--help"], tmp_path)
    assert "sscard.cli.profile_cmd" in modules
    assert "sscard.cli.agent_cmd" not in modules and "sscard.cli.platform_cmd" not in modules
    assert _heavy(modules) == []


def test_the_table_lists_exactly_the_commands() -> None:
    """Each entry names a command of that name; each module's commands are all listed."""
    for name in COMMANDS:
        command = load_command(name)
        assert isinstance(command, click.Command)
        assert command.name == name
    listed = {(e.target.partition(":")[0], load_command(n).name) for n, e in COMMANDS.items()}
    for module in {m for m, _name in listed}:
        namespace = vars(sys.modules[f"sscard.cli.{module}"])
        defined = {
            (module, value.name)
            for value in namespace.values()
            if isinstance(value, click.Command)
            and value.__module__ == f"sscard.cli.{module}"
            and not _is_subcommand(value, namespace)
        }
        assert defined <= listed, defined - listed
    assert list(COMMANDS) == sorted(COMMANDS)


def _is_subcommand(command: click.Command, namespace: dict[str, object]) -> bool:
    """``command`` belongs to a group of its module (it is not one of sscard's own)."""
    return any(
        isinstance(group, click.Group) and command in group.commands.values()
        for group in namespace.values()
    )


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_listed_short_help_is_the_commands_own(name: str) -> None:
    i18n.set_language("en")
    command = load_command(name)
    language.localize(command)
    line = click.Command(name, help=COMMANDS[name].short_help)
    for limit in (30, 45, 60, 80, 10_000):
        assert line.get_short_help_str(limit) == command.get_short_help_str(limit), limit


def test_help_lists_every_command_in_both_languages() -> None:
    from click.testing import CliRunner

    runner = CliRunner()
    try:
        for lang, marker in (("en", "Commands:"), ("zh_CN", "命令:")):
            result = runner.invoke(cli, ["--lang", lang, "--help"], terminal_width=200)
            assert result.exit_code == 0, result.output
            commands = result.output.partition(marker)[2].splitlines()
            names = [line.split()[0] for line in commands if line[2:3].strip()]
            assert names == list(COMMANDS), lang
            if lang == "zh_CN":
                assert i18n._(COMMANDS["read"].short_help) in result.output
    finally:
        i18n.set_language("en")


def test_the_log_levels_are_the_loggers() -> None:
    assert tuple(sslog.LEVELS) == LOG_LEVELS


def test_emulated_readers_load_the_emulator_only_when_opened(tmp_path: Path) -> None:
    program = (
        "import sys\n"
        "import sscard.cli.main\n"
        "from sscard.errors import NoCard\n"
        "from sscard.transport.resolve import open_transport\n"
        "print('before', 'sscard.applets' in sys.modules)\n"
        "try:\n"
        f"    open_transport({'virtual:' + str(tmp_path / 'none.img')!r})\n"
        "except NoCard:\n"
        "    print('after', 'sscard.applets' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["before", "False", "after", "True"], done.stderr


def test_a_read_through_pcscd_loads_only_the_read_path(vpcd_port: int, tmp_path: Path) -> None:
    """``sscard -r READER read`` of a served 2.0 card (read without keys, as bench/startup.py
    does): no emulator, no jsonschema, no x509, no issuance, no cipher (the card is served
    by another process, as a real card would be)."""
    from sscard.applets.factory import new_card_file
    from sscard.applets.pcsc_rig import served_card
    from tests.cardkit import issue
    from tests.operatorkit import env_for

    card_file = tmp_path / "card.img"
    issue(new_card_file(card_file, "national-2"), "national-2")
    with served_card(card_file, vpcd_port) as reader:
        modules = _loaded(["-r", reader, "read"], tmp_path, env=env_for("service"))
    assert {"sscard.cli.card_cmd", "sscard.transport.pcsc", "sscard.audit.log"} <= modules
    assert _heavy(modules, HEAVY + READ_PATH_EXTRA) == []


def test_showing_an_error_loads_neither_the_emulator_nor_issuance(tmp_path: Path) -> None:
    """Nobody logged in: ``read`` is refused with a hint, before any reader is opened."""
    env = {**os.environ, "SSCARD_DATA_DIR": str(tmp_path / "data")}
    env["SSCARD_OPERATOR_TOKEN"] = str(tmp_path / "no.token")
    env.pop("SSCARD_STORE", None)
    modules = _loaded(["-r", "No Such Reader", "read"], tmp_path, env=env, status=6)
    assert "sscard.cli.hints" in modules
    assert _heavy(modules, HEAVY + READ_PATH_EXTRA) == []


def test_no_lazy_name_is_also_a_submodule() -> None:
    """A package that loads its names on first use (sscard.lazy) must not have a submodule
    of the same name: importing that submodule would bind the package attribute to the
    module, and ``audit.checkpoint(...)`` would call a module."""
    import importlib
    import pkgutil

    import sscard

    lazy = []
    for info in pkgutil.walk_packages(sscard.__path__, "sscard."):
        if not info.ispkg or info.name.startswith("sscard.applets"):
            continue
        package = importlib.import_module(info.name)
        if "__getattr__" not in vars(package):
            continue
        lazy.append(info.name)
        submodules = {m.name for m in pkgutil.iter_modules(package.__path__)}
        assert not submodules & set(package.__all__), info.name
    assert {"sscard.audit", "sscard.db", "sscard.layout"} <= set(lazy)


def test_the_collector_is_off_while_loading_and_on_while_the_command_runs() -> None:
    """sscard.cli.entry: no collection while ~200 modules load; the command's own objects
    are collected as usual (a long-running ``agent serve`` must not grow without bound)."""
    program = (
        "import gc, sys\n"
        "from sscard.cli import main as cli_main\n"
        "assert gc.isenabled()  # importing the command line changes nothing\n"
        "@cli_main.cli.command('probe')\n"
        "def probe():\n"
        "    print('enabled', gc.isenabled(), 'frozen', gc.get_freeze_count() > 0)\n"
        "sys.argv = ['sscard', 'probe']\n"
        "from sscard.cli.entry import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["enabled", "True", "frozen", "True"]


def test_the_console_script_and_python_m_run_the_entry() -> None:
    for argv in ([SSCARD, "--version"], [sys.executable, "-m", "sscard", "--version"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0 and "sscard, version" in done.stdout, done.stderr
    script = Path(SSCARD).read_text(encoding="utf-8")
    assert "from sscard.cli.entry import main" in script
