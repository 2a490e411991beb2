"""Command and response APDUs as immutable values over ``bytes`` (ISO/IEC 7816-4 section 5).

Lengths are numbers of bytes: ``le`` is ``None`` (no Le field) or 1..65536;
256 encodes as ``00`` in a short APDU and 65536 as ``0000`` in an extended one.
Whether an APDU is short or extended follows from Lc and Le unless forced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from struct import Struct
from typing import Literal

from sscard.errors import MalformedResponse
from sscard.i18n import _
from sscard.status import describe
from sscard.vocab import INS, SW, tries_left

SHORT_MAX_LC = 255
SHORT_MAX_LE = 256
EXTENDED_MAX_LC = 65535
EXTENDED_MAX_LE = 65536

# Commands whose data field (and response, for INTERNAL AUTHENTICATE) carries a
# PIN, a key or a cryptogram. Keyed by INS.
SENSITIVE_INS: dict[int, str] = {
    INS.VERIFY: "VERIFY",
    INS.PIN_UNBLOCK: "PIN UNBLOCK",
    INS.RESET_RETRY_COUNTER: "RESET RETRY COUNTER",
    INS.CHANGE_PIN: "CHANGE PIN / PIN RELOAD",
    INS.EXTERNAL_AUTHENTICATE: "EXTERNAL AUTHENTICATE",
    INS.INTERNAL_AUTHENTICATE: "INTERNAL AUTHENTICATE",
    INS.WRITE_KEY: "WRITE KEY",
}
REDACTED = "<redacted>"

# Every other INS reads as its enum name: READ_RECORD → "READ RECORD".
_INS_NAMES: dict[int, str] = {
    **{ins: ins.name.replace("_", " ") for ins in INS},
    **SENSITIVE_INS,
}


def command_name(ins: int) -> str:
    """A readable name for an instruction byte (``INS 3A`` when unknown)."""
    return _INS_NAMES.get(ins, f"INS {ins:02X}")


def _byte(name: str, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must be one byte (0..255), got {value!r}")


def _fits_short(data: bytes, le: int | None) -> bool:
    return len(data) <= SHORT_MAX_LC and (le is None or le <= SHORT_MAX_LE)


def _checked_data(
    cla: int, ins: int, p1: int, p2: int, data: object, le: object, extended: object
) -> bytes:
    """Every check of a command's fields, saying which one fails; the data as bytes."""
    _byte("CLA", cla)
    _byte("INS", ins)
    _byte("P1", p1)
    _byte("P2", p2)
    if not isinstance(data, bytes):
        if isinstance(data, bytearray | memoryview):
            data = bytes(data)
        else:
            raise ValueError(f"data must be bytes, got {type(data).__name__}")
    if len(data) > EXTENDED_MAX_LC:
        raise ValueError(
            f"command data of {len(data)} bytes is too long: Lc can be at most "
            f"{EXTENDED_MAX_LC} (extended APDU)"
        )
    if le is not None:
        if isinstance(le, bool) or not isinstance(le, int):
            raise ValueError(f"Le must be an integer or None, got {le!r}")
        if not 1 <= le <= EXTENDED_MAX_LE:
            raise ValueError(
                f"Le must be 1..{EXTENDED_MAX_LE} bytes or None (no Le field), got {le}; "
                "to ask for up to 256 bytes use le=256 (encoded as 00)"
            )
    if extended is False and not _fits_short(data, le):
        raise ValueError(
            "a short APDU carries at most 255 data bytes and Le at most 256; "
            f"this one has Lc={len(data)}, Le={le} (use the extended encoding)"
        )
    return data


@dataclass(frozen=True, slots=True, init=False)
class CommandApdu:
    """A command APDU; ``encode()`` gives its bytes, ``parse()`` reads them back.

    ``extended`` forces the extended (True) or short (False) encoding; ``None``
    picks short when Lc <= 255 and Le <= 256, else extended.
    """

    cla: int
    ins: int
    p1: int = 0
    p2: int = 0
    data: bytes = b""
    le: int | None = None
    extended: bool | None = None
    # The encoding, kept by the first encode(): the value is immutable, so a command
    # sent again (a template, a retry, a benchmark loop) is not packed again.
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __init__(
        self,
        cla: int,
        ins: int,
        p1: int = 0,
        p2: int = 0,
        data: bytes = b"",
        le: int | None = None,
        extended: bool | None = None,
    ) -> None:
        # Every session builds its commands afresh, so building one is a hot path:
        # one expression accepts the usual command (header bytes, bytes data, short
        # lengths, no forced form) and anything else goes through _checked_data.
        if not (
            isinstance(cla, int)
            and isinstance(ins, int)
            and isinstance(p1, int)
            and isinstance(p2, int)
            and 0 <= cla <= 0xFF
            and 0 <= ins <= 0xFF
            and 0 <= p1 <= 0xFF
            and 0 <= p2 <= 0xFF
            and type(data) is bytes
            and len(data) <= SHORT_MAX_LC
            and (le is None or (type(le) is int and 1 <= le <= SHORT_MAX_LE))
            and extended is None
        ):
            data = _checked_data(cla, ins, p1, p2, data, le, extended)
        _set_cla(self, cla)
        _set_ins(self, ins)
        _set_p1(self, p1)
        _set_p2(self, p2)
        _set_command_data(self, data)
        _set_le(self, le)
        _set_extended(self, extended)
        _set_encoded(self, None)

    @property
    def case(self) -> Literal[1, 2, 3, 4]:
        """ISO 7816-3 case: 1 no data no Le, 2 Le only, 3 data only, 4 both."""
        if self.data:
            return 4 if self.le is not None else 3
        return 2 if self.le is not None else 1

    @property
    def is_extended(self) -> bool:
        """Whether ``encode()`` produces the extended form."""
        if self.extended is not None:
            return self.extended
        return not _fits_short(self.data, self.le)

    @property
    def name(self) -> str:
        """The command's name, for messages (``SELECT``, ``VERIFY`` …)."""
        return command_name(self.ins)

    @property
    def sensitive(self) -> bool:
        """True when the data field carries a PIN, key or cryptogram."""
        return self.ins in SENSITIVE_INS

    def header(self) -> bytes:
        """CLA INS P1 P2."""
        return bytes((self.cla, self.ins, self.p1, self.p2))

    def encode(self) -> bytes:
        """The APDU bytes (ISO 7816-3 section 12.1.3 / ISO 7816-4 section 5.1)."""
        raw = self._encoded
        if raw is None:
            raw = self._encode()
            _set_encoded(self, raw)
        return raw

    def _encode(self) -> bytes:
        data, le = self.data, self.le
        n = len(data)
        if self.extended is None and n <= SHORT_MAX_LC and (le is None or le <= SHORT_MAX_LE):
            # Short (the common case): one C call packs header, Lc, data and Le.
            if n:
                if le is None:
                    pack = _CASE3.get(n) or _short_layout(_CASE3, n, "")
                    return pack(self.cla, self.ins, self.p1, self.p2, n, data)
                pack = _CASE4.get(n) or _short_layout(_CASE4, n, "B")
                return pack(self.cla, self.ins, self.p1, self.p2, n, data, le & 0xFF)  # 256 -> 00
            if le is None:
                return _HEADER(self.cla, self.ins, self.p1, self.p2)
            return _CASE2(self.cla, self.ins, self.p1, self.p2, le & 0xFF)
        head = bytes((self.cla, self.ins, self.p1, self.p2))
        if self.extended or not _fits_short(self.data, self.le):
            body = bytes((0, n >> 8, n & 0xFF)) + data if n else b""
            if le is not None:
                le16 = le & 0xFFFF  # 65536 -> 0000
                body += bytes((le16 >> 8, le16 & 0xFF)) if n else bytes((0, le16 >> 8, le16 & 0xFF))
            return head + body
        if n:  # short, forced with extended=False
            head += bytes((n,)) + data
        if le is not None:
            head += _ONE_BYTE[le & 0xFF]  # 256 -> 00
        return head

    def __bytes__(self) -> bytes:
        return self.encode()

    def with_data(self, data: bytes) -> CommandApdu:
        """This command with ``data`` as its data field (fills a template)."""
        return CommandApdu(self.cla, self.ins, self.p1, self.p2, data, self.le, self.extended)

    @classmethod
    def parse(cls, raw: bytes) -> CommandApdu:
        """Read an encoded APDU back; ``ValueError`` saying why when it is not one."""
        raw = bytes(raw)
        n = len(raw)
        if n < 4:
            raise ValueError(_("a command APDU needs at least 4 header bytes, got {n}").format(n=n))
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        if n == 4:
            return cls(cla, ins, p1, p2, extended=False)
        b = raw[4]
        if n == 5:
            return cls(cla, ins, p1, p2, le=b or 256, extended=False)
        if b != 0:  # short case 3 or 4
            if n == 5 + b:
                return cls(cla, ins, p1, p2, raw[5:], extended=False)
            if n == 6 + b:
                return cls(cla, ins, p1, p2, raw[5:-1], le=raw[-1] or 256, extended=False)
            raise ValueError(
                _("short APDU with Lc={lc} must be {short} or {long} bytes long, got {n}").format(
                    lc=b, short=5 + b, long=6 + b, n=n
                )
            )
        # Extended: the byte after the header is 00.
        if n == 6:
            raise ValueError(
                _("6-byte APDU with a 00 byte after the header is not a valid encoding")
            )
        if n == 7:
            le = (raw[5] << 8) | raw[6]
            return cls(cla, ins, p1, p2, le=le or 65536, extended=True)
        lc = (raw[5] << 8) | raw[6]
        if lc == 0:
            raise ValueError(_("extended APDU with Lc=0000 and a body is not a valid encoding"))
        if n == 7 + lc:
            return cls(cla, ins, p1, p2, raw[7:], extended=True)
        if n == 9 + lc:
            le = (raw[-2] << 8) | raw[-1]
            return cls(cla, ins, p1, p2, raw[7:-2], le=le or 65536, extended=True)
        raise ValueError(
            _("extended APDU with Lc={lc} must be {short} or {long} bytes long, got {n}").format(
                lc=lc, short=7 + lc, long=9 + lc, n=n
            )
        )

    def __repr__(self) -> str:
        data = REDACTED if self.sensitive and self.data else self.data.hex().upper()
        return f"CommandApdu({self.name}, {self.header().hex().upper()}, data={data}, le={self.le})"


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    """A response APDU: data and the two status bytes as one integer ``sw``."""

    data: bytes
    sw: int

    def __post_init__(self) -> None:
        if not 0 <= self.sw <= 0xFFFF:
            raise ValueError(f"status word must be 0000..FFFF, got {self.sw!r}")

    @classmethod
    def parse(cls, raw: bytes) -> ResponseApdu:
        """Split raw response bytes; :class:`MalformedResponse` when shorter than 2 bytes."""
        if type(raw) is not bytes:
            raw = bytes(raw)
        if len(raw) < 2:
            raise MalformedResponse(len(raw))
        # Two bytes always make a valid status word: skip __init__ and __post_init__
        # and fill the slots directly (the hot path of every transmit).
        response = _new_object(cls)
        _set_data(response, raw[:-2])
        _set_sw(response, (raw[-2] << 8) | raw[-1])
        return response

    def encode(self) -> bytes:
        """Data followed by SW1 SW2."""
        return self.data + bytes((self.sw >> 8, self.sw & 0xFF))

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        """True for 9000."""
        return self.sw == SW.OK

    @property
    def meaning(self) -> str:
        """Human meaning of the status word."""
        return describe(self.sw)

    @property
    def tries_left(self) -> int | None:
        """Tries left when the status word is ``63Cx``."""
        return tries_left(self.sw)

    def __repr__(self) -> str:
        return f"ResponseApdu(sw={self.sw:04X}, {len(self.data)} data bytes)"


_ONE_BYTE: tuple[bytes, ...] = tuple(bytes((i,)) for i in range(256))
_HEADER = Struct("4B").pack
_CASE2 = Struct("5B").pack
# Short case 3 and 4 layouts by data length (a layout per length, not an encoding per
# command), built on first use.
_Pack = Callable[..., bytes]
_CASE3: dict[int, _Pack] = {}
_CASE4: dict[int, _Pack] = {}


def _short_layout(layouts: dict[int, _Pack], n: int, le: str) -> _Pack:
    """The packer of a short APDU with ``n`` data bytes (``le``: "B" when Le follows)."""
    pack = layouts[n] = Struct(f"5B{n}s{le}").pack
    return pack


_new_object = object.__new__
# The slots of the frozen dataclasses, written without their __setattr__ guard.
_set_data = ResponseApdu.__dict__["data"].__set__
_set_sw = ResponseApdu.__dict__["sw"].__set__
_set_cla = CommandApdu.__dict__["cla"].__set__
_set_ins = CommandApdu.__dict__["ins"].__set__
_set_p1 = CommandApdu.__dict__["p1"].__set__
_set_p2 = CommandApdu.__dict__["p2"].__set__
_set_command_data = CommandApdu.__dict__["data"].__set__
_set_le = CommandApdu.__dict__["le"].__set__
_set_extended = CommandApdu.__dict__["extended"].__set__
_set_encoded = CommandApdu.__dict__["_encoded"].__set__
