"""The emulated PSAM: the secure element of a service point (docs/card.md, "The emulated PSAM").

A PSAM holds city-level keys, never a root, and never lets a key out: a
terminal asks it to derive the temporary key of one card (DELIVERY KEY with
the card's diversification factors) and then to encipher or MAC with it
(CIPHER DATA). Keys come in under the PSAM's own transport/issuer key (PTK)
in an issuance session opened by EXTERNAL AUTHENTICATE.

``EmulatedPsam`` is a sibling of :class:`~sscard.applets.cos.EmulatedCard`
(both extend :class:`~sscard.applets.chip.EmulatedChip`): a
:class:`~sscard.transport.base.CardLike` over an encrypted, atomically written
image (:class:`~sscard.applets.image.SealedImage` with :data:`PSAM_CODEC`),
locked while powered; every APDU gets a status word and ``process`` never
raises; the PTK's error counter is persisted before the comparison; MACs and
cryptograms are compared in constant time; the challenge serves the next
command only. Key values never appear in logs or reprs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sscard.apdu import CommandApdu
from sscard.applets.chip import OK, EmulatedChip, _Sw, _sw
from sscard.applets.cos import _SELECT_ANSWERS, MF_FID, _is_bcd
from sscard.applets.image import (
    ImageCodec,
    ImageKind,
    MemoryImage,
    SealedImage,
    SecretKey,
    WrongImageKind,
)
from sscard.errors import InvalidInput
from sscard.i18n import _
from sscard.keys.algorithms import (
    FACTOR_LENGTH,
    KEY_LENGTH,
    auth_cryptogram,
    block_size,
    constant_time_equal,
    decipher_record,
    diversify_path,
    ecb_encrypt,
    kcv,
    line_mac,
)
from sscard.layout.fcp import Fcp, encode_fci
from sscard.vocab import (
    CLA,
    INS,
    PSAM_KEY_REFS,
    PSAM_PTK_TYPE,
    SW,
    Algorithm,
    FileType,
    Lifecycle,
    usage_levels,
    usage_type,
)

PSAM_ATR = bytes.fromhex("3B8E800100" + b"SSCARDPSAM".hex() + "039000")
"""The PSAM's vendor-like T=1 ATR without its TCK [ours]: 14 historical bytes, category
00, ``'SSCARDPSAM'``, status indicator ``03 90 00``."""

PSAM_VERSION = 0x01
"""The version byte of EF 0015."""
ALGORITHM_SUPPORT = 0x03
"""EF 0015's algorithm support bitmap: bit 0 3DES, bit 1 SM4."""
MAX_KEYS = 31
"""Keys a PSAM holds, the PTK included (GET KEY INFO answers 8 bytes per key, at most 256)."""
TERMINAL_FID, TERMINAL_SFI, TERMINAL_SIZE = b"\x00\x16", 0x16, 6
INFO_FID, INFO_SFI, INFO_SIZE = b"\x00\x15", 0x15, 14
KEY_RECORD_LENGTH = 20  # usage ‖ version ‖ algorithm ‖ error limit ‖ value (16)
KEY_INFO_LENGTH = 8
_LOADABLE_TYPES = frozenset((*PSAM_KEY_REFS, PSAM_PTK_TYPE))

# GET DATA 80 CA 00 P2 [ours]
GET_DATA_LIFECYCLE, GET_DATA_SERIAL, GET_DATA_KEY_INFO = 0x01, 0x02, 0x03
# CIPHER DATA P1
CIPHER_ENCRYPT, CIPHER_MAC = 0x00, 0x05


@dataclass(repr=False)
class PsamKey(SecretKey):
    """One PSAM key: its type code and version identify it; the value never leaves."""

    type: int
    version: int
    algorithm: Algorithm
    error_limit: int
    tries_left: int
    value: bytes

    def _name(self) -> str:
        return f"type {self.type:02X}"

    def info(self) -> bytes:
        """The GET KEY INFO entry: usage ‖ version ‖ algorithm ‖ limit ‖ tries left ‖ KCV."""
        head = bytes(
            (self.type, self.version, self.algorithm.code, self.error_limit, self.tries_left)
        )
        return head + kcv(self.value, algorithm=self.algorithm)


@dataclass
class PsamState:
    """Everything the PSAM remembers across power cycles."""

    serial: bytes
    lifecycle: Lifecycle  # BLANK or ISSUED
    keys: list[PsamKey]  # the PTK (type 1F) and the loaded keys
    terminal: bytes = bytes(TERMINAL_SIZE)  # terminal number, 12 BCD digits
    atr: bytes = b""  # empty: the default PSAM ATR

    @property
    def ptk(self) -> PsamKey:
        return next(k for k in self.keys if k.type == PSAM_PTK_TYPE)

    def key(self, type: int, version: int) -> PsamKey | None:
        return next((k for k in self.keys if (k.type, k.version) == (type, version)), None)


def psam_to_bytes(state: PsamState) -> bytes:
    """Serialize the state (clear JSON; only ever encrypted before it leaves memory)."""
    doc = {
        "kind": ImageKind.PSAM,
        "serial": state.serial.hex(),
        "lifecycle": state.lifecycle,
        "terminal": state.terminal.hex(),
        "atr": state.atr.hex(),
        "keys": [
            {
                "type": k.type,
                "version": k.version,
                "algorithm": k.algorithm,
                "error_limit": k.error_limit,
                "tries_left": k.tries_left,
                "value": k.value.hex(),
            }
            for k in state.keys
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def psam_from_bytes(raw: bytes, source: str | None = None) -> PsamState:
    source = source or _("the PSAM image")
    doc = json.loads(raw)
    if doc.get("kind", ImageKind.CARD) != ImageKind.PSAM:
        raise WrongImageKind(Path(source), ImageKind(doc.get("kind", "card")), ImageKind.PSAM)
    keys = [
        PsamKey(
            k["type"],
            k["version"],
            Algorithm(k["algorithm"]),
            k["error_limit"],
            k["tries_left"],
            bytes.fromhex(k["value"]),
        )
        for k in doc["keys"]
    ]
    if sum(k.type == PSAM_PTK_TYPE for k in keys) != 1:
        raise ValueError("a PSAM holds exactly one PTK")
    return PsamState(
        serial=bytes.fromhex(doc["serial"]),
        lifecycle=Lifecycle(doc["lifecycle"]),
        keys=keys,
        terminal=bytes.fromhex(doc["terminal"]),
        atr=bytes.fromhex(doc.get("atr", "")),
    )


PSAM_CODEC = ImageCodec(ImageKind.PSAM, psam_to_bytes, psam_from_bytes)


class PsamStorage(Protocol):
    """Where the PSAM's EEPROM lives: each ``commit`` happens entirely or not at all."""

    def load(self) -> PsamState: ...

    def commit(self, state: PsamState) -> None: ...


def psam_file(path: str | os.PathLike[str], *, durable: bool = True) -> SealedImage[PsamState]:
    """The PSAM image at ``path`` (encrypted, atomic; refuses a card image)."""
    return SealedImage(path, PSAM_CODEC, durable=durable)


def psam_memory(state: PsamState) -> MemoryImage[PsamState]:
    """A PSAM's EEPROM in memory (tests)."""
    return MemoryImage(state, PSAM_CODEC)


def blank_psam(
    serial: bytes, ptk: bytes, *, algorithm: Algorithm, version: int, error_limit: int
) -> PsamState:
    """A PSAM as the vendor delivers it: the PTK, no other key, terminal number zero."""
    if len(serial) != FACTOR_LENGTH or len(ptk) != KEY_LENGTH:
        raise InvalidInput(
            _("bad PSAM"),
            [
                ("serial", _("{count} bytes").format(count=8)),
                ("ptk", _("{count} bytes").format(count=16)),
            ],
        )
    key = PsamKey(PSAM_PTK_TYPE, version, algorithm, error_limit, error_limit, bytes(ptk))
    return PsamState(serial=bytes(serial), lifecycle=Lifecycle.BLANK, keys=[key])


@dataclass
class _Volatile:
    """RAM: cleared at power on and off."""

    ef: bytes | None = None  # FID of the current EF
    issuance: bool = False  # EXTERNAL AUTHENTICATE with the PTK succeeded
    temporary: PsamKey | None = None  # the key DELIVERY KEY derived
    discarded: bool = False  # the last DELIVERY KEY failed: its predecessor is gone


class EmulatedPsam(EmulatedChip[PsamState]):
    """The emulated PSAM over a :class:`PsamStorage`."""

    DEFAULT_ATR = PSAM_ATR
    NAME = "PSAM"

    _ram: _Volatile

    def _reset_volatile(self) -> None:
        """Power on and off: sessions and the temporary key are gone."""
        super()._reset_volatile()
        self._ram = _Volatile()

    # --- files ------------------------------------------------------------------------

    def _ef_data(self, fid: bytes) -> bytes:
        if fid == TERMINAL_FID:
            return self._state.terminal
        state = self._state
        return state.serial + bytes((PSAM_VERSION, ALGORITHM_SUPPORT)) + bytes(4)

    def _select(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """SELECT ``00 A4 00|02 P2 02 FID`` (MF 3F00, EF 0015, EF 0016); P1 00 without
        data selects the MF. P2 00 FCI, 04 FCP, 0C nothing."""
        if cmd.p2 not in _SELECT_ANSWERS or cmd.p1 not in (0x00, 0x02):
            return _sw(SW.INCORRECT_P1P2)
        fid = cmd.data or MF_FID
        if len(fid) != 2 or (cmd.p1 == 0x02 and fid == MF_FID):
            return _sw(SW.WRONG_LENGTH if len(fid) != 2 else SW.FILE_NOT_FOUND)
        if fid == MF_FID:
            self._ram.ef = None
            fcp = Fcp(FileType.DF, MF_FID)
        elif fid in _EFS:
            self._ram.ef = fid
            sfi, size = _EFS[fid]
            fcp = Fcp(FileType.TRANSPARENT, fid, sfi=sfi, size=size)
        else:
            return _sw(SW.FILE_NOT_FOUND)
        template = _SELECT_ANSWERS[cmd.p2]
        return _sw(SW.OK, encode_fci(fcp, template=template) if template is not None else b"")

    def _binary_ef(self, p1: int, p2: int) -> tuple[bytes, int]:
        """The EF and offset of READ / UPDATE BINARY: P1 = 80 | SFI and P2 the offset,
        else the current EF and offset P1 P2."""
        if p1 & 0x80:
            if p1 & 0x60:
                raise _Sw(SW.INCORRECT_P1P2)
            fid = next((f for f, (sfi, _kind) in _EFS.items() if sfi == p1 & 0x1F), None)
            if fid is None:
                raise _Sw(SW.FILE_NOT_FOUND)
            self._ram.ef, offset = fid, p2
        else:
            offset = (p1 << 8) | p2
        if self._ram.ef is None:
            raise _Sw(SW.NO_CURRENT_EF)
        if offset > _EFS[self._ram.ef][1]:
            raise _Sw(SW.WRONG_OFFSET)
        return self._ram.ef, offset

    def _read_binary(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """READ BINARY, free for both EFs (e.g. ``00 B0 96 00 06``: the terminal number)."""
        if cmd.data:
            return _sw(SW.WRONG_LENGTH)
        fid, offset = self._binary_ef(cmd.p1, cmd.p2)
        want = cmd.le or 256
        chunk = self._ef_data(fid)[offset : offset + want]
        if len(chunk) < want and cmd.le not in (None, 256):
            return _sw(SW.END_OF_FILE, chunk)
        return _sw(SW.OK, chunk)

    def _update_binary(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """UPDATE BINARY of EF 0016 (BCD digits), in the issuance session only."""
        fid, offset = self._binary_ef(cmd.p1, cmd.p2)
        if fid != TERMINAL_FID or not self._ram.issuance:
            return _sw(SW.SECURITY_STATUS_NOT_SATISFIED)
        data = cmd.data
        if not data or offset + len(data) > TERMINAL_SIZE:
            return _sw(SW.WRONG_LENGTH)
        if not _is_bcd(data):
            return _sw(SW.WRONG_DATA)
        terminal = bytearray(self._state.terminal)
        terminal[offset : offset + len(data)] = data
        self._state.terminal = bytes(terminal)
        self._persist()
        return OK

    # --- issuance ---------------------------------------------------------------------

    def _spend_ptk(self, matches: Callable[[], bool], fail: SW | None) -> None:
        """Spend a try of the PTK; on a mismatch answer ``fail`` (None: 63Cx)."""
        self._check_key(self._state.ptk, matches, fail)

    def _external_auth(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """EXTERNAL AUTHENTICATE ``00 82 00 00 Lc E_PTK(challenge)``: opens the issuance
        session until power off or END ISSUANCE; a wrong cryptogram answers 63Cx."""
        if cmd.p1 or cmd.p2:
            return _sw(SW.INCORRECT_P1P2)
        ptk = self._state.ptk
        if len(cmd.data) != block_size(ptk.algorithm):
            return _sw(SW.WRONG_LENGTH)
        if ch is None:
            return _sw(SW.CHALLENGE_UNUSABLE)
        expected = auth_cryptogram(ptk.value, ch, algorithm=ptk.algorithm)
        self._ram.issuance = False
        self._spend_ptk(lambda: constant_time_equal(expected, cmd.data), None)
        self._ram.issuance = True
        return OK

    def _write_key(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """WRITE KEY ``84 D4 01 usage Lc E_PTK(record) ‖ MAC``, in the issuance session.

        record = usage ‖ version ‖ algorithm ‖ error limit ‖ value (16), enciphered like
        the card's key records; the MAC (line MAC under the PTK, the challenge as IV)
        covers ``84 D4 01 usage Lc`` ‖ the enciphered record. A bad MAC spends a try of
        the PTK (6988). Error limit 00 deletes the key [ours]; type 1F replaces the PTK.
        """
        if cmd.p1 != 0x01 or usage_type(cmd.p2) not in _LOADABLE_TYPES:
            return _sw(SW.INCORRECT_P1P2)
        if not self._ram.issuance:
            return _sw(SW.SECURITY_STATUS_NOT_SATISFIED)
        ptk = self._state.ptk
        data = cmd.data
        if len(data) < 4 + block_size(ptk.algorithm):
            return _sw(SW.WRONG_LENGTH)
        if ch is None:
            return _sw(SW.CHALLENGE_UNUSABLE)
        body, mac = data[:-4], data[-4:]
        mac_input = cmd.header() + bytes((len(data),)) + body
        self._spend_ptk(
            lambda: constant_time_equal(
                line_mac(ptk.value, mac_input, iv=ch, algorithm=ptk.algorithm), mac
            ),
            SW.BAD_MAC,
        )
        try:
            record = decipher_record(ptk.value, body, algorithm=ptk.algorithm)
        except InvalidInput:
            return _sw(SW.WRONG_DATA)
        return self._install_key(cmd.p2, record)

    def _install_key(self, usage: int, record: bytes) -> bytes:
        if len(record) != KEY_RECORD_LENGTH or record[0] != usage:
            return _sw(SW.WRONG_DATA)
        type, version, limit = usage_type(usage), record[1], record[3]
        algorithm = Algorithm.from_code(record[2])
        if algorithm is None or version == 0:
            return _sw(SW.WRONG_DATA)
        state = self._state
        old = state.ptk if type == PSAM_PTK_TYPE else state.key(type, version)
        if limit == 0:  # delete
            if old is None or type == PSAM_PTK_TYPE:
                return _sw(SW.REFERENCE_NOT_FOUND if old is None else SW.WRONG_DATA)
            state.keys.remove(old)
        else:
            if old is None and len(state.keys) >= MAX_KEYS:
                return _sw(SW.NOT_ENOUGH_MEMORY)
            new = PsamKey(type, version, algorithm, limit, limit, bytes(record[4:]))
            state.keys = [k for k in state.keys if k is not old] + [new]
        self._persist()
        return OK

    def _end_issuance(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """END ISSUANCE ``80 EA 00 00``: the PSAM is ISSUED; the session ends."""
        if cmd.p1 or cmd.p2:
            return _sw(SW.INCORRECT_P1P2)
        if cmd.data:
            return _sw(SW.WRONG_LENGTH)
        if not self._ram.issuance:
            return _sw(SW.SECURITY_STATUS_NOT_SATISFIED)
        if self._state.lifecycle != Lifecycle.ISSUED:
            self._state.lifecycle = Lifecycle.ISSUED
            self._persist()
        self._ram.issuance = False
        return OK

    # --- service ----------------------------------------------------------------------

    def _delivery_key(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """DELIVERY KEY ``80 1A usage version Lc factors``: the temporary key = the stored
        key diversified by each 8-byte factor in order (levels = usage bits 8..6).

        Any failure discards the previous temporary key.
        """
        ram = self._ram
        ram.temporary, ram.discarded = None, True
        if self._state.lifecycle != Lifecycle.ISSUED:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        if cmd.p2 == 0:
            return _sw(SW.INCORRECT_P1P2)
        if len(cmd.data) != FACTOR_LENGTH * usage_levels(cmd.p1):
            return _sw(SW.WRONG_LENGTH)
        type = usage_type(cmd.p1)
        key = None if type == PSAM_PTK_TYPE else self._state.key(type, cmd.p2)
        if key is None:
            return _sw(SW.REFERENCE_NOT_FOUND)
        if key.tries_left <= 0:
            return _sw(SW.AUTH_METHOD_BLOCKED)
        factors = [cmd.data[i : i + FACTOR_LENGTH] for i in range(0, len(cmd.data), 8)]
        value = diversify_path(key.value, factors, algorithm=key.algorithm)
        ram.temporary = PsamKey(type, cmd.p2, key.algorithm, 0, 0, value)
        ram.discarded = False
        return OK

    def _cipher_data(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """CIPHER DATA ``80 FA P1 00 Lc data Le`` with the temporary key.

        P1 00: ECB encipherment of block-aligned data. P1 05: data = IV (8) ‖ message;
        the 4-byte line MAC of the message (padding inside; SM4 zero-extends the IV).
        """
        if cmd.p1 not in (CIPHER_ENCRYPT, CIPHER_MAC) or cmd.p2:
            return _sw(SW.INCORRECT_P1P2)
        if self._state.lifecycle != Lifecycle.ISSUED:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        key = self._ram.temporary
        if key is None:
            return _sw(
                SW.CHALLENGE_UNUSABLE if self._ram.discarded else SW.CONDITIONS_NOT_SATISFIED
            )
        data, algorithm = cmd.data, key.algorithm
        if cmd.p1 == CIPHER_ENCRYPT:
            if not data or len(data) % block_size(algorithm):
                return _sw(SW.WRONG_LENGTH)
            return _sw(SW.OK, ecb_encrypt(key.value, data, algorithm=algorithm))
        if len(data) < FACTOR_LENGTH:
            return _sw(SW.WRONG_LENGTH)
        iv, message = data[:FACTOR_LENGTH], data[FACTOR_LENGTH:]
        return _sw(SW.OK, line_mac(key.value, message, iv=iv, algorithm=algorithm))

    def _get_data(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """GET DATA ``80 CA 00 P2`` [ours]: 01 lifecycle byte, 02 chip serial (8 B),
        03 key info (8 B per key, GET KEY INFO)."""
        if cmd.p1 or cmd.p2 not in (GET_DATA_LIFECYCLE, GET_DATA_SERIAL, GET_DATA_KEY_INFO):
            return _sw(SW.REFERENCE_NOT_FOUND)
        if cmd.data:
            return _sw(SW.WRONG_LENGTH)
        state = self._state
        if cmd.p2 == GET_DATA_SERIAL:
            return _sw(SW.OK, state.serial)
        if cmd.p2 == GET_DATA_LIFECYCLE:
            code = state.lifecycle.code
            assert code is not None
            return _sw(SW.OK, bytes((code,)))
        keys = sorted(state.keys, key=lambda k: (k.type, k.version))
        return _sw(SW.OK, b"".join(k.info() for k in keys))


_EFS: dict[bytes, tuple[int, int]] = {
    TERMINAL_FID: (TERMINAL_SFI, TERMINAL_SIZE),
    INFO_FID: (INFO_SFI, INFO_SIZE),
}

Handler = Callable[[EmulatedPsam, CommandApdu, "bytes | None"], bytes]

# The PSAM's command table (docs/card.md, "The emulated PSAM"), by (CLA, INS).
_COMMANDS: dict[tuple[int, int], Handler] = {
    (CLA.ISO, INS.SELECT): EmulatedPsam._select,
    (CLA.ISO, INS.READ_BINARY): EmulatedPsam._read_binary,
    (CLA.ISO, INS.UPDATE_BINARY): EmulatedPsam._update_binary,
    (CLA.ISO, INS.GET_CHALLENGE): EmulatedPsam._get_challenge,
    (CLA.ISO, INS.EXTERNAL_AUTHENTICATE): EmulatedPsam._external_auth,
    (CLA.PROPRIETARY_SM, INS.WRITE_KEY): EmulatedPsam._write_key,
    (CLA.PROPRIETARY, INS.END_ISSUANCE): EmulatedPsam._end_issuance,
    (CLA.PROPRIETARY, INS.DELIVERY_KEY): EmulatedPsam._delivery_key,
    (CLA.PROPRIETARY, INS.CIPHER_DATA): EmulatedPsam._cipher_data,
    (CLA.PROPRIETARY, INS.GET_DATA): EmulatedPsam._get_data,
    (CLA.ISO, INS.GET_RESPONSE): EmulatedPsam._get_response,
}
EmulatedPsam._define_commands(_COMMANDS)
