"""A small scripted test card: fixed answers from a script, plus echo and T=0 behaviour.

Not the social security card (that is the emulated card of ``sscard.applets``):
this one exists to test the transport and protocol layers through the real
PC/SC stack. Card file format (JSON)::

    {"sscard_card": "scripted", "atr": "3B8C8001...",
     "t0": false,
     "rules": [{"command": "00A4040007A0000000031010", "response": "6F00 9000"}]}

Built in, besides the rules:

* ``80 EE 00 00 Lc data [Le]`` echoes ``data`` (ECHO);
* ``80 CB P1 P2 [Le]`` answers ``P1P2`` bytes 00 01 02 … (GENERATE);
* with ``"t0": true`` a response with data is handed out T=0 style: a case 2
  command with the wrong Le gets ``6Cxx``, anything else ``61xx`` and the data
  through GET RESPONSE (``00 C0``), at most Le bytes at a time.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sscard.i18n import _

SW_OK = b"\x90\x00"

# 17-byte T=1 ATR in the shape of the card spec, historical bytes "SSC" 00 + serial.
DEFAULT_ATR = bytes.fromhex("3B8C8001535343000000000000000001")


def _with_tck(atr_without_tck: bytes) -> bytes:
    tck = 0
    for b in atr_without_tck[1:]:
        tck ^= b
    return atr_without_tck + bytes((tck,))


@dataclass
class ScriptedCard:
    """A card answering from ``rules`` (exact command bytes → response bytes)."""

    atr: bytes = field(default_factory=lambda: _with_tck(DEFAULT_ATR))
    rules: dict[bytes, bytes] = field(default_factory=dict)
    t0: bool = False
    received: list[bytes] = field(default_factory=list)
    powered: bool = False
    _pending: bytes = b""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- CardLike -------------------------------------------------------------

    def power_on(self) -> bytes:
        with self._lock:
            self.powered = True
            self._pending = b""
        return self.atr

    def power_off(self) -> None:
        with self._lock:
            self.powered = False
            self._pending = b""

    def process(self, apdu: bytes) -> bytes:
        with self._lock:
            self.received.append(bytes(apdu))
            return self._process(bytes(apdu))

    # --- behaviour ------------------------------------------------------------

    def _process(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return b"\x67\x00"
        cla, ins, p1, p2 = apdu[:4]
        if ins == 0xC0 and cla & 0xFC == 0:
            return self._get_response(apdu)
        self._pending = b""
        if apdu in self.rules:
            return self.rules[apdu]
        body = apdu[4:]
        le: int | None = None
        data = b""
        if len(body) == 1:
            le = body[0] or 256
        elif len(body) > 1:
            lc = body[0]
            if lc == 0 or len(body) not in (1 + lc, 2 + lc):
                return b"\x67\x00"  # short APDUs only
            data = body[1 : 1 + lc]
            if len(body) == 2 + lc:
                le = body[-1] or 256
        if cla & 0xFB == 0x80 and ins == 0xEE:  # 80 or 84 (with SM)
            return self._answer(data, le)
        if cla == 0x80 and ins == 0xCB:
            n = (p1 << 8) | p2
            return self._answer(bytes(i & 0xFF for i in range(n)), le)
        if cla == 0x00 and ins == 0xA4:
            return b"\x6a\x82"
        return b"\x6d\x00"

    def _answer(self, data: bytes, le: int | None) -> bytes:
        if not self.t0 or not data:
            return data + SW_OK
        if le is not None and le != len(data) and len(data) <= 256 and not self._pending:
            return bytes((0x6C, len(data) & 0xFF))
        if le is not None and le == len(data):
            return data + SW_OK
        self._pending = data
        return bytes((0x61, min(len(data), 256) & 0xFF))

    def _get_response(self, apdu: bytes) -> bytes:
        if not self._pending:
            return b"\x69\x85"
        le = (apdu[4] or 256) if len(apdu) == 5 else 256
        chunk, self._pending = self._pending[:le], self._pending[le:]
        if self._pending:
            return chunk + bytes((0x61, min(len(self._pending), 256) & 0xFF))
        return chunk + SW_OK

    # --- files ----------------------------------------------------------------

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScriptedCard:
        """Build from the JSON form (see the module docstring)."""
        if data.get("sscard_card") != "scripted":
            raise ValueError(_('not a scripted card file (missing "sscard_card": "scripted")'))
        unknown = set(data) - {"sscard_card", "atr", "t0", "rules"}
        if unknown:
            raise ValueError(
                _("unknown keys in scripted card file: {keys}").format(
                    keys=", ".join(sorted(unknown))
                )
            )
        rules: dict[bytes, bytes] = {}
        for i, rule in enumerate(data.get("rules", [])):
            try:
                rules[bytes.fromhex(rule["command"])] = bytes.fromhex(rule["response"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(
                    _(
                        "rules[{index}]: needs hex strings 'command' and 'response' ({error})"
                    ).format(index=i, error=exc)
                ) from None
        atr = bytes.fromhex(data["atr"]) if "atr" in data else _with_tck(DEFAULT_ATR)
        return cls(atr=atr, rules=rules, t0=bool(data.get("t0", False)))

    @classmethod
    def load(cls, path: Path) -> ScriptedCard:
        """Read a scripted card file."""
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
