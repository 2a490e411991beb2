"""Claims: a named lock one connection holds while it works on something shared.

A station claims the holder it personalizes a card for (``holder:SSN``), the
card row (``card:SERIAL``) and the outbox push (``outbox.push``), so that no
other station does the same work at the same time. A claim is released by
:meth:`Claim.release`, and by the end of its holder: on PostgreSQL it is a
session advisory lock (gone when the connection or the station's process
goes); on SQLite an ``flock`` on a file under ``STORE.locks/`` (gone when the
process goes). Claims never wait on each other for long: :func:`claim` tries
until ``wait`` seconds have passed and answers None.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sscard.db.connection import Connection, _signed
from sscard.db.target import SQLITE

_POLL_S = 0.05
_local = threading.Lock()
_held_here: set[tuple[str, str]] = set()
"""SQLite claims held by this process, as (store, name): flock is per open file, but
two connections of one process must exclude each other too."""


@dataclass
class Claim:
    """A held claim; release it (or use ``with``)."""

    conn: Connection
    name: str
    _fd: int | None = field(default=None, repr=False)
    _file: Path | None = field(default=None, repr=False)
    _released: bool = False

    def release(self) -> None:
        """Give the claim up (idempotent)."""
        if self._released:
            return
        self._released = True
        self.conn.claims.pop(self.name, None)
        if self.conn.engine == SQLITE:
            with _local:
                _held_here.discard((str(self.conn.target.path), self.name))
            if self._fd is not None and self._file is not None:
                self._file.unlink(missing_ok=True)  # while still locked: see _try_sqlite
                os.close(self._fd)
        elif not self.conn.lost:  # a lost session took its advisory locks with it
            self.conn.execute("SELECT pg_advisory_unlock(?)", (lock_key(self.name),))

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def lock_key(name: str) -> int:
    """The 64-bit advisory lock key of claim ``name`` (first 8 bytes of its SHA-256)."""
    return _signed(int.from_bytes(hashlib.sha256(b"sscard:" + name.encode()).digest()[:8], "big"))


def claim(conn: Connection, name: str, *, wait: float = 0.0) -> Claim | None:
    """Claim ``name`` for ``conn``; None when someone else holds it for ``wait`` seconds.

    Re-claiming a name this connection already holds returns the held claim.
    """
    held = conn.claims.get(name)
    if held is not None:
        return held  # type: ignore[no-any-return]
    deadline = time.monotonic() + wait
    while True:
        got = _try_sqlite(conn, name) if conn.engine == SQLITE else _try_postgres(conn, name)
        if got is not None:
            conn.claims[name] = got
            return got
        if time.monotonic() >= deadline:
            return None
        time.sleep(_POLL_S)


def _try_postgres(conn: Connection, name: str) -> Claim | None:
    (ok,) = conn.execute("SELECT pg_try_advisory_lock(?)", (lock_key(name),)).fetchone()
    return Claim(conn, name) if ok else None


def _lock_dir(conn: Connection) -> Path:
    path = conn.target.path
    return path.with_name(path.name + ".locks")


def _try_sqlite(conn: Connection, name: str) -> Claim | None:
    store = str(conn.target.path)
    with _local:
        if (store, name) in _held_here:
            return None
        folder = _lock_dir(conn)
        folder.mkdir(mode=0o700, exist_ok=True)
        file = folder / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".lock")
        while True:
            fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return None
                raise
            if _same_file(fd, file):
                break
            os.close(fd)  # its holder released and removed it meanwhile: take the new one
        _held_here.add((store, name))
    return Claim(conn, name, fd, file)


def _same_file(fd: int, file: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(file).st_ino
    except FileNotFoundError:
        return False
