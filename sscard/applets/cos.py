"""The emulated social security card: a card OS answering APDUs as docs/card.md says.

``EmulatedCard`` is a :class:`~sscard.transport.base.CardLike`: the in-process
transport and the vpcd bridge drive it. Its plumbing (power, the ``process``
loop, the header checks, ``_persist``, tear plans) is
:class:`~sscard.applets.chip.EmulatedChip`, shared with the emulated PSAM; this
module holds the card's command table, its volatile state and its lifecycle
gate. It never raises out of ``process``
(except :class:`~sscard.errors.CardRemoved` when a tear plan cuts the power):
every APDU gets a status word. Card-grade rules it keeps:

* PIN and key error counters are decremented and persisted before the
  comparison, and reset (persisted) only after success (one routine,
  ``_spend_try``, serves both);
* MACs and cryptograms are compared in constant time;
* the challenge is one-time: any command other than the one using it
  invalidates it;
* every EEPROM write (``_persist``) happens entirely or not at all.

Reading order follows the spec: ``_COMMANDS`` maps each ``(CLA, INS)`` of the
command table to its handler; a handler gets the parsed
:class:`~sscard.apdu.CommandApdu` and the challenge of the previous command.
Status words, instruction bytes, lifecycle states, file and key types are the
enums of :mod:`sscard.vocab`.

The card side imports only the algorithms of ``sscard.keys``, the profile
data of ``sscard.layout``, the APDU values and the vocabulary
(docs/architecture.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from sscard.apdu import CommandApdu
from sscard.applets.chip import OK, EmulatedChip, _Sw, _sw
from sscard.applets.chip import Latency as Latency  # its home before chip.py
from sscard.applets.image import (
    DEFAULT_ATR,
    CardFile,
    CardState,
    CardStorage,
    KeyObject,
    PinObject,
)
from sscard.errors import InvalidInput
from sscard.keys.algorithms import (
    auth_cryptogram,
    block_size,
    constant_time_equal,
    decipher_record,
    diversify,
    line_mac,
)
from sscard.keys.records import parse_key_record
from sscard.layout import load_profile
from sscard.layout.fcp import (
    AC_EXT_AUTH,
    AC_FREE,
    AC_NEVER,
    AC_PIN,
    AC_SM,
    TAG_FCI,
    TAG_FCP,
    Fcp,
    condition_byte,
    encode_fci,
    parse_fcp,
)
from sscard.layout.model import FileSpec, Profile
from sscard.vocab import (
    CLA,
    INS,
    SM_CLASS_BIT,
    SW,
    WRONG_LE_SW1,
    AppBlock,
    FileType,
    KeyType,
    Lifecycle,
    tries_left_sw,
)

MF_FID = b"\x3f\x00"
P2_NO_FCI = 0x0C  # SELECT: no response data
# SELECT P2 (ISO 7816-4): 00 the FCI template, 04 the FCP template, 0C nothing.
_SELECT_ANSWERS: dict[int, int | None] = {0x00: TAG_FCI, 0x04: TAG_FCP, P2_NO_FCI: None}


@dataclass
class _DfState:
    """Volatile security state of the current DF (cleared on DF change and power off)."""

    eak: set[int] = field(default_factory=set)
    mk: bool = False
    pin: bool = False
    internal: bool = False  # a process-factor INTERNAL AUTHENTICATE ran (3.0 reading)


# Commands a card in a given state still accepts (docs/card.md, "Choices marked [ours]":
# application block).
_BLANK_ALLOWS = frozenset(
    (
        INS.SELECT,
        INS.GET_CHALLENGE,
        INS.EXTERNAL_AUTHENTICATE,
        INS.READ_RECORD,
        INS.READ_BINARY,
        INS.GET_DATA,
    )
)
_PERMANENT_BLOCK_ALLOWS = frozenset((INS.SELECT, INS.GET_CHALLENGE, INS.CARD_BLOCK, INS.GET_DATA))
_TEMPORARY_BLOCK_REFUSES = frozenset(
    (
        INS.VERIFY,
        INS.CHANGE_PIN,
        INS.PIN_UNBLOCK,
        INS.UPDATE_RECORD,
        INS.UPDATE_BINARY,
        INS.WRITE_KEY,
        INS.APPLICATION_BLOCK,
    )
)


class EmulatedCard(EmulatedChip[CardState]):
    """The reference social security card, emulated over a :class:`CardStorage`."""

    DEFAULT_ATR = DEFAULT_ATR
    NAME = "card"

    _df: CardFile
    _ef: CardFile | None
    _dfs: _DfState
    _process_factor: bytes | None  # the challenge before the current one
    _pf_now: bytes | None  # the process factor the current APDU may use
    _tk_session: bool

    def __init__(
        self,
        storage: CardStorage,
        *,
        latency: Latency | None = None,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        super().__init__(storage, latency=latency, random=random)
        self.profile = load_profile(self._state.profile)

    # --- volatile state ---------------------------------------------------------------

    def _reset_volatile(self) -> None:
        super()._reset_volatile()
        self._df = self._state.mf
        self._ef = None
        self._dfs = _DfState()
        self._process_factor = None
        self._pf_now = None
        self._tk_session = False

    def _begin_apdu(self) -> None:
        self._pf_now = self._process_factor
        self._process_factor = None

    def _select_df(self, df: CardFile) -> None:
        self._df, self._ef, self._dfs = df, None, _DfState()

    # --- dispatch ---------------------------------------------------------------------

    def _gate(self, ins: int) -> SW | None:
        """A card-blocked card answers 6A81 to all; then the lifecycle gate."""
        if self._state.lifecycle == Lifecycle.CARD_BLOCKED:
            return SW.FUNC_NOT_SUPPORTED
        if self._state.lifecycle == Lifecycle.BLANK and ins not in _BLANK_ALLOWS:
            return SW.CONDITIONS_NOT_SATISFIED
        block = self._state.app_block
        if block == AppBlock.PERMANENT and ins not in _PERMANENT_BLOCK_ALLOWS:
            return SW.APPLICATION_BLOCKED
        if block == AppBlock.TEMPORARY and ins in _TEMPORARY_BLOCK_REFUSES:
            return SW.CONDITIONS_NOT_SATISFIED
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
            raise _Sw(SW.REFERENCE_NOT_FOUND)
        return pin

    def _key_up(self, type: KeyType, id: int) -> KeyObject:
        key = self._find_up(lambda df: df.key(type, id))
        if not isinstance(key, KeyObject):
            raise _Sw(SW.REFERENCE_NOT_FOUND)
        return key

    def _stk(self) -> KeyObject:
        return self._key_up(KeyType.STK, 1)

    def _spec_for(self, parent: CardFile, fcp: Fcp) -> FileSpec | None:
        """The profile's description of a file about to be created under ``parent``."""
        return self._child_spec(parent, fcp.fid, fcp.df_name)

    def _spec_of(self, f: CardFile) -> FileSpec | None:
        """The profile's description of file ``f`` (None for files the profile lacks)."""
        if f.kind == FileType.MF:
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

    def _check_pin(self, pin: PinObject, candidate: bytes) -> None:
        """Spend a try of the PIN; a mismatch answers 63Cx, or 6983 on the last try."""
        value = pin.value
        assert value is not None
        if not self._spend_try(pin, lambda: constant_time_equal(value, candidate)):
            self._dfs.pin = False
            if pin.tries_left <= 0:
                raise _Sw(SW.AUTH_METHOD_BLOCKED)
            raise _Sw(tries_left_sw(pin.tries_left))

    def _check_mac(self, key: KeyObject, command: CommandApdu, challenge: bytes | None) -> bytes:
        """Verify the trailing MAC of a line-protected command; return the data before it."""
        data = command.data
        if len(data) < 4:
            raise _Sw(SW.WRONG_LENGTH)
        if challenge is None:
            raise _Sw(SW.CHALLENGE_UNUSABLE)
        body, mac = data[:-4], data[-4:]
        mac_input = command.header() + bytes((len(data),)) + body
        self._check_key(
            key,
            lambda: constant_time_equal(
                line_mac(key.value, mac_input, iv=challenge, algorithm=key.algorithm), mac
            ),
            SW.BAD_MAC,
        )
        return body

    def _granted(self, conditions: bytes, *, sm: bool = False) -> bool:
        if self._tk_session and self._state.lifecycle == Lifecycle.PERSONALIZATION:
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

    def _select(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        p1, p2, data = cmd.p1, cmd.p2, cmd.data
        if p2 not in _SELECT_ANSWERS:
            return _sw(SW.INCORRECT_P1P2)
        target: CardFile | None
        if p1 == 0x00 and not data:  # ISO 7816-4: P1P2 0000 without data selects the MF
            target = self._state.mf
        elif p1 in (0x00, 0x01, 0x02):  # any / child DF / EF under the current DF
            if len(data) != 2:
                return _sw(SW.WRONG_LENGTH)
            if p1 == 0x00:
                target = self._by_fid(data)
            else:
                want_df = p1 == 0x01
                target = next(
                    (c for c in self._df.children if c.fid == data and c.is_df == want_df), None
                )
        elif p1 == 0x04:  # by DF name
            if not 1 <= len(data) <= 16:
                return _sw(SW.WRONG_LENGTH)
            target = next((f for f in self._state.walk() if f.df_name == data), None)
        elif p1 in (0x08, 0x09):  # by path from the MF / from the current DF
            target = self._by_path(data, from_mf=p1 == 0x08)
        else:
            return _sw(SW.INCORRECT_P1P2)
        if target is None:
            return _sw(SW.FILE_NOT_FOUND)
        self._make_current(target)
        template = _SELECT_ANSWERS[p2]
        fci = b""
        if template is not None:
            fci = encode_fci(
                _fcp_of(target), template=template, proprietary=self._fci_proprietary(target)
            )
        block = self._state.app_block
        if target.is_df and block == AppBlock.TEMPORARY and target is not self._state.mf:
            return _sw(SW.FILE_DEACTIVATED, fci)
        if block == AppBlock.PERMANENT and target is not self._state.mf:
            return _sw(SW.APPLICATION_BLOCKED)
        return _sw(SW.OK, fci)

    def _fci_proprietary(self, f: CardFile) -> bytes:
        """TLV objects for the proprietary template (``A5``) of ``f``'s FCI: the
        application DF (DDF) carries the algorithm indicator ``9F0C 03 86 01 xx``
        (docs/card.md, "Recognising a card")."""
        spec = self._spec_of(f)
        if spec is None or spec.type != FileType.DDF:
            return b""
        return bytes((0x9F, 0x0C, 3, 0x86, 1, self.profile.algorithm.indicator))

    def _make_current(self, target: CardFile) -> None:
        """``target`` becomes the current file; an EF's DF becomes the current DF."""
        if target.is_df:
            self._select_df(target)
            return
        if target.parent is not None and target.parent is not self._df:
            self._select_df(target.parent)
        self._ef = target

    def _by_fid(self, fid: bytes) -> CardFile | None:
        if fid == MF_FID:
            return self._state.mf
        places = [self._df, *([self._df.parent] if self._df.parent else [])]
        for df in places:
            if df.fid == fid:
                return df
            for child in df.children:
                if child.fid == fid:
                    return child
        return None

    def _by_path(self, path: bytes, *, from_mf: bool) -> CardFile | None:
        """The file at ``path`` (FIDs, 2 bytes each) from the MF or the current DF.

        A path from the MF leaves out 3F00 (ISO 7816-4); one that starts with it
        is taken as well.
        """
        if not path or len(path) % 2:
            raise _Sw(SW.WRONG_LENGTH)
        fids = [path[i : i + 2] for i in range(0, len(path), 2)]
        node = self._state.mf if from_mf else self._df
        if from_mf and fids[0] == MF_FID:
            fids = fids[1:]
        for fid in fids:
            found = next((c for c in node.children if c.fid == fid), None)
            if found is None:
                return None
            node = found
        return node

    # --- records and binaries ---------------------------------------------------------

    def _record_ef(self, p2: int, *, by_id: bool = False) -> CardFile:
        """The EF a record command addresses: P2 = SFI << 3 | 100 (by number), or
        | 000 (by record identifier, first occurrence) when ``by_id`` is allowed."""
        if p2 & 0x07 != 0x04 and not (by_id and p2 & 0x07 == 0x00):
            raise _Sw(SW.INCORRECT_P1P2)
        sfi = p2 >> 3
        if sfi:
            ef = next((c for c in self._df.children if c.sfi == sfi), None)
            if ef is None:
                raise _Sw(SW.FILE_NOT_FOUND)
            self._ef = ef
        if self._ef is None:
            raise _Sw(SW.NO_CURRENT_EF)
        if not self._ef.kind.is_record:
            raise _Sw(SW.INCOMPATIBLE_FILE)
        return self._ef

    def _read_record(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        if cmd.data:
            return _sw(SW.WRONG_LENGTH)
        ef = self._record_ef(cmd.p2, by_id=True)
        if cmd.p2 & 0x07 == 0x04:
            no = cmd.p1
        else:  # P1 is a record identifier: the item's tag (national terminals read so)
            no = next((i + 1 for i in range(ef.record_count) if _tag(ef, i) == cmd.p1), 0)
        if not 1 <= no <= ef.record_count:
            return _sw(SW.RECORD_NOT_FOUND)
        if not self._granted(self._record_readers(ef, no)):
            return _sw(SW.SECURITY_STATUS_NOT_SATISFIED)
        record = ef.records[no - 1]
        if record is None:  # never written: tag ‖ len ‖ FF… (spec, EF06), or all FF
            template = ef.templates[no - 1] if no - 1 < len(ef.templates) else b""
            record = template + b"\xff" * template[1] if template else b"\xff" * ef.record_length
        le = cmd.le
        if le is not None and le != 256 and le != len(record):
            return _sw((WRONG_LE_SW1 << 8) | (len(record) & 0xFF))
        return _sw(SW.OK, record)

    def _record_readers(self, ef: CardFile, no: int) -> bytes:
        """The read conditions of record ``no``: the mask's per-record rule, else the EF's.

        Per-record rules (3.0 cards: basic information after authentication) are part
        of the card's mask, i.e. the profile [ours], not of CREATE FILE.
        """
        spec = self._spec_of(ef)
        if spec is None or ef.parent is None:
            return ef.read
        item = next((r for r in spec.records if r.no == no), None)
        if item is None or item.read is None:
            return ef.read
        parent = self._spec_of(ef.parent)
        return bytes(condition_byte(c, parent.id if parent else "MF") for c in item.read)

    def _update_record(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        ef = self._record_ef(cmd.p2)
        if not 1 <= cmd.p1 <= ef.record_count:
            return _sw(SW.RECORD_NOT_FOUND)
        sm = bool(cmd.cla & SM_CLASS_BIT)
        data = self._check_mac(self._stk(), cmd, ch) if sm else cmd.data
        if not self._granted(ef.write, sm=sm):
            return _sw(SW.SECURITY_STATUS_NOT_SATISFIED)
        if (
            not data
            or len(data) > ef.record_length
            or (ef.kind == FileType.LINEAR_FIXED and len(data) != ef.record_length)
        ):
            return _sw(SW.WRONG_LENGTH)
        ef.records[cmd.p1 - 1] = bytes(data)
        self._persist()
        return OK

    def _binary_ef(self, p1: int, p2: int) -> tuple[CardFile, int]:
        if p1 & 0x80:
            if p1 & 0x60:
                raise _Sw(SW.INCORRECT_P1P2)
            sfi, offset = p1 & 0x1F, p2
            ef = next((c for c in self._df.children if c.sfi == sfi), None)
            if ef is None:
                raise _Sw(SW.FILE_NOT_FOUND)
            self._ef = ef
        else:
            offset = (p1 << 8) | p2
        if self._ef is None:
            raise _Sw(SW.NO_CURRENT_EF)
        if self._ef.kind != FileType.TRANSPARENT:
            raise _Sw(SW.INCOMPATIBLE_FILE)
        if offset > self._ef.size:
            raise _Sw(SW.WRONG_OFFSET)
        return self._ef, offset

    def _read_binary(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        if cmd.data:
            return _sw(SW.WRONG_LENGTH)
        ef, offset = self._binary_ef(cmd.p1, cmd.p2)
        if not self._granted(ef.read):
            return _sw(SW.SECURITY_STATUS_NOT_SATISFIED)
        want = cmd.le or 256
        chunk = bytes(ef.data[offset : offset + want])
        if len(chunk) < want and cmd.le not in (None, 256):
            return _sw(SW.END_OF_FILE, chunk)
        return _sw(SW.OK, chunk)

    def _update_binary(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        ef, offset = self._binary_ef(cmd.p1, cmd.p2)
        sm = bool(cmd.cla & SM_CLASS_BIT)
        data = self._check_mac(self._stk(), cmd, ch) if sm else cmd.data
        if not self._granted(ef.write, sm=sm):
            return _sw(SW.SECURITY_STATUS_NOT_SATISFIED)
        if not data or offset + len(data) > ef.size:
            return _sw(SW.WRONG_LENGTH)
        ef.data[offset : offset + len(data)] = data
        self._persist()
        return OK

    # --- authentication ---------------------------------------------------------------

    def _get_challenge(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        answer = super()._get_challenge(cmd, ch)
        if self._challenge is not None:
            # Two GET CHALLENGEs in a row: the first is the process factor of a 3.0
            # read authentication (docs/card.md), usable by the next command only.
            self._process_factor = ch
        return answer

    def _external_auth(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        p2 = cmd.p2
        if cmd.p1 != 0 or p2 > 0x0F:
            return _sw(SW.INCORRECT_P1P2)
        life = self._state.lifecycle
        df = self._df
        key: KeyObject | None
        if p2 == 0 and df is self._state.mf and not life.personalized:
            key = df.key(KeyType.TK, 0)
        elif p2 == 0:
            key = df.key(KeyType.MK, 0)
        else:
            key = df.key(KeyType.EAK, p2) or df.key(KeyType.RK, p2)
        if key is None:
            return _sw(SW.REFERENCE_NOT_FOUND)
        if self._state.app_block == AppBlock.TEMPORARY and key.type != KeyType.RK:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)  # reading stays possible, nothing else
        if len(cmd.data) != block_size(key.algorithm):
            return _sw(SW.WRONG_LENGTH)
        value = key.value
        if key.type == KeyType.RK:  # the read key: after INTERNAL AUTHENTICATE, session key
            if not self._dfs.internal:
                return _sw(SW.CONDITIONS_NOT_SATISFIED)
            if self._pf_now is None:
                return _sw(SW.CHALLENGE_UNUSABLE)
            value = diversify(key.value, self._pf_now, algorithm=key.algorithm)
        if ch is None:
            return _sw(SW.CHALLENGE_UNUSABLE)
        expected = auth_cryptogram(value, ch, algorithm=key.algorithm)
        self._check_key(key, lambda: constant_time_equal(expected, cmd.data), None)
        if key.type == KeyType.TK:
            self._tk_session = True
            if life == Lifecycle.BLANK:
                self._state.lifecycle = Lifecycle.PERSONALIZATION
                self._persist()
        elif key.type == KeyType.MK:
            self._dfs.mk = True
        else:
            self._dfs.eak.add(p2)
        return OK

    def _internal_auth(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """8 bytes: ``E_IAK(R)``; 16 bytes, process factor ‖ R: ``E_SK(R)`` with the
        session key SK = IAK diversified by the process factor (3.0 reading, [ours])."""
        if cmd.p1 != 0 or cmd.p2 > 0x0F:
            return _sw(SW.INCORRECT_P1P2)
        if len(cmd.data) not in (8, 16):
            return _sw(SW.WRONG_LENGTH)
        key = self._key_up(KeyType.IAK, cmd.p2 or 1)
        if key.tries_left <= 0:
            return _sw(SW.AUTH_METHOD_BLOCKED)
        value, random = key.value, cmd.data
        if len(cmd.data) == 16:
            value = diversify(key.value, cmd.data[:8], algorithm=key.algorithm)
            random = cmd.data[8:]
            self._dfs.internal = True
        return _sw(SW.OK, auth_cryptogram(value, random, algorithm=key.algorithm))

    # --- PIN --------------------------------------------------------------------------

    def _verify(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        if cmd.p1 or cmd.p2:
            return _sw(SW.INCORRECT_P1P2)
        pin = self._pin()
        if pin.value is None:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        if not cmd.data:  # ISO 7816-4: is the PIN verified? Else the tries left, none spent
            if pin.tries_left <= 0:
                return _sw(SW.AUTH_METHOD_BLOCKED)
            if self._dfs.pin:
                return OK
            return _sw(tries_left_sw(pin.tries_left))
        if len(cmd.data) != len(pin.value):
            return _sw(SW.WRONG_LENGTH)
        if not _is_bcd(cmd.data):
            return _sw(SW.WRONG_DATA)
        self._check_pin(pin, cmd.data)
        self._dfs.pin = True
        return OK

    def _change_pin(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """CHANGE PIN ``80 5E 01 00``: old ‖ FF ‖ new."""
        if cmd.p1 != 0x01 or cmd.p2 != 0x00:
            return _sw(SW.INCORRECT_P1P2)
        pin = self._pin()
        if pin.value is None:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        n, data = len(pin.value), cmd.data
        if len(data) != 2 * n + 1:
            return _sw(SW.WRONG_LENGTH)
        old, sep, new = data[:n], data[n], data[n + 1 :]
        if sep != 0xFF or not _is_bcd(old) or not _is_bcd(new):
            return _sw(SW.WRONG_DATA)
        self._check_pin(pin, old)
        pin.value = bytes(new)
        self._persist()
        self._dfs.pin = True
        return OK

    def _reload_pin(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """PIN RELOAD ``84 5E 00 00``: E_RPK(len ‖ PIN ‖ 80 …) ‖ MAC_RPK."""
        if cmd.p1 or cmd.p2:
            return _sw(SW.INCORRECT_P1P2)
        pin = self._pin()
        key = self._key_up(KeyType.RPK, 1)
        body = self._check_mac(key, cmd, ch)
        try:
            new = decipher_record(key.value, body, algorithm=key.algorithm)
        except InvalidInput:
            return _sw(SW.WRONG_DATA)
        expected_len = len(pin.value) if pin.value is not None else 3
        if len(new) != expected_len or not _is_bcd(new):
            return _sw(SW.WRONG_DATA)
        pin.value = bytes(new)
        pin.tries_left = pin.try_limit
        self._persist()
        return OK

    def _pin_unblock(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        if cmd.p1 or cmd.p2:
            return _sw(SW.INCORRECT_P1P2)
        pin = self._pin()
        if pin.value is None:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        key = self._key_up(KeyType.PUK, 1)
        if len(cmd.data) != 4:
            return _sw(SW.WRONG_LENGTH)
        self._check_mac(key, cmd, ch)
        pin.tries_left = pin.try_limit
        self._persist()
        return OK

    # --- blocking ---------------------------------------------------------------------

    def _block(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """APPLICATION BLOCK (``84 1E``, P2 01: permanent), APPLICATION UNBLOCK (``84 18``,
        temporary blocks only) and CARD BLOCK (``84 16``): a 4-byte MAC with the STK."""
        ins, state = cmd.ins, self._state
        p2_allowed = (0, 1) if ins == INS.APPLICATION_BLOCK else (0,)
        if cmd.p1 or cmd.p2 not in p2_allowed:
            return _sw(SW.INCORRECT_P1P2)
        if ins == INS.APPLICATION_UNBLOCK:
            allowed = state.app_block == AppBlock.TEMPORARY
        else:
            allowed = state.lifecycle == Lifecycle.ISSUED
        if not allowed:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        if len(cmd.data) != 4:
            return _sw(SW.WRONG_LENGTH)
        self._check_mac(self._stk(), cmd, ch)
        if ins == INS.APPLICATION_BLOCK:
            state.app_block = AppBlock.PERMANENT if cmd.p2 == 1 else AppBlock.TEMPORARY
        elif ins == INS.APPLICATION_UNBLOCK:
            state.app_block = None
        else:
            state.lifecycle = Lifecycle.CARD_BLOCKED
        self._persist()
        return OK

    # --- personalization --------------------------------------------------------------

    def _write_key_plain(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """WRITE KEY ``80 D4 01 id``: a clear key record, in the TK session only."""
        if cmd.p1 != 0x01 or cmd.p2 > 0x0F:
            return _sw(SW.INCORRECT_P1P2)
        if self._state.lifecycle != Lifecycle.PERSONALIZATION:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        if not self._tk_session:
            return _sw(SW.SECURITY_STATUS_NOT_SATISFIED)
        return self._install_key(cmd.p2, cmd.data)

    def _write_key_protected(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """WRITE KEY ``84 D4 01 id``: enciphered + MAC under the TK during the
        personalization session [ours: no card key crosses the wire in clear],
        else under the DF's MK."""
        if cmd.p1 != 0x01 or cmd.p2 > 0x0F:
            return _sw(SW.INCORRECT_P1P2)
        if self._state.lifecycle == Lifecycle.PERSONALIZATION and self._tk_session:
            mk = self._state.mf.key(KeyType.TK, 0)
        else:
            mk = self._df.key(KeyType.MK, 0)
        if mk is None:
            return _sw(SW.REFERENCE_NOT_FOUND)
        body = self._check_mac(mk, cmd, ch)
        try:
            record = decipher_record(mk.value, body, algorithm=mk.algorithm)
        except InvalidInput:
            return _sw(SW.WRONG_DATA)
        return self._install_key(cmd.p2, record)

    def _install_key(self, key_id: int, record: bytes) -> bytes:
        """Put the key of a clear key record into the current DF (replacing its namesake)."""
        try:
            parsed = parse_key_record(record)
        except InvalidInput:
            return _sw(SW.WRONG_DATA)
        if parsed.id != key_id or parsed.type == KeyType.TK or parsed.error_limit < 1:
            return _sw(SW.WRONG_DATA)
        new = KeyObject(
            parsed.type,
            parsed.id,
            parsed.version,
            parsed.algorithm,
            parsed.error_limit,
            parsed.error_limit,
            parsed.value,
        )
        df = self._df
        df.keys = [k for k in df.keys if (k.type, k.id) != (new.type, new.id)] + [new]
        self._persist()
        return OK

    def _create_file(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        if cmd.p1 or cmd.p2:
            return _sw(SW.INCORRECT_P1P2)
        if self._state.lifecycle != Lifecycle.PERSONALIZATION:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        if not self._tk_session:
            return _sw(SW.SECURITY_STATUS_NOT_SATISFIED)
        try:
            fcp = parse_fcp(cmd.data)
        except ValueError:
            return _sw(SW.WRONG_DATA)
        parent = self._df
        if fcp.fid is not None and any(c.fid == fcp.fid for c in parent.children):
            return _sw(SW.FILE_EXISTS)
        if fcp.df_name is not None and any(f.df_name == fcp.df_name for f in self._state.walk()):
            return _sw(SW.FILE_EXISTS)
        spec = self._spec_for(parent, fcp)
        new = CardFile(kind=fcp.kind, fid=fcp.fid, df_name=fcp.df_name, sfi=fcp.sfi, parent=parent)
        if fcp.is_df:
            if spec is not None and self.profile.pin.df == spec.id:
                limit = self.profile.pin.try_limit
                new.pin = PinObject(limit, limit)
        else:
            new.read, new.write = fcp.read, fcp.write
            if fcp.kind == FileType.TRANSPARENT:
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

    def _end_personalization(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        if cmd.p1 or cmd.p2:
            return _sw(SW.INCORRECT_P1P2)
        if cmd.data:
            return _sw(SW.WRONG_LENGTH)
        if self._state.lifecycle != Lifecycle.PERSONALIZATION:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        if not self._tk_session:
            return _sw(SW.SECURITY_STATUS_NOT_SATISFIED)
        self._state.lifecycle = Lifecycle.ISSUED
        self._persist()
        self._tk_session = False
        return OK

    def _get_data(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """``80 CA 00 01``: the lifecycle byte, see :class:`~sscard.vocab.Lifecycle`;
        ``80 CA 00 02``: the 8-byte chip serial the vendor wrote [ours]."""
        if cmd.p1 != 0x00 or cmd.p2 not in (0x01, 0x02):
            return _sw(SW.REFERENCE_NOT_FOUND)
        if cmd.data:
            return _sw(SW.WRONG_LENGTH)
        if cmd.p2 == 0x02:
            return _sw(SW.OK, self._state.serial)
        block = self._state.app_block
        life = block.lifecycle if block is not None else self._state.lifecycle
        assert life.code is not None  # a card-blocked card answered 6A81 before
        return _sw(SW.OK, bytes((life.code,)))


Handler = Callable[[EmulatedCard, CommandApdu, "bytes | None"], bytes]

# The command table (docs/card.md, "Vocabulary"), by (CLA, INS).
_COMMANDS: dict[tuple[int, int], Handler] = {
    (CLA.ISO, INS.SELECT): EmulatedCard._select,
    (CLA.ISO, INS.READ_RECORD): EmulatedCard._read_record,
    (CLA.ISO, INS.UPDATE_RECORD): EmulatedCard._update_record,
    (CLA.ISO_SM, INS.UPDATE_RECORD): EmulatedCard._update_record,
    (CLA.ISO, INS.READ_BINARY): EmulatedCard._read_binary,
    (CLA.ISO, INS.UPDATE_BINARY): EmulatedCard._update_binary,
    (CLA.ISO_SM, INS.UPDATE_BINARY): EmulatedCard._update_binary,
    (CLA.ISO, INS.GET_CHALLENGE): EmulatedCard._get_challenge,
    (CLA.ISO, INS.EXTERNAL_AUTHENTICATE): EmulatedCard._external_auth,
    (CLA.ISO, INS.INTERNAL_AUTHENTICATE): EmulatedCard._internal_auth,
    (CLA.ISO, INS.VERIFY): EmulatedCard._verify,
    (CLA.PROPRIETARY, INS.CHANGE_PIN): EmulatedCard._change_pin,
    (CLA.PROPRIETARY_SM, INS.PIN_RELOAD): EmulatedCard._reload_pin,
    (CLA.PROPRIETARY_SM, INS.PIN_UNBLOCK): EmulatedCard._pin_unblock,
    (CLA.PROPRIETARY_SM, INS.APPLICATION_BLOCK): EmulatedCard._block,
    (CLA.PROPRIETARY_SM, INS.APPLICATION_UNBLOCK): EmulatedCard._block,
    (CLA.PROPRIETARY_SM, INS.CARD_BLOCK): EmulatedCard._block,
    (CLA.PROPRIETARY, INS.WRITE_KEY): EmulatedCard._write_key_plain,
    (CLA.PROPRIETARY_SM, INS.WRITE_KEY): EmulatedCard._write_key_protected,
    (CLA.PROPRIETARY, INS.CREATE_FILE): EmulatedCard._create_file,
    (CLA.PROPRIETARY, INS.END_PERSONALIZATION): EmulatedCard._end_personalization,
    (CLA.ISO, INS.GET_RESPONSE): EmulatedCard._get_response,
    (CLA.PROPRIETARY, INS.GET_DATA): EmulatedCard._get_data,
}
EmulatedCard._define_commands(_COMMANDS)


def _tag(ef: CardFile, index: int) -> int | None:
    """The tag of record ``index`` (written, or from its template)."""
    record = ef.records[index] if index < len(ef.records) else None
    if record:
        return record[0]
    return ef.templates[index][0] if index < len(ef.templates) else None


def _is_bcd(data: bytes) -> bool:
    return all((b >> 4) <= 9 and (b & 0x0F) <= 9 for b in data)


def _fcp_of(f: CardFile) -> Fcp:
    """The file control parameters of a file of the card's tree (for its FCI)."""
    kind = FileType.DF if f.is_df else f.kind
    if kind == FileType.TRANSPARENT:
        return Fcp(kind, f.fid, f.df_name, f.sfi, size=f.size)
    return Fcp(
        kind, f.fid, f.df_name, f.sfi, record_count=f.record_count, record_length=f.record_length
    )


def blank_state(profile: Profile, serial: bytes, transport_key: bytes) -> CardState:
    """A blank card as the vendor delivers it: MF with the transport key, nothing else."""
    slot = profile.key_scheme.find("MF", KeyType.TK, 0)
    mf = CardFile(kind=FileType.MF, fid=MF_FID)
    mf.keys.append(
        KeyObject(
            KeyType.TK,
            0,
            slot.version,
            slot.algorithm,
            slot.error_limit,
            slot.error_limit,
            transport_key,
        )
    )
    return CardState(profile=profile.name, serial=bytes(serial), lifecycle=Lifecycle.BLANK, mf=mf)
