"""PsamSecurityModule: the card crypto of a service point, done inside its PSAM.

A PSAM (docs/keys.md, "PSAM") holds city-level keys. For each computation the
module names the key (usage byte, version) and gives the card-level factors
with DELIVERY KEY (``80 1A``); the PSAM derives the card key (or the 3.0
session key) itself, and CIPHER DATA (``80 FA``) enciphers or MACs with it. No
key ever reaches the host. The terminal number (终端机编号) comes from the
PSAM's EF 0016.
"""

from __future__ import annotations

from dataclasses import dataclass

from sscard import errors
from sscard.apdu import CommandApdu, ResponseApdu
from sscard.i18n import _
from sscard.keys.algorithms import block_size
from sscard.keys.psam_scheme import PSAM_TYPES, ref_of, type_code
from sscard.keys.scheme import KeySlot
from sscard.keys.security_module import KeyMeta, SecurityModule
from sscard.national import NationalCode, sw_code
from sscard.transport.base import Transport
from sscard.vocab import CLA, INS, SW, Algorithm, psam_usage

READ_KEY = "SSSE/RK/0A"
CARD_LEVELS = 3  # root → province → city → card: the PSAM holds the city level
CITY_DEPTH = 2

_GET_DATA = INS.GET_DATA
_DELIVERY_KEY = INS.DELIVERY_KEY
_CIPHER_DATA = INS.CIPHER_DATA
_ENCRYPT, _MAC = 0x00, 0x05


class PsamMissing(errors.TokenError, errors.InvalidInput):
    """No PSAM answers in the reader named for it (national −2201)."""

    national = NationalCode.NO_PSAM


class PsamKeyMissing(errors.UnknownKeyReference):
    """The PSAM lacks a key the operation needs (national −24, "key level too low")."""

    national = NationalCode.PSAM_KEY_LEVEL_TOO_LOW

    def __init__(self, ref: str, detail: str) -> None:
        super().__init__(ref)
        self.args = (_("the PSAM has no key {ref}: {detail}").format(ref=ref, detail=detail),)
        self.hint = _("the centre issues PSAMs with the keys each kind of service point needs")


class PsamLacksReadKey(PsamKeyMissing):
    """The PSAM has no RKSSSE: a 3.0 card's basic information cannot be read (−2203)."""

    national = NationalCode.PSAM_LACKS_RKSSSE


class PsamLacksAlgorithm(errors.MechanismUnavailable):
    """The PSAM holds the key only for another algorithm than the card's (−2202)."""

    def __init__(self, ref: str, card_algorithm: str, held: str) -> None:
        super().__init__(_("{algorithm} keys").format(algorithm=card_algorithm))
        self.args = (
            _(
                "the PSAM holds {ref} for {held}, the card needs {algorithm}: "
                "a PSAM serves the cards of one algorithm"
            ).format(ref=ref, held=held, algorithm=card_algorithm),
        )
        self.hint = _("use the PSAM issued for this card generation")


class PsamKeyBlocked(errors.KeyBlocked):
    """The PSAM's key is blocked by its error counter: the PSAM must be issued again."""

    national = sw_code(SW.AUTH_METHOD_BLOCKED)  # −27011, "key locked"

    def __init__(self, ref: str, sw: int) -> None:
        super().__init__(sw, command="PSAM DELIVERY KEY")
        self.args = (
            _("the PSAM's key {ref} is blocked (error counter exhausted; SW {sw:04X})").format(
                ref=ref, sw=sw
            ),
        )
        self.hint = _("the centre must load the PSAM's keys again")


@dataclass(frozen=True, slots=True)
class PsamKey:
    """One key as GET KEY INFO reports it (no value)."""

    ref: str
    type_code: int
    version: int
    algorithm: str
    error_limit: int
    tries_left: int
    kcv: bytes
    levels: int = CARD_LEVELS
    depth: int = CITY_DEPTH
    city: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "ref": self.ref,
            "type": f"{self.type_code:02X}",
            "version": self.version,
            "algorithm": self.algorithm,
            "kcv": self.kcv.hex().upper(),
            "tries_left": self.tries_left,
            "error_limit": self.error_limit,
        }


class Psam:
    """The PSAM in one reader: its serial, terminal number and key directory."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._delivered: tuple[int, int, bytes] | None = None
        try:
            if not transport.connected:
                transport.connect()
            self.serial = self.send(CommandApdu(CLA.PROPRIETARY, _GET_DATA, 0, 0x02, le=8)).data
        except (errors.NoCard, errors.TransportError) as exc:
            raise PsamMissing(_("no PSAM answers: {error}").format(error=exc)).with_hint(
                _("put the service point's PSAM in its reader")
            ) from None
        terminal = self.send(CommandApdu(CLA.ISO, INS.READ_BINARY, 0x96, 0x00, le=6)).data
        self.terminal_number = terminal.hex().upper()
        info = self.send(CommandApdu(CLA.PROPRIETARY, _GET_DATA, 0, 0x03, le=256)).data
        self.city = self.terminal_number[:6] if self.terminal_number[:6].isdigit() else None
        self.keys = tuple(self._keys(info))

    def __repr__(self) -> str:
        return f"Psam(serial={self.serial.hex().upper()}, terminal={self.terminal_number})"

    def _keys(self, info: bytes) -> list[PsamKey]:
        if len(info) % 8:
            raise errors.ProtocolError(
                _("the PSAM's key directory is {length} bytes, not 8×n").format(length=len(info))
            )
        out = []
        for i in range(0, len(info), 8):
            entry = info[i : i + 8]
            algorithm = Algorithm.from_code(entry[2])
            ref = ref_of(entry[0] & 0x1F)
            if ref is None or algorithm is None:
                continue  # the PTK, or something this version does not use
            out.append(
                PsamKey(
                    ref,
                    entry[0] & 0x1F,
                    entry[1],
                    algorithm,
                    entry[3],
                    entry[4],
                    bytes(entry[5:8]),
                    city=self.city,
                )
            )
        return out

    def send(self, command: CommandApdu) -> ResponseApdu:
        """One APDU; a status word other than 9000 is a typed error naming the PSAM."""
        try:
            raw = self.transport.transmit(command.encode())
        except errors.CardRemoved:
            self._delivered = None
            raise PsamMissing(_("the PSAM was removed during the operation")) from None
        response = ResponseApdu.parse(raw)
        if response.sw == SW.OK:
            return response
        if response.sw == SW.AUTH_METHOD_BLOCKED:
            raise errors.KeyBlocked(response.sw, command="PSAM")
        raise errors.ApduError(response.sw, command=f"PSAM {command.ins:02X}")

    def deliver(self, type_code: int, version: int, factors: tuple[bytes, ...]) -> None:
        """DELIVERY KEY: the temporary key = stored key diversified by ``factors`` (skipped
        when that very key is the temporary key already)."""
        data = b"".join(factors)
        wanted = (psam_usage(type_code, len(factors)), version, data)
        if self._delivered == wanted:
            return
        self._delivered = None
        try:
            self.send(CommandApdu(CLA.PROPRIETARY, _DELIVERY_KEY, wanted[0], version, data))
        except errors.KeyBlocked as exc:
            ref = ref_of(type_code) or _("type {code:02X}").format(code=type_code)
            raise PsamKeyBlocked(ref, exc.sw) from None
        self._delivered = wanted

    def cipher(self, mode: int, data: bytes, *, le: int) -> bytes:
        """CIPHER DATA with the temporary key."""
        return self.send(CommandApdu(CLA.PROPRIETARY, _CIPHER_DATA, mode, 0x00, data, le=le)).data


def open_psam(reader: str) -> Psam:
    """The PSAM in ``reader`` (a PC/SC reader name or ``virtual:PATH``); :class:`PsamMissing`
    when the reader or the PSAM is not there."""
    from sscard.transport.resolve import open_transport

    try:
        transport = open_transport(reader)
    except (errors.NoCard, errors.ReaderNotFound) as exc:
        raise PsamMissing(
            _("no PSAM in {reader}: {error}").format(reader=repr(reader), error=exc)
        ).with_hint(_("put the service point's PSAM in its reader")) from None
    return Psam(transport)


class PsamSecurityModule(SecurityModule):
    """A :class:`SecurityModule` whose keys stay in a PSAM; the city is the PSAM's."""

    def __init__(self, psam: Psam, *, city: str | None = None) -> None:
        super().__init__(city=city or psam.city)
        self.psam = psam

    def __repr__(self) -> str:
        return f"PsamSecurityModule({self.psam!r}, city={self.city!r})"

    @property
    def terminal_number(self) -> str:
        """The PSAM's terminal number (national read result field 终端机编号)."""
        return self.psam.terminal_number

    def _lookup(self, ref: str, version: int | None) -> KeyMeta:
        if ref not in PSAM_TYPES:
            raise PsamKeyMissing(ref, _("a PSAM holds no such key"))
        held = [k for k in self.psam.keys if k.ref == ref]
        if version is not None:
            held = [k for k in held if k.version == version]
        if not held:
            missing = PsamLacksReadKey if ref == READ_KEY else PsamKeyMissing
            detail = (
                _("not loaded in version {version}").format(version=version)
                if version
                else _("not loaded")
            )
            raise missing(ref, detail)
        return max(held, key=lambda k: k.version)

    def _mismatch(self, slot: KeySlot, meta: KeyMeta) -> errors.SscardError:
        return PsamLacksAlgorithm(meta.ref, slot.algorithm, meta.algorithm)

    def _card_encrypt(self, meta: KeyMeta, factors: tuple[bytes, ...], blocks: bytes) -> bytes:
        if len(blocks) % block_size(meta.algorithm):
            raise errors.InvalidInput(_("data is not block-aligned"), [("data", _("whole blocks"))])
        self.psam.deliver(type_code(meta.ref), meta.version, factors)
        return self.psam.cipher(_ENCRYPT, blocks, le=len(blocks))

    def _card_mac(self, meta: KeyMeta, factors: tuple[bytes, ...], data: bytes, iv: bytes) -> bytes:
        self.psam.deliver(type_code(meta.ref), meta.version, factors)
        return self.psam.cipher(_MAC, bytes(iv) + bytes(data), le=4)

    def _card_key(self, meta: KeyMeta, factors: tuple[bytes, ...]) -> bytes:
        raise errors.OperationFailed(
            _(
                "a PSAM never gives out a key ({ref}): loading keys into a card needs the "
                "issuing centre's key store"
            ).format(ref=meta.ref)
        )
