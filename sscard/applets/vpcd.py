"""Bridge a Python card to vsmartcard's vpcd reader driver, so it appears in PC/SC.

vpcd listens on TCP (35963 for "Virtual PCD 00 00", 35964 for "… 00 01"); the
card connects to it. Every message both ways is a 2-byte big-endian length and
the bytes. A 1-byte message from vpcd is control: 00 power off, 01 power on,
02 reset (no reply), 04 get ATR (reply: the ATR). Longer messages are command
APDUs; the reply is response data ‖ SW1 SW2. Closing the socket is removing the
card. (Protocol: vsmartcard's vpcd documentation; docs/architecture.md test rig.)

Sockets set TCP_NODELAY and TCP_QUICKACK (again after every recv): without
them a delayed ACK costs ~48 ms per APDU on these machines.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time

from sscard.i18n import _
from sscard.transport.base import CardLike

log = logging.getLogger("sscard.vpcd")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963

_POWER_OFF, _POWER_ON, _RESET, _GET_ATR = 0, 1, 2, 4
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class VpcdBridge:
    """Connects ``card`` to vpcd at ``host:port`` and serves it until stopped.

    Run :meth:`serve` in a thread (or :meth:`start`); it reconnects when vpcd
    (pcscd) goes away and comes back. :meth:`remove` pulls the card out and
    :meth:`insert` puts it back.
    """

    def __init__(
        self,
        card: CardLike,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        retry_interval: float = 0.2,
    ) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.retry_interval = retry_interval
        self._stop = threading.Event()
        self._inserted = threading.Event()
        self._inserted.set()
        self._connected = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.apdus = 0

    # --- control ----------------------------------------------------------------

    def start(self) -> VpcdBridge:
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self.serve, name=f"vpcd-{self.port}", daemon=True)
        self._thread.start()
        return self

    def wait_connected(self, timeout: float = 5.0) -> bool:
        """Wait until vpcd accepted the connection."""
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: the card is removed and powered off; the thread ends."""
        self._stop.set()
        self._inserted.set()  # wake a removed card's wait
        self._close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def remove(self) -> None:
        """Pull the card out of the reader (the socket closes)."""
        self._inserted.clear()
        self._close()

    def insert(self) -> None:
        """Put the card back (the bridge reconnects)."""
        self._inserted.set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # --- serving ----------------------------------------------------------------

    def serve(self) -> None:
        """Serve until :meth:`stop`; reconnects after errors or removal."""
        while not self._stop.is_set():
            self._inserted.wait()
            if self._stop.is_set():
                break
            try:
                sock = socket.create_connection((self.host, self.port), timeout=2.0)
            except OSError:
                time.sleep(self.retry_interval)
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if _QUICKACK is not None:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            with self._lock:
                self._sock = sock
            self._connected.set()
            log.debug("card connected to vpcd at %s:%d", self.host, self.port)
            try:
                self._serve_connection(sock)
            except OSError as exc:
                log.debug("vpcd connection ended: %s", exc)
            finally:
                self._connected.clear()
                self._close()
                self.card.power_off()
            if not self._stop.is_set():
                time.sleep(self.retry_interval)

    def _serve_connection(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            header = _recv_exact(sock, 2)
            if header is None:
                return
            (length,) = struct.unpack(">H", header)
            message = _recv_exact(sock, length) if length else b""
            if message is None:
                return
            reply = self._handle(message)
            if reply is not None:
                sock.sendall(struct.pack(">H", len(reply)) + reply)

    def _handle(self, message: bytes) -> bytes | None:
        if len(message) == 1:
            code = message[0]
            if code == _POWER_OFF:
                self.card.power_off()
            elif code in (_POWER_ON, _RESET):
                self.card.power_off()
                try:
                    self.card.power_on()
                except Exception as exc:  # e.g. the image is in use elsewhere: the card is mute
                    log.warning(_("card did not power on: %s"), exc)
            elif code == _GET_ATR:
                return bytes(self.card.atr)
            return None
        self.apdus += 1
        try:
            return bytes(self.card.process(message))
        except Exception:  # a card never crashes the reader: answer "no precise diagnosis"
            log.exception(_("card raised while processing an APDU"))
            return b"\x6f\x00"

    def _close(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        if _QUICKACK is not None:  # Linux clears it after use: set it again after every recv
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        buf += chunk
    return bytes(buf)
