"""The command server: one resident process with the command line loaded, a fork per command.

``sscard command-server run`` imports Click, every command and the modules a
card session uses, parses the shipped card profiles, and waits on a Unix socket
(:func:`sscard.cli.cmdclient.socket_path`, mode 0600, in a directory where no other
user can replace it: :func:`socket_dir`).
For each ``sscard`` run that :func:`sscard.cli.cmdclient.forward` hands over it
forks; the copy takes the caller's standard streams, arguments, environment,
working directory and umask, runs the command as ``sscard`` would, and sends
back the exit code. Every command starts from the same loaded state: nothing
one command does reaches the next. The design is Mercurial's chg and Nailgun's.

It serves only its own user (``SO_PEERCRED``) and only the installation it
was started from (same interpreter, same sscard package, same ``PYTHONPATH``).
When a file of the package or of a library it loaded changes on disk (an
upgrade, an edit), it stops within about a second; the runs after that start in
their own process. Start it again.

A command's copy ends with :func:`os._exit` once the command returned, its
output was flushed and logging shut down: unwinding the server's stack would run
the server's own clean-up (it would remove the socket). So ``atexit`` handlers a
command registered do not run; sscard registers none, and its threads are
daemon threads joined by the commands themselves.
"""

from __future__ import annotations

import gc
import io
import logging
import os
import signal
import socket
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sscard import errors
from sscard.cli import cmdclient
from sscard.i18n import _

log = logging.getLogger(__name__)

WARM_MODULES = (
    "sscard.card",
    "sscard.transport.pcsc",
    "sscard.audit.log",
    "sscard.auth",
    "sscard.exchange.inbox",
    "difflib",  # Click's "did you mean" for an option it looks up
    "encodings.gbk",  # GBK text on national cards
    "encodings.ascii",
)
"""Modules a card command loads at run time, loaded before the first fork."""

CHECK_EVERY = 1.0
"""Seconds between looks for changed module files (off the path of a command)."""

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid (Linux)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""Signals that stop the server (its spare and commands set their own)."""


class _Stop(Exception):
    """A signal asked the server to stop."""


def _preload() -> int:
    """Import the command line, every command's module and :data:`WARM_MODULES`; parse the
    shipped profiles. The number of modules loaded.

    The commands are imported, not added to the group: each run adds (and translates
    the help of) only the command it runs, as in its own process.
    """
    import importlib

    from sscard.cli.main import COMMANDS, load_command

    for name in COMMANDS:
        load_command(name)
    for module in WARM_MODULES:
        importlib.import_module(module)
    from sscard.layout import loader

    for name in loader.shipped_profiles():
        with suppress(errors.SscardError):
            loader.load_profile(name)
    return len(sys.modules)


def _watched_files() -> dict[str, int]:
    """What the loaded state was built from, with modification times (ns): every file of
    the sscard package (modules, catalogs, profiles) and the file of every loaded module
    outside the standard library (Click, pyscard ...)."""
    package = Path(__file__).resolve().parent.parent
    paths = {str(path) for path in package.rglob("*") if "__pycache__" not in path.parts}
    stdlib = os.path.dirname(os.__file__) + os.sep
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and (not path.startswith(stdlib) or "-packages" + os.sep in path):
            paths.add(path)
    out: dict[str, int] = {}
    for path in paths:
        with suppress(OSError):
            out[path] = os.stat(path).st_mtime_ns
    return out


def _changed(files: dict[str, int]) -> str | None:
    """The first of ``files`` changed since it was loaded, else None."""
    for path, mtime in files.items():
        try:
            if os.stat(path).st_mtime_ns != mtime:
                return path
        except OSError:
            return path
    return None


def socket_dir(path: Path) -> None:
    """Make ``path`` a place to listen in: created (0700) when missing; an existing one is
    used as it is (never changed) if no other user can replace a socket in it: it
    belongs to this user or root, and only its owner may write in it, or it is sticky
    (``/tmp``)."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True)
    info = path.lstat()
    mine = info.st_uid in (os.getuid(), 0)
    closed = not info.st_mode & 0o022 or info.st_mode & stat.S_ISVTX
    if not stat.S_ISDIR(info.st_mode) or not mine or not closed:
        raise errors.InvalidInput(
            _(
                "{path} is no place for the command server's socket: another user could replace it"
            ).format(path=path),
            [("socket", str(path))],
        )


def _ask(path: str, operation: bytes, size: int) -> bytes:
    """The server's reply to ``operation`` (at most ``size`` bytes); empty when none answers."""
    conn = cmdclient.connect(path)
    if conn is None:
        return b""
    try:
        conn.send(cmdclient.encode([operation]))
        return conn.recv(size)
    except OSError:
        return b""
    finally:
        conn.close()


def status(path: str) -> dict[str, Any] | None:
    """What the server at ``path`` says of itself; None when none answers."""
    reply = _ask(path, b"status", 4096)
    if not reply.startswith(b"S"):
        return None
    pid, started, served, modules, executable, package = reply[1:].split(b"\0")
    return {
        "pid": int(pid),
        "socket": path,
        "started": started.decode(),
        "commands_served": int(served),
        "modules_loaded": int(modules),
        "python": os.fsdecode(executable),
        "package": os.fsdecode(package),
    }


def request_stop(path: str) -> bool:
    """Ask the server at ``path`` to stop; whether one answered."""
    return _ask(path, b"stop", 16).startswith(b"K")


class CommandServer:
    """The resident process: :meth:`serve` until stopped (a signal or a ``stop`` request).

    One forked copy always waits (the spare) so that a command does not wait for a
    fork: the server hands the caller's connection and streams to it, then forks the
    next spare while the command runs.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.served = 0
        self.modules = 0
        self.started = ""
        self._files: dict[str, int] = {}
        self._identity = cmdclient.identity()
        self._stopping = False
        self._spare: tuple[int, socket.socket] | None = None
        self._listener: socket.socket | None = None
        self._checked = 0.0

    def serve(self, ready: Callable[[], None] | None = None) -> None:
        """Load, listen, and serve; ``ready()`` is called once the socket accepts."""
        gc.disable()
        try:
            self.modules = _preload()
        finally:
            gc.freeze()  # the loaded state: shared by every fork, never walked again
            gc.enable()
        self._files = _watched_files()
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with self._listening() as listener:
            self._listener = listener
            for sig in _STOP_SIGNALS:
                signal.signal(sig, self._on_signal)
            try:
                self._spare = self._fork_spare()
                if ready is not None:
                    ready()
                while not self._stopping:
                    try:
                        conn, _addr = listener.accept()
                    except TimeoutError:
                        self._idle()
                        continue
                    with conn:
                        self._handle(conn)
                    if self._spare is None and not self._stopping:
                        self._spare = self._fork_spare()
                    if time.monotonic() - self._checked > CHECK_EVERY:
                        self._idle()  # a busy server looks for changes too
            except _Stop:
                pass
            finally:
                for sig in _STOP_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                if self._spare is not None:
                    self._spare[1].close()  # the spare reads the end and exits
                    self._spare = None
                self._reap()

    def _on_signal(self, _signum: int, _frame: object) -> None:
        raise _Stop

    def _idle(self) -> None:
        """Collect ended commands; stop when a loaded module's file changed."""
        self._checked = time.monotonic()
        self._reap()
        changed = _changed(self._files)
        if changed is not None:
            log.warning(_("%s changed on disk: stopping (start the command server again)"), changed)
            self._stopping = True

    @contextmanager
    def _listening(self) -> Iterator[socket.socket]:
        socket_dir(Path(self.path).parent)
        if status(self.path) is not None:
            raise errors.InvalidInput(
                _("a command server already listens on {path}").format(path=self.path),
                [("socket", self.path)],
            )
        with suppress(FileNotFoundError):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise errors.InvalidInput(
                    _("{path} exists and is not a socket").format(path=self.path),
                    [("socket", self.path)],
                )
            os.unlink(self.path)  # left by a server that did not stop cleanly
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = os.umask(0o177)
        try:
            listener.bind(self.path)
        except OSError as exc:
            listener.close()
            raise errors.InvalidInput(
                _("cannot listen on {path}: {reason}").format(
                    path=self.path, reason=exc.strerror or exc
                ),
                [("socket", self.path)],
            ) from None
        finally:
            os.umask(old)
        inode = os.stat(self.path).st_ino
        listener.listen(64)
        listener.settimeout(CHECK_EVERY)  # wake to collect ended commands, look for changes
        try:
            yield listener
        finally:
            listener.close()
            with suppress(OSError):
                if os.stat(self.path).st_ino == inode:
                    os.unlink(self.path)

    @staticmethod
    def _reap() -> None:
        with suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass

    def _fork_spare(self) -> tuple[int, socket.socket]:
        """Fork the copy that runs the next command; the server keeps its end of a pair."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the spare: never returns into the server loop
            code = 1
            try:
                if self._listener is not None:
                    self._listener.close()
                ours.close()
                code = _spare(theirs)
            finally:
                os._exit(code)
        theirs.close()
        return pid, ours

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        pid, uid, _gid = _PEERCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
        if uid != os.getuid():
            log.warning(_("refused a connection from process %d of user %d"), pid, uid)
            return
        try:
            message, fds, flags, _addr = socket.recv_fds(conn, cmdclient.MAX_MESSAGE + 1, 3)
        except OSError:
            return
        try:
            fields = message.split(b"\0")
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or fields[0] != cmdclient.MAGIC:
                self._send(conn, b"Lprotocol")
            elif fields[1:2] == [b"status"]:
                self._send(conn, self._status())
            elif fields[1:2] == [b"stop"]:
                self._send(conn, b"K")
                self._stopping = True
            elif fields[1:2] != [b"run"] or len(fds) != 3:
                self._send(conn, b"Lprotocol")
            elif tuple(fields[2:5]) != self._identity:
                self._send(conn, b"Linstallation")
            else:
                self._hand_over(conn, b"\0".join(fields[5:]), fds)
        finally:
            for fd in fds:
                os.close(fd)

    def _hand_over(self, conn: socket.socket, request: bytes, fds: list[int]) -> None:
        """Give the command to the spare (a new one if it is gone)."""
        for _attempt in range(2):
            if self._spare is None:
                self._spare = self._fork_spare()
            pid, channel = self._spare
            self._spare = None
            try:
                socket.send_fds(channel, [request], [conn.fileno(), *fds])
            except OSError:
                log.warning(_("the spare process %d is gone; forking another"), pid)
                continue
            finally:
                channel.close()
            self.served += 1
            return
        self._send(conn, b"Lspare")

    def _status(self) -> bytes:
        executable, package, _search = self._identity
        return b"S" + b"\0".join(
            (
                b"%d" % os.getpid(),
                self.started.encode(),
                b"%d" % self.served,
                b"%d" % self.modules,
                executable,
                package,
            )
        )

    @staticmethod
    def _send(conn: socket.socket, reply: bytes) -> None:
        with suppress(OSError):
            conn.send(reply)


def _spare(channel: socket.socket) -> int:
    """In a forked copy: wait for a command from the server, run it, return its exit code."""
    # A session of its own: no Ctrl-C at the server's terminal reaches the command, and
    # no prompt can open that terminal (the caller had none: sscard.cli.cmdclient).
    os.setsid()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        message, fds, _flags, _addr = socket.recv_fds(channel, cmdclient.MAX_MESSAGE + 1, 4)
    except OSError:
        return 1
    channel.close()
    if len(fds) != 4:
        return 0  # the server stopped
    conn = socket.socket(fileno=fds[0])
    return _command(conn, message.split(b"\0"), fds[1:])


def _command(conn: socket.socket, fields: list[bytes], fds: list[int]) -> int:
    """In the spare: become the caller's ``sscard`` run and return its exit code."""
    cwd, umask, count = fields[0], int(fields[1], 8), int(fields[2])
    argv = [os.fsdecode(arg) for arg in fields[3 : 3 + count]]
    environ = {}
    for item in fields[3 + count :]:
        name, sep, value = item.partition(b"=")
        if sep:
            environ[name] = value
    try:
        os.chdir(cwd)
    except OSError:
        conn.send(b"Lcwd")
        return 1
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.environb.clear()
    os.environb.update(environ)
    own = logging.getLogger("sscard")  # the server's --log-level is not this command's
    for handler in list(own.handlers):
        own.removeHandler(handler)
    own.setLevel(logging.NOTSET)
    os.umask(umask)
    encoding = os.environ.get("PYTHONIOENCODING", "utf-8").partition(":")[0] or "utf-8"
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding=encoding)
    sys.stdout = _writer(1, encoding, "strict")
    sys.stderr = _writer(2, encoding, "backslashreplace")
    sys.argv = ["sscard", *argv]
    conn.send(b"P%d" % os.getpid())
    code = _main()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    if "logging" in sys.modules:
        logging.shutdown()
    with suppress(OSError):
        conn.send(b"X%d" % code)
    return code


def _writer(fd: int, encoding: str, errors_: str) -> io.TextIOWrapper:
    tty = os.isatty(fd)
    return io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(fd, "w", closefd=False)),
        encoding=encoding,
        errors=errors_,
        line_buffering=tty,
    )


def _main() -> int:
    """Run the command line on ``sys.argv`` as the console script would; its exit code."""
    from sscard.cli.main import main

    try:
        main()
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # a defect: shown as the console script would show it
        import traceback

        traceback.print_exc()
        return 1
    return 0
