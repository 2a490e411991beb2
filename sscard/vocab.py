"""The card's vocabulary, shared by the card side and the host side (docs/card.md, "Vocabulary").

Status words, instruction bytes, lifecycle states, file types, key types and
algorithms as enums, in the manner of yubikit's ``SW`` and ``INS``. ``SW`` and
``INS`` are ``IntEnum`` (they compare equal to the bare numbers); the others are
``StrEnum`` whose values are the strings profiles, card images, JSON and the CLI
have always used, so a member prints, serializes and compares as that string.

This module sits at the bottom of the layering: it imports nothing from sscard.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class SW(IntEnum):
    """Status words the card answers (ISO 7816-4 and the card's own, docs/card.md)."""

    OK = 0x9000
    END_OF_FILE = 0x6282  # fewer than Le bytes before the end of the EF
    FILE_DEACTIVATED = 0x6283  # SELECT of a temporarily blocked application
    TRIES_LEFT = 0x63C0  # 63Cx: wrong PIN or cryptogram, x tries left (see tries_left_sw)
    WRONG_LENGTH = 0x6700
    INCOMPATIBLE_FILE = 0x6981  # command incompatible with the file structure
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983  # PIN or key blocked
    CHALLENGE_UNUSABLE = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    NO_CURRENT_EF = 0x6986
    SM_DATA_MISSING = 0x6987
    BAD_MAC = 0x6988
    WRONG_DATA = 0x6A80
    FUNC_NOT_SUPPORTED = 0x6A81  # also: the card is blocked
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    INCORRECT_P1P2 = 0x6A86
    REFERENCE_NOT_FOUND = 0x6A88
    NOT_ENOUGH_MEMORY = 0x6A84  # the PSAM holds no more keys
    FILE_EXISTS = 0x6A89
    WRONG_OFFSET = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00
    APPLICATION_BLOCKED = 0x9303  # the application is blocked for good

    def encode(self) -> bytes:
        """SW1 SW2 as they end a response."""
        return self.to_bytes(2, "big")


MORE_DATA_SW1 = 0x61  # 61xx: xx more bytes wait for GET RESPONSE
WRONG_LE_SW1 = 0x6C  # 6Cxx: resend with Le = xx


def tries_left_sw(n: int) -> int:
    """The ``63Cx`` status word for ``n`` tries left (x saturates at 15)."""
    return SW.TRIES_LEFT | min(max(n, 0), 15)


def tries_left(sw: int) -> int | None:
    """Tries left encoded in a ``63Cx`` status word (x is a hex nibble: 63CA is 10)."""
    if sw & 0xFFF0 == SW.TRIES_LEFT:
        return sw & 0x0F
    return None


class INS(IntEnum):
    """Instruction bytes of the card's commands."""

    CARD_BLOCK = 0x16
    APPLICATION_UNBLOCK = 0x18
    DELIVERY_KEY = 0x1A  # PSAM only: derive the temporary key
    APPLICATION_BLOCK = 0x1E
    VERIFY = 0x20
    PIN_UNBLOCK = 0x24
    RESET_RETRY_COUNTER = 0x2C
    CHANGE_PIN = 0x5E  # CLA 80: CHANGE PIN; CLA 84: PIN RELOAD
    EXTERNAL_AUTHENTICATE = 0x82
    GET_CHALLENGE = 0x84
    INTERNAL_AUTHENTICATE = 0x88
    SELECT = 0xA4
    READ_BINARY = 0xB0
    READ_RECORD = 0xB2
    GET_RESPONSE = 0xC0
    GET_DATA = 0xCA
    WRITE_KEY = 0xD4
    UPDATE_BINARY = 0xD6
    UPDATE_RECORD = 0xDC
    CREATE_FILE = 0xE0
    END_PERSONALIZATION = 0xEA
    CIPHER_DATA = 0xFA  # PSAM only: encipher or MAC with the temporary key

    PIN_RELOAD = 0x5E  # alias of CHANGE_PIN (the class byte tells them apart)
    END_ISSUANCE = 0xEA  # alias of END_PERSONALIZATION: the PSAM's name for it


class CLA(IntEnum):
    """Class bytes: ISO (00) or proprietary (80), each plain or line-protected (+04)."""

    ISO = 0x00
    ISO_SM = 0x04
    PROPRIETARY = 0x80
    PROPRIETARY_SM = 0x84


SM_CLASS_BIT = 0x04  # the secure-messaging (line protection) bit of CLA


class Lifecycle(StrEnum):
    """The card's lifecycle as GET DATA ``80 CA 00 01`` reports it [ours] (docs/card.md).

    ``code`` is the byte GET DATA answers; a card-blocked card answers 6A81
    instead, so CARD_BLOCKED has no code.
    """

    BLANK = "BLANK"
    PERSONALIZATION = "PERSONALIZATION"
    ISSUED = "ISSUED"
    APP_BLOCKED_TEMPORARY = "APP_BLOCKED_TEMPORARY"
    APP_BLOCKED_PERMANENT = "APP_BLOCKED_PERMANENT"
    CARD_BLOCKED = "CARD_BLOCKED"

    @property
    def code(self) -> int | None:
        """The GET DATA byte of this state (None for CARD_BLOCKED)."""
        return _LIFECYCLE_CODES.get(self)

    @classmethod
    def from_code(cls, code: int) -> Lifecycle | None:
        """The state a GET DATA byte stands for; None for an unknown byte."""
        return next((life for life, c in _LIFECYCLE_CODES.items() if c == code), None)

    @property
    def personalized(self) -> bool:
        """False while the card is BLANK or in PERSONALIZATION."""
        return self not in (Lifecycle.BLANK, Lifecycle.PERSONALIZATION)


_LIFECYCLE_CODES: dict[Lifecycle, int] = {
    Lifecycle.BLANK: 0x01,
    Lifecycle.PERSONALIZATION: 0x02,
    Lifecycle.ISSUED: 0x03,
    Lifecycle.APP_BLOCKED_TEMPORARY: 0x04,
    Lifecycle.APP_BLOCKED_PERMANENT: 0x05,
}

BLOCKED_LIFECYCLES = (
    Lifecycle.CARD_BLOCKED,
    Lifecycle.APP_BLOCKED_TEMPORARY,
    Lifecycle.APP_BLOCKED_PERMANENT,
)


class AppBlock(StrEnum):
    """How the application is blocked (APPLICATION BLOCK P2 00 / 01)."""

    TEMPORARY = "temporary"
    PERMANENT = "permanent"

    @property
    def lifecycle(self) -> Lifecycle:
        """The lifecycle GET DATA reports for an ISSUED card blocked this way."""
        return Lifecycle("APP_BLOCKED_" + self.value.upper())


class FileType(StrEnum):
    """File types of profiles and of the card's file tree (docs/layout.md)."""

    MF = "mf"
    DDF = "ddf"
    DF = "df"
    TRANSPARENT = "transparent"
    LINEAR_FIXED = "linear-fixed"
    LINEAR_VARIABLE = "linear-variable"

    @property
    def is_df(self) -> bool:
        """MF, DDF and DF."""
        return self in (FileType.MF, FileType.DDF, FileType.DF)

    @property
    def is_record(self) -> bool:
        """Linear fixed and linear variable EFs."""
        return self in (FileType.LINEAR_FIXED, FileType.LINEAR_VARIABLE)


class KeyType(StrEnum):
    """Key types of the key scheme (docs/keys.md); ``code`` is the WRITE KEY record byte [ours]."""

    MK = "MK"
    EAK = "EAK"
    IAK = "IAK"
    PUK = "PUK"
    RPK = "RPK"
    STK = "STK"
    TK = "TK"
    RK = "RK"

    @property
    def code(self) -> int:
        """The key-record type byte."""
        return _KEY_TYPE_INFO[self][0]

    @property
    def description(self) -> str:
        """What the key is for."""
        return _KEY_TYPE_INFO[self][1]

    @classmethod
    def from_code(cls, code: int) -> KeyType | None:
        """The key type of a key-record byte; None for an unknown byte."""
        return next((t for t, (c, _) in _KEY_TYPE_INFO.items() if c == code), None)


_KEY_TYPE_INFO: dict[KeyType, tuple[int, str]] = {
    KeyType.MK: (0x01, "master control key (create files, load keys in the DF)"),
    KeyType.EAK: (0x02, "external authentication key (access rights in the DF)"),
    KeyType.IAK: (0x03, "internal authentication key (proves the card is genuine)"),
    KeyType.PUK: (0x04, "PIN unblock key"),
    KeyType.RPK: (0x05, "PIN reload key"),
    KeyType.STK: (0x06, "line protection key (MAC / encipherment)"),
    KeyType.TK: (0x07, "transport key of a blank card"),
    KeyType.RK: (0x08, "read key of basic information (RKSSSE, 3.0 cards)"),
}


class Algorithm(StrEnum):
    """Block ciphers of the card's keys; ``code`` is the WRITE KEY record byte [ours]."""

    TDES = "3des"
    SM4 = "sm4"

    @property
    def code(self) -> int:
        """The key-record algorithm byte."""
        return 0x01 if self is Algorithm.TDES else 0x02

    @classmethod
    def from_code(cls, code: int) -> Algorithm | None:
        """The algorithm of a key-record byte; None for an unknown byte."""
        return next((a for a in cls if a.code == code), None)

    @property
    def indicator(self) -> int:
        """The algorithm indicator in the SSSE FCI (``9F0C 03 86 01 xx``; docs/card.md)."""
        return 0x01 if self is Algorithm.TDES else 0x03

    @classmethod
    def from_indicator(cls, indicator: int | None) -> Algorithm | None:
        """The algorithm an indicator names: 01 DES/3DES (also when absent), 03 SM4.

        02 (SSF33) and unknown values give None: sscard has no such cards.
        """
        if indicator is None:
            return Algorithm.TDES
        return next((a for a in cls if a.indicator == indicator), None)


# --- PSAM (docs/card.md, "The emulated PSAM") ----------------------------------------

PSAM_KEY_REFS: dict[int, str] = {
    0x01: "SSSE/EAK/01",
    0x02: "SSSE/IAK/01",
    0x03: "SSSE/PUK/01",
    0x04: "SSSE/RPK/01",
    0x05: "SSSE/STK/01",
    0x06: "SSSE/RK/0A",
    **{0x08 + n: f"DF0{n}/EAK/01" for n in range(1, 6)},
    **{0x10 + n: f"DF0{n}/STK/01" for n in range(1, 6)},
}
"""PSAM key type code (bits 5..1 of a usage byte) → the card key slot it derives [ours]."""

PSAM_PTK_TYPE = 0x1F
"""The type code of the PSAM's own transport/issuer key (PTK): it loads keys, derives nothing."""


def psam_usage(type_code: int, levels: int) -> int:
    """The usage byte of a PSAM key: ``levels`` (bits 8..6) below the stored key, the type
    code (bits 5..1)."""
    if not 0 <= levels <= 7 or not 0 <= type_code <= 0x1F:
        raise ValueError("a usage byte holds levels 0..7 and a type code 00..1F")
    return (levels << 5) | type_code


def usage_type(usage: int) -> int:
    """The key type code of a PSAM usage byte."""
    return usage & 0x1F


def usage_levels(usage: int) -> int:
    """The diversification levels a PSAM usage byte asks for."""
    return usage >> 5
