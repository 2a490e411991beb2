"""The emulated social security card: a card OS answering APDUs as shared/spec/card.md says.

``EmulatedCard`` is a :class:`~sscard.transport.base.CardLike`: the in-process
transport and the vpcd bridge drive it. It never raises out of ``process``
(except :class:`~sscard.errors.CardRemoved` when a tear plan cuts the power):
every APDU gets a status word. Card-grade rules it keeps:

* PIN and key error counters are decremented and persisted before the
  comparison, and reset (persisted) only after success;
* MACs and cryptograms are compared in constant time;
* the challenge is one-time: any command other than the one using it
  invalidates it;
* every EEPROM write (``_persist``) happens entirely or not at all.

The card side imports only the algorithms of ``sscard.keys`` and the profile
data of ``sscard.layout`` (ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sscard.applets.image import CardFile, CardState, CardStorage, KeyObject, PinObject
from sscard.errors import CardRemoved, InvalidInput
from sscard.keys.algorithms import (
    auth_cryptogram,
    block_size,
    constant_time_equal,
    decipher_record,
    line_mac,
)
from sscard.keys.records import parse_key_record
from sscard.layout import load_profile
from sscard.layout.fcp import AC_EXT_AUTH, AC_FREE, AC_NEVER, AC_PIN, AC_SM, Fcp, parse_fcp
from sscard.layout.model import FileSpec, Profile

log = logging.getLogger("sscard.applets")

# Status words (ISO 7816-4 and the card spec, "Status words").
OK = b"\x90\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_INS = b"\x6d\x00"
SW_CLA = b"\x6e\x00"
SW_P1P2 = b"\x6a\x86"
SW_WRONG_DATA = b"\x6a\x80"
SW_FILE_NOT_FOUND = b"\x6a\x82"
SW_RECORD_NOT_FOUND = b"\x6a\x83"
SW_REF_NOT_FOUND = b"\x6a\x88"
SW_FILE_EXISTS = b"\x6a\x89"
SW_NOT_SUPPORTED_OR_CARD_BLOCKED = b"\x6a\x81"
SW_SECURITY = b"\x69\x82"
SW_BLOCKED = b"\x69\x83"
SW_CHALLENGE = b"\x69\x84"
SW_CONDITIONS = b"\x69\x85"
SW_NO_EF = b"\x69\x86"
SW_BAD_MAC = b"\x69\x88"
SW_INCOMPATIBLE = b"\x69\x81"
SW_OFFSET = b"\x6b\x00"
SW_EOF = b"\x62\x82"
SW_DEACTIVATED = b"\x62\x83"
SW_APP_BLOCKED = b"\x93\x03"
SW_UNKNOWN = b"\x6f\x00"

_VALID_CLA = (0x00, 0x04, 0x80, 0x84)

# GET DATA 80 CA 00 01 answers one of these [ours]; a card-blocked card answers 6A81.
LIFECYCLE_CODES = {
    "BLANK": 0x01,
    "PERSONALIZATION": 0x02,
    "ISSUED": 0x03,
    "APP_BLOCKED_TEMPORARY": 0x04,
    "APP_BLOCKED_PERMANENT": 0x05,
}


@dataclass(frozen=True)
class Latency:
    """Delays that model a real card: per APDU and per EEPROM write, in seconds."""

    apdu: float = 0.0
    write: float = 0.0

    @classmethod
    def named(cls, name: str) -> Latency:
        """``none`` or ``realistic`` (5 ms per APDU, 20 ms per EEPROM write)."""
        presets = {"none": cls(), "realistic": cls(0.005, 0.020)}
        if name not in presets:
            raise InvalidInput("unknown latency model", [("latency", "use none or realistic")])
        return presets[name]


@dataclass
class TearPlan:
    """Cut the power during APDU number ``apdu`` (1-based, counted from arming),
    after ``writes`` of its EEPROM writes have completed (0: before any)."""

    apdu: int
    writes: int = 0
    fired: bool = False


@dataclass
class _DfState:
    """Volatile security state of the current DF (cleared on DF change and power off)."""

    eak: set[int] = field(default_factory=set)
    mk: bool = False
    pin: bool = False


class _Sw(Exception):
    """Internal: answer with this status word."""

    def __init__(self, sw: bytes) -> None:
        self.sw = sw


class EmulatedCard:
    """The reference social security card, emulated over a :class:`CardStorage`."""

    def __init__(
        self,
        storage: CardStorage,
        *,
        latency: Latency | None = None,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.storage = storage
        self.latency = latency or Latency()
        self._random = random
        self._state = storage.load()
        self.profile = load_profile(self._state.profile)
        self.powered = False
        self.tear: TearPlan | None = None
        self._apdus_since_arm = 0
        self._writes_this_apdu = 0
        self._df: CardFile = self._state.mf
        self._ef: CardFile | None = None
        self._dfs = _DfState()
        self._challenge: bytes | None = None
        self._tk_session = False

    # --- CardLike ---------------------------------------------------------------------

    @property
    def atr(self) -> bytes:
        return self.profile.atr(self._state.serial)

    @property
    def serial(self) -> bytes:
        return self._state.serial

    @property
    def state(self) -> CardState:
        """The card's non-volatile state as it is in RAM (read-only use)."""
        return self._state

    def power_on(self) -> bytes:
        """Cold reset: RAM is rebuilt from the EEPROM; security state is gone."""
        acquire = getattr(self.storage, "acquire", None)
        if acquire is not None:
            acquire()
        self._state = self.storage.load()
        self._reset_volatile()
        self.powered = True
        return self.atr

    def power_off(self) -> None:
        self.powered = False
        self._reset_volatile()
        release = getattr(self.storage, "release", None)
        if release is not None:
            release()

    def arm_tear(self, apdu: int, writes: int = 0) -> None:
        """Cut the power during the ``apdu``-th next APDU after ``writes`` EEPROM writes."""
        self.tear = TearPlan(apdu, writes)
        self._apdus_since_arm = 0

    def process(self, apdu: bytes) -> bytes:
        if self.latency.apdu:
            time.sleep(self.latency.apdu)
        if not self.powered:
            self.power_on()  # a reader always powers the card before the first APDU
        self._apdus_since_arm += 1
        self._writes_this_apdu = 0
        challenge, self._challenge = self._challenge, None
        try:
            response = self._dispatch(bytes(apdu), challenge)
        except _Sw as answer:
            response = answer.sw
        except CardRemoved:
            raise
        except Exception:  # a card never crashes: log the bug, answer "no precise diagnosis"
            log.exception("emulated card: unexpected error")
            response = SW_UNKNOWN
        self._maybe_tear(end_of_apdu=True)
        return response

    # --- volatile state and persistence ---------------------------------------------

    def _reset_volatile(self) -> None:
        self._df = self._state.mf
        self._ef = None
        self._dfs = _DfState()
        self._challenge = None
        self._tk_session = False

    def _select_df(self, df: CardFile) -> None:
        self._df, self._ef, self._dfs = df, None, _DfState()

    def _maybe_tear(self, *, end_of_apdu: bool = False) -> None:
        plan = self.tear
        if plan is None or plan.fired or self._apdus_since_arm != plan.apdu:
            return
        if end_of_apdu or self._writes_this_apdu >= plan.writes:
            plan.fired = True
            self.power_off()
            raise CardRemoved("emulated card: power cut by the tear plan")

    def _persist(self) -> None:
        """One EEPROM write: the whole state, atomically."""
        self._maybe_tear()
        if self.latency.write:
            time.sleep(self.latency.write)
        self.storage.commit(self._state)
        self._writes_this_apdu += 1

    # --- dispatch ---------------------------------------------------------------------

    def _dispatch(self, raw: bytes, challenge: bytes | None) -> bytes:
        if len(raw) < 4:
            return SW_WRONG_LENGTH
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        if cla not in _VALID_CLA:
            return SW_CLA
        handler = _HANDLERS.get(ins)
        if handler is None:
            return SW_INS
        allowed_cla, method = handler
        if cla not in allowed_cla:
            return SW_CLA
        data, le = _body(raw)
        if self._state.lifecycle == "CARD_BLOCKED":
            return SW_NOT_SUPPORTED_OR_CARD_BLOCKED
        gate = self._lifecycle_gate(ins)
        if gate is not None:
            return gate
        result: bytes = method(self, cla, p1, p2, data, le, challenge)
        return result

    def _lifecycle_gate(self, ins: int) -> bytes | None:
        life = self._state.lifecycle
        if life == "BLANK" and ins not in (0xA4, 0x84, 0x82, 0xB2, 0xB0, 0xCA):
            return SW_CONDITIONS
        block = self._state.app_block
        if block == "permanent" and ins not in (0xA4, 0x84, 0x16, 0xCA):
            return SW_APP_BLOCKED
        if block == "temporary" and ins in (0x82, 0x20, 0x5E, 0x24, 0xDC, 0xD6, 0xD4, 0x1E):
            return SW_CONDITIONS
        return None

    # --- lookups ----------------------------------------------------------------------

    def _find_up(self, pick: Callable[[CardFile], object | None]) -> object | None:
        for df in self._df.ancestors():
            found = pick(df)
            if found is not None:
                return found
        return None

    def _pin(self) -> PinObject:
        pin = self._find_up(lambda df: df.pin)
        if not isinstance(pin, PinObject):
            raise _Sw(SW_REF_NOT_FOUND)
        return pin

    def _key_up(self, type: str, id: int) -> KeyObject:
        key = self._find_up(lambda df: df.key(type, id))
        if not isinstance(key, KeyObject):
            raise _Sw(SW_REF_NOT_FOUND)
        return key

    def _spec_for(self, parent: CardFile, fcp: Fcp) -> FileSpec | None:
        """The profile's description of a file about to be created under ``parent``."""
        return self._child_spec(parent, fcp.fid, fcp.df_name)

    def _spec_of(self, f: CardFile) -> FileSpec | None:
        """The profile's description of file ``f`` (None for files the profile lacks)."""
        if f.kind == "mf":
            return self.profile.file("MF")
        if f.parent is None:
            return None
        return self._child_spec(f.parent, f.fid, f.df_name)

    def _child_spec(
        self, parent: CardFile, fid: bytes | None, df_name: bytes | None
    ) -> FileSpec | None:
        """The child of ``parent`` in the profile with this FID (else this DF name)."""
        parent_spec = self._spec_of(parent)
        if parent_spec is None:
            return None
        for spec in self.profile.children(parent_spec.id):
            if fid is not None and spec.fid == fid:
                return spec
            if fid is None and df_name is not None and spec.df_name == df_name:
                return spec
        return None

    # --- secured operations -----------------------------------------------------------

    def _check_key(self, key: KeyObject, ok: Callable[[], bool], fail: bytes | None) -> None:
        """Spend a try, persist, compare; reset on success. ``fail`` None → 63Cx."""
        if key.tries_left <= 0:
            raise _Sw(SW_BLOCKED)
        key.tries_left -= 1
        self._persist()
        if not ok():
            if fail is not None:
                raise _Sw(fail)
            raise _Sw(bytes((0x63, 0xC0 | min(key.tries_left, 15))))
        if key.tries_left != key.error_limit:
            key.tries_left = key.error_limit
            self._persist()

    def _check_mac(
        self,
        key: KeyObject,
        cla: int,
        ins: int,
        p1: int,
        p2: int,
        data: bytes,
        challenge: bytes | None,
    ) -> bytes:
        """Verify the trailing MAC of a line-protected command; return the data before it."""
        if len(data) < 4:
            raise _Sw(SW_WRONG_LENGTH)
        if challenge is None:
            raise _Sw(SW_CHALLENGE)
        body, mac = data[:-4], data[-4:]
        mac_input = bytes((cla, ins, p1, p2, len(data))) + body
        self._check_key(
            key,
            lambda: constant_time_equal(
                line_mac(key.value, mac_input, iv=challenge, algorithm=key.algorithm), mac
            ),
            SW_BAD_MAC,
        )
        return body

    def _granted(self, conditions: bytes, *, sm: bool = False) -> bool:
        if self._tk_session and self._state.lifecycle == "PERSONALIZATION":
            return True
        for c in conditions:
            if c == AC_FREE:
                return True
            if c == AC_NEVER:
                continue
            if c == AC_PIN and self._dfs.pin:
                return True
            if c == AC_SM and sm:
                return True
            if c & 0xF0 == AC_EXT_AUTH and (c & 0x0F) in self._dfs.eak:
                return True
        return False

    # --- SELECT -----------------------------------------------------------------------

    def _select(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if p2 not in (0x00, 0x0C):
            return SW_P1P2
        target: CardFile | None
        if p1 in (0x00, 0x01, 0x02):  # any / child DF / EF under the current DF (ISO 7816-4)
            if len(data) != 2:
                return SW_WRONG_LENGTH
            if p1 == 0x00:
                target = self._by_fid(data)
            else:
                want_df = p1 == 0x01
                target = next(
                    (c for c in self._df.children if c.fid == data and c.is_df == want_df), None
                )
        elif p1 == 0x04:
            if not 1 <= len(data) <= 16:
                return SW_WRONG_LENGTH
            target = next((f for f in self._state.walk() if f.df_name == data), None)
        else:
            return SW_P1P2
        if target is None:
            return SW_FILE_NOT_FOUND
        if target.is_df:
            self._select_df(target)
        else:
            self._ef = target
        fci = b"" if p2 == 0x0C else _fci(target)
        if target.is_df and self._state.app_block == "temporary" and target is not self._state.mf:
            return fci + SW_DEACTIVATED
        if self._state.app_block == "permanent" and target is not self._state.mf:
            return SW_APP_BLOCKED
        return fci + OK

    def _by_fid(self, fid: bytes) -> CardFile | None:
        if fid == b"\x3f\x00":
            return self._state.mf
        places = [self._df, *([self._df.parent] if self._df.parent else [])]
        for df in places:
            if df.fid == fid:
                return df
            for child in df.children:
                if child.fid == fid:
                    return child
        return None

    # --- records and binaries ---------------------------------------------------------

    def _record_ef(self, p2: int) -> CardFile:
        if p2 & 0x07 != 0x04:
            raise _Sw(SW_P1P2)
        sfi = p2 >> 3
        if sfi:
            ef = next((c for c in self._df.children if c.sfi == sfi), None)
            if ef is None:
                raise _Sw(SW_FILE_NOT_FOUND)
            self._ef = ef
        if self._ef is None:
            raise _Sw(SW_NO_EF)
        if self._ef.kind not in ("linear-fixed", "linear-variable"):
            raise _Sw(SW_INCOMPATIBLE)
        return self._ef

    def _read_record(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if data:
            return SW_WRONG_LENGTH
        ef = self._record_ef(p2)
        if not 1 <= p1 <= ef.record_count:
            return SW_RECORD_NOT_FOUND
        if not self._granted(ef.read):
            return SW_SECURITY
        record = ef.records[p1 - 1]
        if record is None:  # never written: tag ‖ len ‖ FF… (spec, EF06), or all FF
            template = ef.templates[p1 - 1] if p1 - 1 < len(ef.templates) else b""
            record = template + b"\xff" * template[1] if template else b"\xff" * ef.record_length
        if le is not None and le != 256 and le != len(record):
            return bytes((0x6C, len(record) & 0xFF))
        return record + OK

    def _update_record(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        ef = self._record_ef(p2)
        if not 1 <= p1 <= ef.record_count:
            return SW_RECORD_NOT_FOUND
        sm = bool(cla & 0x04)
        if sm:
            data = self._check_mac(self._stk(), cla, 0xDC, p1, p2, data, ch)
        if not self._granted(ef.write, sm=sm):
            return SW_SECURITY
        if (
            not data
            or len(data) > ef.record_length
            or (ef.kind == "linear-fixed" and len(data) != ef.record_length)
        ):
            return SW_WRONG_LENGTH
        ef.records[p1 - 1] = bytes(data)
        self._persist()
        return OK

    def _stk(self) -> KeyObject:
        return self._key_up("STK", 1)

    def _binary_ef(self, p1: int, p2: int) -> tuple[CardFile, int]:
        if p1 & 0x80:
            if p1 & 0x60:
                raise _Sw(SW_P1P2)
            sfi, offset = p1 & 0x1F, p2
            ef = next((c for c in self._df.children if c.sfi == sfi), None)
            if ef is None:
                raise _Sw(SW_FILE_NOT_FOUND)
            self._ef = ef
        else:
            offset = (p1 << 8) | p2
        if self._ef is None:
            raise _Sw(SW_NO_EF)
        if self._ef.kind != "transparent":
            raise _Sw(SW_INCOMPATIBLE)
        if offset > self._ef.size:
            raise _Sw(SW_OFFSET)
        return self._ef, offset

    def _read_binary(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if data:
            return SW_WRONG_LENGTH
        ef, offset = self._binary_ef(p1, p2)
        if not self._granted(ef.read):
            return SW_SECURITY
        want = le or 256
        chunk = bytes(ef.data[offset : offset + want])
        if len(chunk) < want and le not in (None, 256):
            return chunk + SW_EOF
        return chunk + OK

    def _update_binary(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        ef, offset = self._binary_ef(p1, p2)
        sm = bool(cla & 0x04)
        if sm:
            data = self._check_mac(self._stk(), cla, 0xD6, p1, p2, data, ch)
        if not self._granted(ef.write, sm=sm):
            return SW_SECURITY
        if not data or offset + len(data) > ef.size:
            return SW_WRONG_LENGTH
        ef.data[offset : offset + len(data)] = data
        self._persist()
        return OK

    # --- authentication ---------------------------------------------------------------

    def _get_challenge(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if p1 or p2:
            return SW_P1P2
        if data or le != 8:
            return SW_WRONG_LENGTH
        challenge = self._random(8)
        self._challenge = challenge
        return challenge + OK

    def _external_auth(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if p1 != 0 or p2 > 0x0F:
            return SW_P1P2
        life = self._state.lifecycle
        df = self._df
        key: KeyObject | None
        if p2 == 0 and df is self._state.mf and life in ("BLANK", "PERSONALIZATION"):
            key = df.key("TK", 0)
        elif p2 == 0:
            key = df.key("MK", 0)
        else:
            key = df.key("EAK", p2)
        if key is None:
            return SW_REF_NOT_FOUND
        if len(data) != block_size(key.algorithm):
            return SW_WRONG_LENGTH
        if ch is None:
            return SW_CHALLENGE
        expected = auth_cryptogram(key.value, ch, algorithm=key.algorithm)
        self._check_key(key, lambda: constant_time_equal(expected, data), None)
        if key.type == "TK":
            self._tk_session = True
            if life == "BLANK":
                self._state.lifecycle = "PERSONALIZATION"
                self._persist()
        elif key.type == "MK":
            self._dfs.mk = True
        else:
            self._dfs.eak.add(p2)
        return OK

    def _internal_auth(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if p1 != 0 or p2 > 0x0F:
            return SW_P1P2
        if len(data) != 8:
            return SW_WRONG_LENGTH
        key = self._key_up("IAK", p2 or 1)
        if key.tries_left <= 0:
            return SW_BLOCKED
        return auth_cryptogram(key.value, data, algorithm=key.algorithm) + OK

    # --- PIN --------------------------------------------------------------------------

    def _verify(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if p1 or p2:
            return SW_P1P2
        pin = self._pin()
        if pin.value is None:
            return SW_CONDITIONS
        if not data:
            if pin.tries_left <= 0:
                return SW_BLOCKED
            return bytes((0x63, 0xC0 | min(pin.tries_left, 15)))
        if len(data) != len(pin.value):
            return SW_WRONG_LENGTH
        if not _is_bcd(data):
            return SW_WRONG_DATA
        self._spend_pin_try(pin, data)
        self._dfs.pin = True
        return OK

    def _spend_pin_try(self, pin: PinObject, candidate: bytes) -> None:
        if pin.tries_left <= 0:
            raise _Sw(SW_BLOCKED)
        pin.tries_left -= 1
        self._persist()
        assert pin.value is not None
        if not constant_time_equal(pin.value, candidate):
            self._dfs.pin = False
            if pin.tries_left <= 0:
                raise _Sw(SW_BLOCKED)
            raise _Sw(bytes((0x63, 0xC0 | min(pin.tries_left, 15))))
        if pin.tries_left != pin.try_limit:
            pin.tries_left = pin.try_limit
            self._persist()

    def _pin_5e(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if cla == 0x80:  # CHANGE PIN: old ‖ FF ‖ new
            if p1 != 0x01 or p2 != 0x00:
                return SW_P1P2
            pin = self._pin()
            if pin.value is None:
                return SW_CONDITIONS
            n = len(pin.value)
            if len(data) != 2 * n + 1:
                return SW_WRONG_LENGTH
            old, sep, new = data[:n], data[n], data[n + 1 :]
            if sep != 0xFF or not _is_bcd(old) or not _is_bcd(new):
                return SW_WRONG_DATA
            self._spend_pin_try(pin, old)
            pin.value = bytes(new)
            self._persist()
            self._dfs.pin = True
            return OK
        # PIN RELOAD: E_RPK(len ‖ PIN ‖ 80 …) ‖ MAC_RPK
        if p1 or p2:
            return SW_P1P2
        pin = self._pin()
        key = self._key_up("RPK", 1)
        body = self._check_mac(key, cla, 0x5E, p1, p2, data, ch)
        try:
            new = decipher_record(key.value, body, algorithm=key.algorithm)
        except InvalidInput:
            return SW_WRONG_DATA
        expected_len = len(pin.value) if pin.value is not None else 3
        if len(new) != expected_len or not _is_bcd(new):
            return SW_WRONG_DATA
        pin.value = bytes(new)
        pin.tries_left = pin.try_limit
        self._persist()
        return OK

    def _pin_unblock(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if p1 or p2:
            return SW_P1P2
        pin = self._pin()
        if pin.value is None:
            return SW_CONDITIONS
        key = self._key_up("PUK", 1)
        if len(data) != 4:
            return SW_WRONG_LENGTH
        self._check_mac(key, cla, 0x24, p1, p2, data, ch)
        pin.tries_left = pin.try_limit
        self._persist()
        return OK

    # --- blocking ---------------------------------------------------------------------

    def _app_block(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if p1 or p2 not in (0, 1):
            return SW_P1P2
        if self._state.lifecycle != "ISSUED":
            return SW_CONDITIONS
        self._mac4(cla, 0x1E, p1, p2, data, ch)
        self._state.app_block = "permanent" if p2 == 1 else "temporary"
        self._persist()
        return OK

    def _app_unblock(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if p1 or p2:
            return SW_P1P2
        if self._state.app_block != "temporary":
            return SW_CONDITIONS
        self._mac4(cla, 0x18, p1, p2, data, ch)
        self._state.app_block = None
        self._persist()
        return OK

    def _card_block(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if p1 or p2:
            return SW_P1P2
        if self._state.lifecycle != "ISSUED":
            return SW_CONDITIONS
        self._mac4(cla, 0x16, p1, p2, data, ch)
        self._state.lifecycle = "CARD_BLOCKED"
        self._persist()
        return OK

    def _mac4(self, cla: int, ins: int, p1: int, p2: int, data: bytes, ch: bytes | None) -> None:
        if len(data) != 4:
            raise _Sw(SW_WRONG_LENGTH)
        self._check_mac(self._stk(), cla, ins, p1, p2, data, ch)

    # --- personalization --------------------------------------------------------------

    def _write_key(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if p1 != 0x01 or p2 > 0x0F:
            return SW_P1P2
        df = self._df
        if cla == 0x80:
            if self._state.lifecycle != "PERSONALIZATION":
                return SW_CONDITIONS
            if not self._tk_session:
                return SW_SECURITY
            record = data
        else:
            # Enciphered + MAC: under the TK during the personalization session
            # [ours: no card key crosses the wire in clear], else under the DF's MK.
            if self._state.lifecycle == "PERSONALIZATION" and self._tk_session:
                mk = self._state.mf.key("TK", 0)
            else:
                mk = df.key("MK", 0)
            if mk is None:
                return SW_REF_NOT_FOUND
            body = self._check_mac(mk, cla, 0xD4, p1, p2, data, ch)
            try:
                record = decipher_record(mk.value, body, algorithm=mk.algorithm)
            except InvalidInput:
                return SW_WRONG_DATA
        try:
            parsed = parse_key_record(record)
        except InvalidInput:
            return SW_WRONG_DATA
        if parsed.id != p2 or parsed.type == "TK" or parsed.error_limit < 1:
            return SW_WRONG_DATA
        new = KeyObject(
            parsed.type,
            parsed.id,
            parsed.version,
            parsed.algorithm,
            parsed.error_limit,
            parsed.error_limit,
            parsed.value,
        )
        df.keys = [k for k in df.keys if (k.type, k.id) != (new.type, new.id)] + [new]
        self._persist()
        return OK

    def _create_file(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if p1 or p2:
            return SW_P1P2
        if self._state.lifecycle != "PERSONALIZATION":
            return SW_CONDITIONS
        if not self._tk_session:
            return SW_SECURITY
        try:
            fcp = parse_fcp(data)
        except ValueError:
            return SW_WRONG_DATA
        parent = self._df
        if fcp.fid is not None and any(c.fid == fcp.fid for c in parent.children):
            return SW_FILE_EXISTS
        if fcp.df_name is not None and any(f.df_name == fcp.df_name for f in self._state.walk()):
            return SW_FILE_EXISTS
        spec = self._spec_for(parent, fcp)
        new = CardFile(
            kind="df" if fcp.is_df else fcp.kind,
            fid=fcp.fid,
            df_name=fcp.df_name,
            sfi=fcp.sfi,
            parent=parent,
        )
        if fcp.is_df:
            if spec is not None and self.profile.pin.df == spec.id:
                limit = self.profile.pin.try_limit
                new.pin = PinObject(limit, limit)
        else:
            new.read, new.write = fcp.read, fcp.write
            if fcp.kind == "transparent":
                new.size = fcp.size or 0
                new.data = bytearray(b"\xff" * new.size)
            else:
                new.record_count = fcp.record_count or 0
                new.record_length = fcp.record_length or 0
                new.records = [None] * new.record_count
                if spec is not None:
                    new.templates = [
                        bytes((r.tag, r.length)) for r in sorted(spec.records, key=lambda r: r.no)
                    ]
        parent.children.append(new)
        self._persist()
        if new.is_df:
            self._select_df(new)
        else:
            self._ef = new
        return OK

    def _end_personalization(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        if p1 or p2 or data:
            return SW_P1P2 if (p1 or p2) else SW_WRONG_LENGTH
        if self._state.lifecycle != "PERSONALIZATION":
            return SW_CONDITIONS
        if not self._tk_session:
            return SW_SECURITY
        self._state.lifecycle = "ISSUED"
        self._persist()
        self._tk_session = False
        return OK

    def _get_data(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        """``80 CA 00 01``: the lifecycle byte [ours], see LIFECYCLE_CODES."""
        if (p1, p2) != (0x00, 0x01):
            return SW_REF_NOT_FOUND
        if data:
            return SW_WRONG_LENGTH
        code = LIFECYCLE_CODES[self._state.lifecycle]
        if self._state.app_block is not None:
            code = LIFECYCLE_CODES["APP_BLOCKED_" + self._state.app_block.upper()]
        return bytes((code,)) + OK

    def _get_response(
        self, cla: int, p1: int, p2: int, data: bytes, le: int | None, ch: bytes | None
    ) -> bytes:
        return SW_CONDITIONS  # T=1 card: nothing is ever pending


Handler = Callable[[EmulatedCard, int, int, int, bytes, "int | None", "bytes | None"], bytes]

_HANDLERS: dict[int, tuple[tuple[int, ...], Handler]] = {
    0xA4: ((0x00,), EmulatedCard._select),
    0xB2: ((0x00,), EmulatedCard._read_record),
    0xDC: ((0x00, 0x04), EmulatedCard._update_record),
    0xB0: ((0x00,), EmulatedCard._read_binary),
    0xD6: ((0x00, 0x04), EmulatedCard._update_binary),
    0x84: ((0x00,), EmulatedCard._get_challenge),
    0x82: ((0x00,), EmulatedCard._external_auth),
    0x88: ((0x00,), EmulatedCard._internal_auth),
    0x20: ((0x00,), EmulatedCard._verify),
    0x5E: ((0x80, 0x84), EmulatedCard._pin_5e),
    0x24: ((0x84,), EmulatedCard._pin_unblock),
    0x1E: ((0x84,), EmulatedCard._app_block),
    0x18: ((0x84,), EmulatedCard._app_unblock),
    0x16: ((0x84,), EmulatedCard._card_block),
    0xD4: ((0x80, 0x84), EmulatedCard._write_key),
    0xE0: ((0x80,), EmulatedCard._create_file),
    0xEA: ((0x80,), EmulatedCard._end_personalization),
    0xC0: ((0x00,), EmulatedCard._get_response),
    0xCA: ((0x80,), EmulatedCard._get_data),
}


def _body(raw: bytes) -> tuple[bytes, int | None]:
    """Data and Le of a short APDU; 6700 for anything else (extended is not supported)."""
    n = len(raw)
    if n == 4:
        return b"", None
    if n == 5:
        return b"", raw[4] or 256
    lc = raw[4]
    if lc and n == 5 + lc:
        return raw[5:], None
    if lc and n == 6 + lc:
        return raw[5:-1], raw[-1] or 256
    raise _Sw(SW_WRONG_LENGTH)


def _is_bcd(data: bytes) -> bool:
    return all((b >> 4) <= 9 and (b & 0x0F) <= 9 for b in data)


def _fci(f: CardFile) -> bytes:
    if f.is_df:
        inner = b""
        if f.fid is not None:
            inner += b"\x83\x02" + f.fid
        if f.df_name is not None:
            inner += bytes((0x84, len(f.df_name))) + f.df_name
        return bytes((0x6F, len(inner))) + inner
    desc = {"transparent": 0x01, "linear-fixed": 0x02, "linear-variable": 0x04}[f.kind]
    inner = b"\x82\x01" + bytes((desc,)) + b"\x83\x02" + (f.fid or b"")
    if f.kind == "transparent":
        inner += b"\x80\x02" + f.size.to_bytes(2, "big")
    else:
        inner += b"\x80\x02" + bytes((f.record_count, f.record_length))
    return bytes((0x62, len(inner))) + inner


def blank_state(profile: Profile, serial: bytes, transport_key: bytes) -> CardState:
    """A blank card as the vendor delivers it: MF with the transport key, nothing else."""
    slot = profile.key_scheme.find("MF", "TK", 0)
    mf = CardFile(kind="mf", fid=b"\x3f\x00")
    mf.keys.append(
        KeyObject(
            "TK", 0, slot.version, slot.algorithm, slot.error_limit, slot.error_limit, transport_key
        )
    )
    return CardState(profile=profile.name, serial=bytes(serial), lifecycle="BLANK", mf=mf)
