"""The PC/SC rig for tests, benchmarks and the demo: a real pcscd with the vpcd
driver, and Python cards plugged into its readers.

A test session starts ``pcscd --foreground`` when none runs (never socket
activation: it exits after 60 s idle) and copes with one that already runs.
vpcd serves two readers, on TCP 35963 and 35964; each test run takes one with
an exclusive file lock, so concurrent test runs on one machine wait for each
other instead of fighting over a reader.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sscard.applets.vpcd import VpcdBridge
from sscard.errors import TransportError
from sscard.transport import pcsc
from sscard.transport.base import CardLike

VPCD_READERS = {35963: "Virtual PCD 00 00", 35964: "Virtual PCD 00 01"}
LOCK_DIR = Path(os.environ.get("SSCARD_TEST_LOCK_DIR", "/tmp"))


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _pcscd_answers() -> bool:
    try:
        pcsc.list_readers()
        return True
    except TransportError:
        return False


def _pcscd_running() -> bool:
    return subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True).returncode == 0


@contextmanager
def running_pcscd(timeout: float = 10.0) -> Iterator[None]:
    """Make sure a pcscd with vpcd runs for the duration.

    Every user holds a shared lock on ``sscard-pcscd.lock``; the pcscd we
    started is stopped at the end only if nobody else holds it then, so
    concurrent test runs on one machine do not pull pcscd from under each other.
    """
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    users = open(LOCK_DIR / "sscard-pcscd.lock", "w")  # noqa: SIM115
    fcntl.flock(users, fcntl.LOCK_SH)
    proc: subprocess.Popen[bytes] | None = None
    if not _pcscd_running():
        exe = shutil.which("pcscd") or "/usr/sbin/pcscd"
        proc = subprocess.Popen(
            [exe, "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + timeout
        while not (_pcscd_answers() and _port_open(35963)):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"pcscd exited with status {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("pcscd with the vpcd driver did not come up in time")
            time.sleep(0.1)
        yield
    finally:
        if proc is not None:
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)  # are we the last user?
            except BlockingIOError:
                pass  # someone else still uses it: leave it running
            else:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        users.close()


@contextmanager
def reader_lock(ports: tuple[int, ...] = tuple(VPCD_READERS)) -> Iterator[int]:
    """Exclusive use of one vpcd reader port among concurrent test runs."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    files = []
    try:
        for port in ports:
            f = open(LOCK_DIR / f"sscard-vpcd-{port}.lock", "w")  # noqa: SIM115
            files.append(f)
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            yield port
            return
        fcntl.flock(files[0], fcntl.LOCK_EX)  # all busy: wait for the first
        yield ports[0]
    finally:
        for f in files:
            f.close()


@contextmanager
def card_in_reader(card: CardLike, port: int, timeout: float = 10.0) -> Iterator[VpcdBridge]:
    """Plug ``card`` into the vpcd reader on ``port``; wait until PC/SC sees it; unplug after.

    "Sees it" means the reader reports this card's ATR: a state left over from
    the previous card in that reader does not count.
    """
    reader = VPCD_READERS[port]
    bridge = VpcdBridge(card, port=port).start()
    try:
        if not bridge.wait_connected(timeout):
            raise RuntimeError(f"the card could not connect to vpcd on port {port}")
        deadline = time.monotonic() + timeout
        while pcsc.wait_for_card(reader, timeout) != card.atr:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{reader} does not show the card's ATR")
            time.sleep(0.05)
        yield bridge
    finally:
        bridge.stop()
        with suppress(TransportError):
            pcsc.wait_for_card(reader, timeout, present=False)


@contextmanager
def served_card(path: Path, port: int, timeout: float = 15.0) -> Iterator[str]:
    """``sscard virtual serve PATH`` in its own process, as a real card would be.

    Yields the reader name once PC/SC shows the card; SIGTERM and wait for
    the removal afterwards.
    """
    reader = VPCD_READERS[port]
    pcsc.wait_for_card(reader, timeout, present=False)  # the reader is free
    sscard = str(Path(sys.executable).with_name("sscard"))
    server = subprocess.Popen(
        [sscard, "virtual", "serve", str(path), "--port", str(port)],
        stderr=subprocess.DEVNULL,
    )
    try:
        pcsc.wait_for_card(reader, timeout)
        yield reader
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout)
        with suppress(TransportError):
            pcsc.wait_for_card(reader, timeout, present=False)
