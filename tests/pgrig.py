"""A throwaway PostgreSQL server for the tests and the benchmarks (issue 20).

``PgServer.start()`` runs Debian's own server binaries (``initdb``, ``postgres``
from ``/usr/lib/postgresql/<version>/bin``) on a data directory in a fresh
temporary directory, as the ``postgres`` system user when the caller is root
(PostgreSQL refuses to run as root), else as the caller. The server listens on
127.0.0.1 at a free port and on a unix socket in that temporary directory.

Authentication is real:

- the login role ``sscard`` (the one the tests and sscard use) has a random
  password and authenticates with ``scram-sha-256``, over TCP and the socket;
  its password is only in a pgpass file (mode 0600) that callers name in
  ``PGPASSFILE`` (``env()``), never in a URL, argv or a log;
- the rig's own administration (create/drop databases) connects as the
  superuser ``postgres`` over the unix socket with ``peer`` authentication,
  mapped from the caller's system user: the kernel vouches for it, no password.

A test server (``durable=False``) keeps its data in RAM with fsync off: it starts
in ~0.6 s, and ``create_database()`` gives a fresh database owned by ``sscard``
(copied from ``template0``) in ~15 ms. ``stop()`` stops the server (fast
shutdown) and deletes the temporary directory; it is registered with ``atexit``
too, and the server gets SIGINT (fast shutdown) when the thread that started it
dies (start it from the main thread), so a killed test run leaves no server.

``$SSCARD_TEST_POSTGRES``: the URL of an existing server's administrative role
(no password in it; libpq finds it in ``PGPASSWORD``, ``PGPASSFILE`` or
``~/.pgpass``). ``start()`` then uses that server instead: databases are
created and dropped there, and the tests connect as that URL's role.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

ROLE = "sscard"
"""The login role the tests use on a server of our own (scram, password in ``pgpass``)."""
SUPERUSER = "postgres"
ENV_EXISTING = "SSCARD_TEST_POSTGRES"
ENV_BINDIR = "SSCARD_PG_BINDIR"
DEBIAN_ROOT = Path("/usr/lib/postgresql")

# Tests do not need crash safety; the benchmark (durable=True) keeps the defaults. The
# data then lives in RAM (a fresh database: ~15 ms there, ~250 ms on this disk), so
# the write-ahead log is kept small.
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_wal_size": "128MB",
    "min_wal_size": "32MB",
}
RAM_DIR = Path("/dev/shm")
RAM_DIR_MIN_FREE = 1 << 30  # Docker's default /dev/shm (64 MiB) is too small: use the disk
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; ".s.PGSQL.65535" and a NUL come after the dir


class RigError(RuntimeError):
    """The throwaway server could not be started or used (the message says why)."""


def find_bindir() -> Path:
    """The directory of ``initdb`` and ``postgres``: ``$SSCARD_PG_BINDIR``, else Debian's
    newest ``/usr/lib/postgresql/<version>/bin``, else wherever ``initdb`` is on PATH."""
    given = os.environ.get(ENV_BINDIR)
    candidates = [Path(given)] if given else []
    if not given and DEBIAN_ROOT.is_dir():
        versions = [p for p in DEBIAN_ROOT.iterdir() if p.name.isdigit()]
        for version in sorted(versions, key=lambda p: int(p.name), reverse=True):
            candidates.append(version / "bin")
    on_path = shutil.which("initdb")
    if not given and on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise RigError(
        "no PostgreSQL server binaries (initdb, postgres) found"
        + (f" in {ENV_BINDIR}={given}" if given else f" under {DEBIAN_ROOT} or on PATH")
        + ": install Debian's postgresql package (make deps), or set "
        + f"{ENV_EXISTING} to the URL of an existing server"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def default_base_dir(durable: bool) -> Path | None:
    """Where a server's directory goes unless given: RAM for a test server when there is
    room, else the system temp dir (None)."""
    if durable or not RAM_DIR.is_dir() or not os.access(RAM_DIR, os.W_OK):
        return None
    stat = os.statvfs(RAM_DIR)
    return RAM_DIR if stat.f_bavail * stat.f_frsize >= RAM_DIR_MIN_FREE else None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty server log)"


def _with_dbname(url: str, dbname: str) -> str:
    """``url`` with its database replaced (query string, user, host kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))


class PgServer:
    """A PostgreSQL server for tests: one we started (``external`` False) or a given one."""

    tls: bool = False
    tls_files: dict[str, str]

    def __init__(self) -> None:
        self.external = False
        self.durable = False
        self.host = "127.0.0.1"
        self.port = 0
        self.root: Path | None = None  # the temporary directory (data, socket, log, pgpass)
        self.pgpass: Path | None = None
        self.log_path: Path | None = None
        self._admin_url = ""  # external: the given URL (no password)
        self._admin: psycopg.Connection[Any] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()
        self._created: set[str] = set()
        self._stopped = False

    # -- starting ----------------------------------------------------------

    @classmethod
    def start(
        cls,
        base_dir: Path | str | None = None,
        *,
        durable: bool = False,
        private: bool = False,
        settings: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        tls: bool = False,
    ) -> PgServer:
        """A ready server: ``$SSCARD_TEST_POSTGRES`` if set (unless ``private``), else a
        throwaway one under ``base_dir`` (when root, the ``postgres`` user must be able to
        traverse it). ``durable=False`` (tests) turns off fsync, synchronous_commit and
        full_page_writes and puts the data in RAM (``/dev/shm`` with 1 GiB free) unless
        ``base_dir`` is given; ``durable=True`` (benchmarks) keeps PostgreSQL's defaults
        on the disk (the system temp dir). ``settings`` adds server settings.
        ``tls``: TCP connections must use TLS and present a client certificate of the
        rig's CA (``hostssl … clientcert=verify-full``, scram besides); see :meth:`tls_url`."""
        existing = os.environ.get(ENV_EXISTING)
        if existing and not private and not tls:
            return cls.existing(existing)
        server = cls()
        server.durable = durable
        server.tls = tls
        atexit.register(server.stop)
        try:
            base = Path(base_dir) if base_dir else default_base_dir(durable)
            server._start(base, settings or {}, timeout)
        except BaseException:
            server.stop()
            raise
        return server

    @classmethod
    def existing(cls, admin_url: str) -> PgServer:
        """Use a running server through its administrative role's URL (no password in
        it: libpq takes it from PGPASSWORD, PGPASSFILE or ~/.pgpass)."""
        try:
            params = conninfo_to_dict(admin_url)
        except psycopg.ProgrammingError:
            raise RigError(f"{ENV_EXISTING} is not a valid PostgreSQL URL") from None
        if "password" in params:
            raise RigError(
                f"{ENV_EXISTING} contains a password: remove it and give it to libpq "
                "through PGPASSWORD, PGPASSFILE or ~/.pgpass"
            )
        server = cls()
        server.external = True
        server._admin_url = admin_url
        server.host = str(params.get("host", ""))
        server.port = int(params.get("port") or 5432)
        passfile = os.environ.get("PGPASSFILE")
        server.pgpass = Path(passfile) if passfile else None
        atexit.register(server.stop)
        try:
            server._admin = server._connect_admin()
        except psycopg.Error as e:
            server.stop()
            raise RigError(f"cannot connect to the server of {ENV_EXISTING}: {e}") from None
        return server

    def _start(self, base_dir: Path | None, settings: Mapping[str, str], timeout: float) -> None:
        bindir = find_bindir()
        as_root = os.geteuid() == 0
        try:
            runner = pwd.getpwnam(SUPERUSER) if as_root else pwd.getpwuid(os.geteuid())
        except KeyError:
            raise RigError(
                f"no {SUPERUSER} system user to run the server as (Debian's postgresql "
                "package creates it)"
            ) from None
        caller = pwd.getpwuid(os.geteuid()).pw_name
        self.root = Path(tempfile.mkdtemp(prefix="sscard-pg-", dir=base_dir))
        if len(str(self.root)) > SOCKET_PATH_MAX:
            raise RigError(f"{self.root}: too long a path for the server's unix socket")
        if as_root:
            self._check_reachable(self.root)
            os.chown(self.root, runner.pw_uid, runner.pw_gid)
        data = self.root / "data"
        self.log_path = self.root / "server.log"
        env = {"PATH": os.defpath, "LC_ALL": "C"} | {
            k: v for k, v in os.environ.items() if k == "TZ"
        }
        initdb = subprocess.run(
            [
                *self._runas(as_root, runner, pdeathsig=False),
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if initdb.returncode != 0:
            raise RigError(f"initdb failed (status {initdb.returncode}):\n{initdb.stderr.strip()}")
        self._write_config(data, caller, runner)
        tls_settings = self._make_tls(runner) if self.tls else {}
        server_settings = {
            **tls_settings,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.root),
            "unix_socket_permissions": "0700",
            "password_encryption": "scram-sha-256",
            **({} if self.durable else FAST_SETTINGS),
            **settings,
        }
        for attempt in range(3):  # another process may take the free port first
            self.port = _free_port()
            argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port)]
            for name, value in server_settings.items():
                argv += ["-c", f"{name}={value}"]
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    [*self._runas(as_root, runner, pdeathsig=True), *argv],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            if self._wait_ready(timeout):
                break
            if attempt < 2 and "could not bind" in _tail(self.log_path, 5):
                continue
            raise RigError(
                f"the PostgreSQL server did not start (port {self.port}); end of "
                f"{self.log_path}:\n{_tail(self.log_path)}"
            )
        self._create_role()

    @staticmethod
    def _runas(as_root: bool, runner: pwd.struct_passwd, *, pdeathsig: bool) -> list[str]:
        """The command prefix (setpriv) that runs as the server's user when root and,
        for the server, sends it SIGINT (fast shutdown) when the thread that started
        it dies (the signal is set after the uid change, so it holds)."""
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        if not Path(setpriv).is_file():
            if as_root:
                raise RigError("setpriv (util-linux) is needed to run the server as postgres")
            return []
        ids = [f"--reuid={runner.pw_uid}", f"--regid={runner.pw_gid}", "--init-groups"]
        signal_opts = ["--pdeathsig", "INT"] if pdeathsig else []
        return [setpriv, *(ids if as_root else []), *signal_opts, "--"]

    @staticmethod
    def _check_reachable(root: Path) -> None:
        """Root's temp dir must be traversable by the postgres user (pytest's own
        ``/tmp/pytest-of-root`` is not)."""
        for parent in root.parents:
            if not parent.stat().st_mode & 0o001:
                raise RigError(
                    f"the postgres user cannot traverse {parent}: start the server "
                    "under a directory everybody can traverse (the default does)"
                )

    def _write_config(self, data: Path, caller: str, runner: pwd.struct_passwd) -> None:
        """Authentication: peer (mapped) for the superuser on the socket, scram for all else."""
        files = {
            "pg_hba.conf": (
                "# sscard test rig (tests/pgrig.py)\n"
                f"local all {SUPERUSER} peer map=rig\n"
                "local all all scram-sha-256\n"
                + (
                    "hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-full\n"
                    "hostnossl all all 127.0.0.1/32 reject\n"
                    if self.tls
                    else "host all all 127.0.0.1/32 scram-sha-256\n"
                )
            ),
            "pg_ident.conf": f"rig {caller} {SUPERUSER}\n",
        }
        for name, text in files.items():
            path = data / name
            path.write_text(text)
            os.chown(path, runner.pw_uid, runner.pw_gid)
            path.chmod(0o600)

    def _wait_ready(self, timeout: float) -> bool:
        """True once the superuser can connect; False if the server exited or timed out."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                self._admin = self._connect_admin()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        self._terminate()
        return False

    def _create_role(self) -> None:
        """The login role with a random password: the server gets only its SCRAM
        verifier (computed here), the clients the password in the pgpass file."""
        assert self._admin is not None and self.root is not None
        password = secrets.token_urlsafe(24)
        verifier = self._admin.pgconn.encrypt_password(
            password.encode(), ROLE.encode(), b"scram-sha-256"
        ).decode()
        self._admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(verifier)
            )
        )
        self.pgpass = self.root / "pgpass"
        lines = "".join(
            f"{_pgpass_field(host)}:{self.port}:*:{ROLE}:{password}\n"
            for host in ("127.0.0.1", "localhost", str(self.root))
        )
        fd = os.open(self.pgpass, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(lines)

    def _connect_admin(self) -> psycopg.Connection[Any]:
        if self.external:
            return psycopg.connect(self._admin_url, autocommit=True, connect_timeout=10)
        return psycopg.connect(
            host=str(self.root),
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        )

    # -- using -------------------------------------------------------------

    def _make_tls(self, runner: pwd.struct_passwd) -> dict[str, str]:
        """A CA, the server's certificate (for 127.0.0.1) and a station's client
        certificate (CN = the test role, as ``clientcert=verify-full`` wants)."""
        from sscard.exchange.ca import init_ca

        assert self.root is not None
        folder = self.root / "tls"
        issued = init_ca(folder, [ROLE], hosts=("127.0.0.1", "localhost"))
        os.chown(folder, runner.pw_uid, runner.pw_gid)
        for name in ("server.pem", "server-key.pem", "ca.pem"):
            os.chown(folder / name, runner.pw_uid, runner.pw_gid)
        self.tls_files = {name: str(i.cert) for name, i in issued.items()}
        self.tls_files["client-key"] = str(issued[ROLE].key)
        return {
            "ssl": "on",
            "ssl_cert_file": str(issued["server"].cert),
            "ssl_key_file": str(issued["server"].key),
            "ssl_ca_file": str(issued["ca"].cert),
            "ssl_min_protocol_version": "TLSv1.2",
        }

    def tls_url(self, dbname: str, *, verify: bool = True) -> str:
        """A URL that connects over TLS: the server verified against the rig's CA
        (``sslmode=verify-full``), the station's client certificate presented."""
        files = self.tls_files
        mode = "verify-full" if verify else "require"
        query = (
            f"sslmode={mode}&sslrootcert={files['ca']}"
            f"&sslcert={files[ROLE]}&sslkey={files['client-key']}"
        )
        return f"{self.url(dbname)}?{query}"

    def url(self, dbname: str = "postgres") -> str:
        """A URL for ``dbname`` as the test role; never with a password in it."""
        if self.external:
            return _with_dbname(self._admin_url, dbname)
        return f"postgresql://{ROLE}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def env(self) -> dict[str, str]:
        """What a client process needs in its environment to log in (``PGPASSFILE``)."""
        return {"PGPASSFILE": str(self.pgpass)} if self.pgpass is not None else {}

    def admin(self) -> psycopg.Connection[Any]:
        """A new superuser connection (autocommit), for what a test must do as
        administrator (e.g. ``pg_terminate_backend``). The caller closes it."""
        return self._connect_admin()

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """A fresh database (a new unique name unless ``name``), owned by the test role,
        copied from ``template`` (default ``template0``, UTF8, C locale); its URL.
        A template database must have no open connection while it is copied."""
        admin = self._live_admin()
        name = name or f"sscard_t_{secrets.token_hex(6)}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if not self.external:
            query += sql.SQL(" OWNER {}").format(sql.Identifier(ROLE))
        if template is None:
            query += sql.SQL(" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
        else:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        admin.execute(query)
        self._created.add(name)
        return self.url(name)

    def drop_database(self, name_or_url: str) -> None:
        """Drop a database (by name or URL), closing its connections first."""
        name = name_or_url
        if "://" in name_or_url:
            name = str(conninfo_to_dict(name_or_url).get("dbname", ""))
        self._drop(self._live_admin(), name)

    def _drop(self, admin: psycopg.Connection[Any], name: str) -> None:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        self._created.discard(name)

    def _live_admin(self) -> psycopg.Connection[Any]:
        if self._stopped:
            raise RigError("the PostgreSQL test server has been stopped")
        if self._admin is None or self._admin.closed or self._admin.broken:
            self._admin = self._connect_admin()
        return self._admin

    # -- stopping ----------------------------------------------------------

    def stop(self) -> None:
        """Stop what we started and delete its directory; on a given server, drop the
        databases we created. Idempotent; a forked child inheriting the atexit hook
        does nothing."""
        if self._stopped or os.getpid() != self._owner_pid:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self.external and self._admin is not None and not self._admin.broken:
            for name in list(self._created):
                with contextlib.suppress(psycopg.Error):
                    self._drop(self._admin, name)
        if self._admin is not None:
            with contextlib.suppress(psycopg.Error):
                self._admin.close()
        self._terminate()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def _terminate(self) -> None:
        """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, 20.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            proc.send_signal(sig)
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs (None on a given server)."""
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> PgServer:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        kind = "given" if self.external else ("durable" if self.durable else "fast")
        return f"PgServer({kind}, {self.host}:{self.port})"


def iter_processes(needle: str) -> Iterator[int]:
    """Process ids whose command line contains ``needle`` (for leak checks)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if needle.encode() in cmdline:
            yield int(entry.name)
