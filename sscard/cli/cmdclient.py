"""The client half of the command server: hand this run of ``sscard`` to a warm process.

A command line pays some 60 ms before its command runs: the interpreter, Click
and sscard's modules (issue 19, bench/startup.py). ``sscard command-server``
(:mod:`sscard.cli.cmdserver`) keeps them loaded in one resident process, as
Mercurial's chg and Nailgun do; for each command it forks a copy, which takes
this process's arguments, environment, working directory, umask and standard
streams (passed as file descriptors, ``SCM_RIGHTS``), runs the command and
reports its exit code here. The command runs exactly as it would here; only the
start-up is saved.

:func:`forward` runs before Click is imported (:mod:`sscard.cli.entry`): this
module imports the sockets and signals modules only once it has a server to talk to.
It hands the run over only when all of these hold, and otherwise returns None
and the command runs here:

* ``$SSCARD_COMMAND_SERVER`` is not ``off``;
* there is no terminal: standard input is not one and the process has no
  controlling terminal. The server's copy cannot own a terminal (prompts,
  echo off for a PIN), so whatever could prompt runs here, as before;
* the command line is not one of a resident process (``command-server``, ``... serve``,
  ``kiosk``, ``sync run``): a service manager must see, and be able to stop, the
  process it started (a word of these anywhere keeps the run here, which is only
  slower);
* the socket (:func:`socket_path`) exists and belongs to this user, and a server
  of this user and of this same installation answers (a server whose code
  changed on disk has stopped within a second).

Wire format (``SOCK_SEQPACKET``, one message each way per step): the request is
NUL-separated fields, :data:`MAGIC` and an operation first; the replies start
with one letter (``P`` pid, ``X`` exit code, ``L`` declined: run it here, ``S``
status, ``K`` stopping). ``P`` is the point of no return: before it nothing has
run and the caller may run the command itself; after it the caller only waits.
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False  # typing itself is not imported: it costs more than this whole client
if TYPE_CHECKING:
    import _socket

ENV_COMMAND_SERVER = "SSCARD_COMMAND_SERVER"
"""The server's socket path, or ``off``: never hand a command over."""

RESIDENT_WORDS = frozenset({"command-server", "serve", "kiosk"})
"""Words of the command lines that stay in their own process (with ``sync run``)."""

MAGIC = b"sscard-command-server/1"
SOCKET_NAME = "command-server.sock"
MAX_MESSAGE = 1 << 18
"""The largest request (arguments and environment): a larger one runs here."""

FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
"""Signals this process passes on to the command's process while it runs."""


def socket_path() -> str:
    """Where this user's command server listens.

    ``$SSCARD_COMMAND_SERVER``, else ``$XDG_RUNTIME_DIR/sscard/command-server.sock``,
    else ``/tmp/sscard-UID/command-server.sock`` (a directory only this user may
    enter, as tmux does).
    """
    explicit = os.environ.get(ENV_COMMAND_SERVER)
    if explicit and explicit != "off":
        return explicit
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "sscard", SOCKET_NAME)
    return os.path.join("/tmp", f"sscard-{os.getuid()}", SOCKET_NAME)


def identity() -> tuple[bytes, bytes, bytes]:
    """This installation: the interpreter, the sscard package it runs and the module
    search path given to it (a server of another one declines)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    search = os.environ.get("PYTHONPATH", "")
    return os.fsencode(sys.executable), os.fsencode(package), os.fsencode(search)


def encode(fields: list[bytes]) -> bytes:
    """One request: the fields joined with NUL (no field may hold one)."""
    return b"\0".join((MAGIC, *fields))


def is_ours(path: str) -> bool:
    """Whether ``path`` is a socket owned by this user (never talk to another's)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid()


def connect(path: str) -> _socket.socket | None:
    """A connection to the server at ``path``; None when none answers there.

    Built on ``_socket``, the C module under :mod:`socket`: the public module builds
    its enums at import, which costs a handed-over run several milliseconds (the same
    ``socket`` objects, methods and constants; only the Python wrapper is skipped).
    """
    if not is_ours(path):
        return None
    import _socket

    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    try:
        conn.connect(path)
        # struct ucred {pid, uid, gid}: the environment goes to a process of this user only
        peer = conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    except OSError:
        conn.close()
        return None
    if int.from_bytes(peer[4:8], sys.byteorder) != os.getuid():
        conn.close()
        return None
    return conn


def _has_terminal() -> bool:
    if os.isatty(0):
        return True
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _resident(argv: list[str]) -> bool:
    return not RESIDENT_WORDS.isdisjoint(argv) or ("sync" in argv and "run" in argv)


def forward(argv: list[str]) -> int | None:
    """Run ``argv`` (without the program name) in the command server: its exit code,
    or None when it is not handed over (the caller runs it itself)."""
    if os.environ.get(ENV_COMMAND_SERVER) == "off" or _resident(argv):
        return None
    path = socket_path()
    if not is_ours(path) or _has_terminal():
        return None
    conn = connect(path)
    if conn is None:
        return None
    try:
        return _run(conn, argv)
    except OSError:
        return None
    finally:
        conn.close()


def _run(conn: _socket.socket, argv: list[str]) -> int | None:
    import _socket
    import signal

    umask = os.umask(0o077)
    os.umask(umask)
    fields = [
        b"run",
        *identity(),
        os.fsencode(os.getcwd()),
        b"%o" % umask,
        b"%d" % len(argv),
        *map(os.fsencode, argv),
        *(name + b"=" + value for name, value in os.environb.items()),
    ]
    request = encode(fields)
    if len(request) > MAX_MESSAGE or any(b"\0" in field for field in fields):
        return None
    # A signal that comes before the command's process is known waits: it goes to
    # that process, or is raised here again when the command runs here after all.
    pending: list[int] = []
    pid = 0

    def pass_on(signum: int, _frame: object) -> None:
        if not pid:
            pending.append(signum)
            return
        try:  # noqa: SIM105 (contextlib is not loaded here)
            os.kill(pid, signum)
        except OSError:
            pass  # it has just ended: its exit code is on the way

    signals = [getattr(signal, name) for name in FORWARDED_SIGNALS]
    previous = {sig: signal.signal(sig, pass_on) for sig in signals}
    try:
        # Standard input, output and error travel as SCM_RIGHTS: an array of C ints.
        streams = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
        conn.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, streams)])
        reply = conn.recv(512)
        if not reply.startswith(b"P"):
            return None  # declined (L...): nothing ran
        # From here on the command runs there: whatever happens, never run it here too.
        pid = int(reply[1:])
        for signum in pending:
            pass_on(signum, None)
        try:
            reply = conn.recv(512)
        except OSError:
            reply = b""
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not pid:
            for signum in pending:
                signal.raise_signal(signum)
    if reply.startswith(b"X"):
        return int(reply[1:])
    # The command's process ended without reporting (killed).
    from sscard.i18n import _

    sys.stderr.write(
        _("sscard: process {pid} of the command server ended without an exit status").format(
            pid=pid
        )
        + "\n"
    )
    return 1
