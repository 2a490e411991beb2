"""The command server (sscard.cli.cmdserver, docs/cli.md "Command server"): a run handed
over prints, exits and records what the same run in its own process does.

Every comparison runs the same command line twice as a real ``sscard`` process, once
with ``SSCARD_COMMAND_SERVER=off`` (in its own process) and once handed to a server
started with ``sscard command-server start``, and checks the server's count of
commands to know which one it ran. The processes start without a terminal
(``start_new_session``, standard input not a terminal), as a service's would.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from sscard.cli import cmdclient, cmdserver
from tests.operatorkit import env_for

SSCARD = str(Path(sys.executable).with_name("sscard"))


class Server(NamedTuple):
    socket: str
    env: dict[str, str]


def sscard(args: list[str], env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    if "input" not in kw:
        kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(
        [SSCARD, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        start_new_session=True,  # no controlling terminal, as a service's process
        **kw,
    )


def served(server: Server) -> int:
    info = cmdserver.status(server.socket)
    assert info is not None, "the command server is not running"
    return int(info["commands_served"])


@pytest.fixture
def server() -> Iterator[Server]:
    # A short directory: a socket's path must fit in 108 bytes.
    directory = tempfile.mkdtemp(prefix="sscard-cs-")
    path = os.path.join(directory, "cmd.sock")
    # The emulated national-3 cards are read with the development keys (the pcscd test
    # reads a national-2 card, which needs none).
    # The session's issuer may read cards and send raw APDUs.
    env = {**os.environ, cmdclient.ENV_COMMAND_SERVER: path, "SSCARD_KEYSTORE": "dev"}
    done = sscard(["command-server", "start"], env)
    assert done.returncode == 0, done.stderr
    try:
        yield Server(path, env)
    finally:
        sscard(["command-server", "stop"], env)
        shutil.rmtree(directory, ignore_errors=True)


_LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", re.MULTILINE)


def both(args: list[str], server: Server, **kw: Any) -> tuple[Any, Any]:
    """The run in its own process and the run handed over: (returncode, stdout, stderr),
    log lines without their time."""
    alone = sscard(args, {**server.env, cmdclient.ENV_COMMAND_SERVER: "off"}, **kw)
    before = served(server)
    handed = sscard(args, server.env, **kw)
    assert served(server) == before + 1, "the server did not run it"
    return (
        (alone.returncode, alone.stdout, _LOG_TIME.sub("", alone.stderr)),
        (handed.returncode, handed.stdout, _LOG_TIME.sub("", handed.stderr)),
    )


def test_a_read_handed_over_prints_what_a_read_in_its_own_process_prints(
    card_file: Path, server: Server
) -> None:
    for args in (
        ["-r", f"virtual:{card_file}", "read"],
        ["--json", "-r", f"virtual:{card_file}", "read"],
    ):
        alone, handed = both(args, server)
        assert alone[0] == 0, alone[2]
        assert handed == alone
    assert json.loads(handed[1])["card_number"]


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["--version"],
        ["read", "--no-such-option"],
        ["-r", "virtual:/nonexistent/card.img", "read"],
        ["--json", "-r", "virtual:/nonexistent/card.img", "read"],
        ["operator", "login", "test-issuer"],  # a password prompt with no terminal: exit 7
    ],
)
def test_errors_and_exit_codes_are_the_same(args: list[str], server: Server) -> None:
    alone, handed = both(args, server)
    assert handed == alone


def test_runs_at_the_same_time_each_get_their_own_copy(card_file: Path, server: Server) -> None:
    """Several callers at once (a script reading at several stations, a card each): each
    run gets a copy of its own and its own output, none waits for another's to end."""
    cards = []
    for n in range(6):
        cards.append(card_file.with_name(f"card{n}.img"))
        shutil.copyfile(card_file, cards[-1])
    before = served(server)
    processes = [
        subprocess.Popen(
            [SSCARD, "--json", "-r", f"virtual:{card}", "read"],
            env=server.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        for card in cards
    ]
    outputs = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0] * 6, [e for _o, e in outputs]
    assert len({json.loads(out)["card_number"] for out, _err in outputs}) == 1
    assert served(server) == before + 6


def test_the_callers_language_directory_and_input(card_file: Path, server: Server) -> None:
    """The command gets the caller's environment (SSCARD_LANG), working directory (a
    relative card path) and standard input (APDUs piped to ``apdu --stdin``)."""
    env = {**server.env, "SSCARD_LANG": "zh_CN"}
    alone, handed = both(
        ["-r", "virtual:card.img", "read"], server._replace(env=env), cwd=card_file.parent
    )
    assert alone[0] == 0, alone[2]
    assert handed == alone
    assert "姓名" in handed[1] or "社会保障号码" in handed[1]
    apdus = "00A40000023F00\n# a comment\n00B0000004\n"
    alone, handed = both(["-r", f"virtual:{card_file}", "apdu", "--stdin"], server, input=apdus)
    assert handed == alone
    assert handed[1].count("\n") >= 2


def test_a_terminal_keeps_the_command_in_its_own_process(card_file: Path, server: Server) -> None:
    """Standard input on a terminal: what might prompt runs where the terminal is."""
    leader, follower = pty.openpty()
    try:
        before = served(server)
        done = sscard(["-r", f"virtual:{card_file}", "read"], server.env, stdin=follower)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Card ")
        assert served(server) == before
    finally:
        os.close(leader)
        os.close(follower)


def test_the_caller_loads_neither_click_nor_the_command_line(server: Server) -> None:
    """What the handed-over run saves: the caller's process imports the client and the
    socket module, not Click, not sscard.cli.main (-X importtime lists its imports)."""
    env = {**server.env, "PYTHONPROFILEIMPORTTIME": "1"}
    before = served(server)
    done = sscard(["--version"], env)
    assert done.returncode == 0 and served(server) == before + 1
    imported = {
        line.split("|")[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "sscard.cli.cmdclient" in imported
    assert not {"click", "sscard.cli.main", "typing", "socket"} & imported, sorted(imported)


def test_another_module_search_path_runs_in_its_own_process(server: Server) -> None:
    """A caller with another PYTHONPATH might load other code: the server declines."""
    before = served(server)
    done = sscard(["--version"], {**server.env, "PYTHONPATH": "/nonexistent"})
    assert done.returncode == 0
    assert served(server) == before


@pytest.mark.parametrize(
    "args",
    [
        ["agent", "serve", "--help"],
        ["virtual", "serve", "--help"],
        ["kiosk", "--help"],
        ["sync", "run", "--help"],
        ["command-server", "status"],
    ],
)
def test_resident_commands_keep_their_own_process(args: list[str], server: Server) -> None:
    """A service manager must see (and stop) the process it started."""
    before = served(server)
    done = sscard(args, server.env)
    assert done.returncode == 0, done.stderr
    assert served(server) == before


def test_off_keeps_the_command_in_its_own_process(server: Server) -> None:
    before = served(server)
    done = sscard(["--version"], {**server.env, cmdclient.ENV_COMMAND_SERVER: "off"})
    assert done.returncode == 0
    assert served(server) == before


@pytest.mark.skipif(os.getuid() != 0, reason="giving a socket to another user needs root")
def test_a_socket_of_another_user_is_never_used(server: Server) -> None:
    """The environment a run sends holds its secrets: only a socket of this user gets it."""
    before = served(server)
    os.chown(server.socket, 65534, 65534)
    try:
        assert not cmdclient.is_ours(server.socket)
        done = sscard(["--version"], server.env)
        assert done.returncode == 0
    finally:
        os.chown(server.socket, 0, 0)
    assert served(server) == before


def _open_to_all() -> str | None:
    """A directory every user may enter (for a socket another user may reach), or None."""
    for base in ("/dev/shm", "/var/tmp", "/tmp"):
        if os.path.isdir(base) and os.stat(base).st_mode & 0o001:
            return tempfile.mkdtemp(prefix="sscard-cs-", dir=base)
    return None


@pytest.mark.skipif(os.getuid() != 0, reason="connecting as another user needs root")
def test_the_server_refuses_a_connection_of_another_user() -> None:
    """SO_PEERCRED: a process of another user gets no answer at all, even when the
    socket's mode would let it connect."""
    directory = _open_to_all()
    if directory is None:
        pytest.skip("no directory here that every user may enter")
    path = os.path.join(directory, "cmd.sock")
    env = {**os.environ, cmdclient.ENV_COMMAND_SERVER: path}
    assert sscard(["command-server", "start"], env).returncode == 0
    try:
        os.chmod(directory, 0o755)
        os.chmod(path, 0o666)
        program = (
            "import os, socket, sys\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
            "s.connect(sys.argv[1])\n"
            "try:\n"  # the server may close before the request is even sent
            "    s.send(b'sscard-command-server/1\\0status')\n"
            "    answer = s.recv(100)\n"
            "    print(repr(answer) if answer else 'refused')\n"
            "except ConnectionError:\n"
            "    print('refused')\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", program, path],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.stdout.strip() == "refused", done.stdout + done.stderr
    finally:
        sscard(["command-server", "stop"], env)
        shutil.rmtree(directory, ignore_errors=True)


def test_an_interrupt_reaches_the_command(card_file: Path, server: Server) -> None:
    """Ctrl-C (SIGINT) to the caller interrupts the command in the server's copy, which
    ends as one in its own process does (Click's "Aborted!", exit 1)."""
    results = []
    for where in ("off", server.socket):
        env = {**server.env, cmdclient.ENV_COMMAND_SERVER: where}
        process = subprocess.Popen(
            [SSCARD, "-r", f"virtual:{card_file}", "apdu", "--stdin"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        time.sleep(1.5)  # reading its standard input, which stays open
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
        results.append((process.returncode, err.strip().splitlines()[-1:]))
    assert results[0] == (1, ["Aborted!"])
    assert results[1] == results[0]


def test_a_changed_module_stops_the_server_and_the_command_runs_alone(server: Server) -> None:
    """An upgrade or an edit of a loaded file: the server stops itself (within a second
    or so) and the next run starts in its own process."""
    changed = Path(cmdserver.__file__)
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))
    try:
        deadline = time.monotonic() + 10
        while os.path.exists(server.socket) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(server.socket)
        done = sscard(["--version"], server.env)
        assert done.returncode == 0
    finally:
        os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_status_start_and_stop(server: Server) -> None:
    done = sscard(["--json", "command-server", "status"], server.env)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["running"] is True and info["socket"] == server.socket
    assert info["python"] == sys.executable
    again = sscard(["command-server", "start"], server.env)
    assert again.returncode == 0 and str(info["pid"]) in again.stdout
    again_json = json.loads(sscard(["--json", "command-server", "start"], server.env).stdout)
    assert again_json["already_running"] is True and again_json["pid"] == info["pid"]
    assert os.stat(server.socket).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(server.socket)).st_mode & 0o777 == 0o700
    stopped = sscard(["--json", "command-server", "stop"], server.env)
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["stopped"] is True
    assert not os.path.exists(server.socket)
    none = sscard(["command-server", "status"], server.env)
    assert none.returncode == 1 and "No command server" in none.stdout
    assert sscard(["--version"], server.env).returncode == 0


def test_a_second_server_on_the_same_socket_is_refused(server: Server) -> None:
    done = sscard(["command-server", "run"], server.env)
    assert done.returncode == 7
    assert "already listens" in done.stderr


def test_a_file_in_the_sockets_place_is_left_alone(tmp_path: Path) -> None:
    """A path that names a file, not a socket: the server refuses it and removes nothing;
    sscard runs as usual."""
    directory = tempfile.mkdtemp(prefix="sscard-cs-")
    try:
        os.chmod(directory, 0o700)
        path = Path(directory) / "notes.txt"
        path.write_text("keep me")
        env = {**os.environ, cmdclient.ENV_COMMAND_SERVER: str(path)}
        done = sscard(["command-server", "run"], env)
        assert done.returncode == 7 and "not a socket" in done.stderr
        assert path.read_text() == "keep me"
        assert sscard(["--version"], env).returncode == 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_the_sockets_directory_is_never_changed() -> None:
    """An existing directory is used as it is when no other user could replace the socket
    in it, refused otherwise; its mode is never changed (a server once put in /tmp must
    not close /tmp to everybody)."""
    directory = tempfile.mkdtemp(prefix="sscard-cs-")
    try:
        env = {**os.environ, cmdclient.ENV_COMMAND_SERVER: os.path.join(directory, "s.sock")}
        os.chmod(directory, 0o777)  # anyone may replace a file in it
        done = sscard(["command-server", "start"], env)
        assert done.returncode == 7 and "another user could replace it" in done.stderr
        assert os.stat(directory).st_mode & 0o7777 == 0o777
        os.chmod(directory, 0o1777)  # sticky, as /tmp: a socket stays its owner's
        assert sscard(["command-server", "start"], env).returncode == 0
        assert os.stat(directory).st_mode & 0o7777 == 0o1777
        assert sscard(["command-server", "stop"], env).returncode == 0
        os.chmod(directory, 0o755)
        assert sscard(["command-server", "start"], env).returncode == 0
        assert os.stat(directory).st_mode & 0o7777 == 0o755
        assert sscard(["command-server", "stop"], env).returncode == 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_a_foreign_request_gets_a_refusal_not_a_run(server: Server) -> None:
    """A client of another version (or anything else) on the socket: refused, nothing run."""
    before = served(server)
    for message in (b"hello", b"sscard-command-server/1\0run\0/usr/bin/python\0/elsewhere"):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.connect(server.socket)
        with conn:
            conn.send(message)
            assert conn.recv(100).startswith(b"L")
    assert served(server) == before


def test_a_read_through_pcscd_handed_over(vpcd_port: int, tmp_path: Path, server: Server) -> None:
    """The issue-19 path: a national card served through pcscd and vpcd, read with raw
    pyscard underneath; the handed-over read prints the same and adds its audit record."""
    from sscard.applets.factory import new_card_file
    from sscard.applets.pcsc_rig import served_card
    from tests.cardkit import issue

    card = tmp_path / "card.img"
    issue(new_card_file(card, "national-2"), "national-2")
    audit = ["--json", "audit", "show", "--action", "card.read"]
    auditor = {**env_for("auditor"), cmdclient.ENV_COMMAND_SERVER: "off"}
    env = {**env_for("service"), cmdclient.ENV_COMMAND_SERVER: server.socket}
    with served_card(card, vpcd_port) as reader:
        records = json.loads(sscard(audit, auditor).stdout)
        alone, handed = both(["-r", reader, "read"], server._replace(env=env))
    assert alone[0] == 0, alone[2]
    assert handed == alone
    assert "11010519491231002X" in handed[1]
    after = json.loads(sscard(audit, auditor).stdout)
    assert len(after) == len(records) + 2
