"""Writing files entirely or not at all (card images, key stores, backups).

:func:`atomic_write` writes a temporary file beside the target (mode 0600),
fsyncs it, renames it over the target and fsyncs the directory: after a crash
the target is the old content or the new, never a mix.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (mode 0600); ``durable`` adds the fsyncs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_secret(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (a token: one line) atomically, mode 0600, in a
    directory created 0700: session and API tokens."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, (text + "\n").encode("ascii"), durable=False)


def is_private(st: os.stat_result) -> bool:
    """Whether a file (its ``stat``) is this user's and readable by no one else: the rule
    for token files (:func:`write_secret` writes them so)."""
    return not stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid()
