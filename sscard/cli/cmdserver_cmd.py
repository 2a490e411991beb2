"""``sscard command-server``: start, stop and inspect the resident command process.

Prints only; the server is :mod:`sscard.cli.cmdserver`, the client half
:mod:`sscard.cli.cmdclient` (docs/cli.md, "Command server").
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click

from sscard import errors
from sscard.cli import cmdclient, cmdserver
from sscard.cli.context import CliState, pass_state
from sscard.i18n import _, ljust

START_TIMEOUT = 30.0
"""Seconds ``start`` waits for the server to answer."""

LOG_NAME = "command-server.log"


@click.group("command-server")
def command_server() -> None:
    """A resident process that runs sscard commands without start-up time.

    Scripts and services that run 'sscard' once per card (a kiosk, a service
    point's Java or C# program) pay some 60 ms each time before the command
    runs: the interpreter, Click and sscard's modules. Started once, the command
    server keeps them loaded; each 'sscard' run with no terminal hands itself
    over and runs in a fork of it, with its own arguments, environment, working
    directory and standard streams, and gets its exit code back. Commands run
    at a terminal (which may prompt) still run in their own process.

    The socket is $SSCARD_COMMAND_SERVER, else
    $XDG_RUNTIME_DIR/sscard/command-server.sock, else
    /tmp/sscard-UID/command-server.sock; only its user may connect. Set
    SSCARD_COMMAND_SERVER=off to never hand a command over. The server stops
    itself when sscard or a library it loaded changes on disk.

    \b
    Examples:
      sscard command-server start      in the background; returns when it answers
      sscard command-server status
      sscard command-server run        in the foreground (a systemd service)
      sscard command-server stop
    """


def _path() -> str:
    return cmdclient.socket_path()


@command_server.command("run")
def run() -> None:
    """Run the command server in the foreground until stopped (SIGTERM, Ctrl-C, 'stop').

    For a service manager, e.g. a systemd unit with
    ExecStart=/path/to/sscard command-server run.
    """
    path = _path()
    server = cmdserver.CommandServer(path)

    def ready() -> None:
        click.echo(
            _("Command server ready on {path} (process {pid}).").format(path=path, pid=os.getpid()),
            err=True,
        )

    server.serve(ready)
    click.echo(_("Command server stopped after {n} commands.").format(n=server.served), err=True)


@command_server.command("start")
@pass_state
def start(state: CliState) -> None:
    """Start the command server in the background and wait until it answers.

    Its messages go to command-server.log next to the socket.
    """
    path = _path()
    running = cmdserver.status(path)
    if running is not None:
        state.emit(
            {"already_running": True, **running},
            _("A command server already runs on {path} (process {pid}).").format(
                path=path, pid=running["pid"]
            ),
        )
        return
    directory = Path(path).parent
    cmdserver.socket_dir(directory)
    env = {**os.environ, cmdclient.ENV_COMMAND_SERVER: path}
    with open(directory / LOG_NAME, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "sscard", "command-server", "run"],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env=env,
            cwd="/",  # holds no directory of the caller's
            start_new_session=True,  # no terminal, not stopped by the caller's Ctrl-C
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        info = cmdserver.status(path)
        if info is not None:
            state.emit(
                {"already_running": False, **info},
                _("Command server started on {path} (process {pid}).").format(
                    path=path, pid=info["pid"]
                ),
            )
            return
        if process.poll() is not None:
            break
        time.sleep(0.05)
    else:
        process.terminate()
    raise errors.OperationFailed(
        _("the command server did not start; see {log}").format(log=directory / LOG_NAME)
    )


@command_server.command("stop")
@pass_state
def stop(state: CliState) -> None:
    """Stop the command server; commands it is running finish first."""
    path = _path()
    if not cmdserver.request_stop(path):
        state.emit(
            {"stopped": False, "socket": path},
            _("No command server runs on {path}.").format(path=path),
        )
        return
    deadline = time.monotonic() + 10
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    state.emit(
        {"stopped": True, "socket": path},
        _("Command server on {path} stopped.").format(path=path),
    )


@command_server.command("status")
@pass_state
@click.pass_context
def status(ctx: click.Context, state: CliState) -> None:
    """Whether the command server runs: its process, socket, start time and commands served.

    Exits 1 when none runs.
    """
    path = _path()
    info = cmdserver.status(path)
    if info is None:
        state.emit(
            {"running": False, "socket": path},
            _("No command server runs on {path}.").format(path=path),
        )
        ctx.exit(1)
    rows = [
        (_("process"), info["pid"]),
        (_("started"), info["started"]),
        (_("commands served"), info["commands_served"]),
        (_("modules loaded"), info["modules_loaded"]),
        (_("Python"), info["python"]),
        (_("sscard package"), info["package"]),
    ]
    lines = [_("Command server on {path}").format(path=path)]
    lines += [f"  {ljust(label, 18)} {value}" for label, value in rows]
    state.emit({"running": True, **info}, "\n".join(lines))
