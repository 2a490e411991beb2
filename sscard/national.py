"""The error codes of the national terminal interface (docs/cli.md, "National error codes").

Business systems at service points call one national interface (``iReadCardBas``,
``iVerifyPIN``, ...) that answers 0 or a negative error code. :class:`NationalCode`
lists the codes that interface names, each with the wording terminals show
(Chinese) and an English text; a status word the table does not name is the
negated status word (6A82 → −27266), as terminals report it. Every sscard error
carries its code as ``national_code`` (:mod:`sscard.errors`).

Imports only :mod:`sscard.vocab` and :mod:`sscard.i18n`.
"""

from __future__ import annotations

from enum import IntEnum

from sscard.i18n import N_, _
from sscard.vocab import SW

__all__ = ["UNCLASSIFIED", "NationalCode", "code_for_sw", "message_for", "sw_code"]


class NationalCode(IntEnum):
    """The named error codes of the national terminal interface."""

    WRONG_CARD_TYPE = -1
    NO_CARD = -2
    CARD_NOT_POWERED = -3
    NO_ANSWER = -4
    READER_CONNECTION = -11
    NOT_CONNECTED = -12
    BAD_CARD_IDENTIFICATION_CODE = -20
    INTERNAL_AUTHENTICATION_FAILED = -21
    DATA_DIFFER_FROM_CARD = -22
    INVALID_INPUT = -23
    PSAM_KEY_LEVEL_TOO_LOW = -24
    HSM_DISAGREES = -25
    PIN_ENTRY_CANCELLED = -31
    PIN_ENTRY_TIMED_OUT = -32
    PIN_LENGTH_WRONG = -33
    PINS_DIFFER = -34
    INITIAL_PIN_CANNOT_TRANSACT = -35
    CANNOT_CHANGE_TO_INITIAL_PIN = -36
    BAD_DATA_CHARACTERS = -41
    BAD_DATA_LENGTH = -42
    WRONG_PIN = -51
    PIN_BLOCKED = -52
    NO_PSAM = -2201
    PSAM_LACKS_ALGORITHM = -2202
    PSAM_LACKS_RKSSSE = -2203
    HSM_NOT_NEEDED = -2204

    @property
    def chinese(self) -> str:
        """The wording terminals show for this code."""
        return _TEXTS[self][0]

    @property
    def english(self) -> str:
        """An English text for this code."""
        return _TEXTS[self][1]

    @property
    def message(self) -> str:
        """The text of this code in the active language (zh_CN: the terminals' wording)."""
        return _(self.english)


# (Chinese, English). The Chinese wording is that of public terminal pages'
# error tables; HSM_DISAGREES has none there, its wording is ours.
_TEXTS: dict[NationalCode, tuple[str, str]] = {
    NationalCode.WRONG_CARD_TYPE: ("卡类型不正确", N_("wrong card type")),
    NationalCode.NO_CARD: ("无卡", N_("no card")),
    NationalCode.CARD_NOT_POWERED: ("有卡未上电", N_("card present but not powered")),
    NationalCode.NO_ANSWER: ("卡无应答", N_("the card does not answer")),
    NationalCode.READER_CONNECTION: ("读卡器连接错误", N_("reader connection error")),
    NationalCode.NOT_CONNECTED: ("未建立连接", N_("no connection established")),
    NationalCode.BAD_CARD_IDENTIFICATION_CODE: (
        "卡识别码格式错误",
        N_("bad card identification code"),
    ),
    NationalCode.INTERNAL_AUTHENTICATION_FAILED: (
        "内部认证失败（用户卡不合法）",
        N_("internal authentication failed (the card is not genuine)"),
    ),
    NationalCode.DATA_DIFFER_FROM_CARD: (
        "传入数据与卡内不符",
        N_("the data differ from the card's"),
    ),
    NationalCode.INVALID_INPUT: ("传入数据不合法", N_("invalid input data")),
    NationalCode.PSAM_KEY_LEVEL_TOO_LOW: ("PSAM卡密钥级别不够", N_("PSAM key level too low")),
    NationalCode.HSM_DISAGREES: (
        "内部认证结果与加密机不符",
        N_("internal authentication disagrees with the HSM"),
    ),
    NationalCode.PIN_ENTRY_CANCELLED: ("用户取消密码输入", N_("PIN entry cancelled")),
    NationalCode.PIN_ENTRY_TIMED_OUT: ("密码输入操作超时", N_("PIN entry timed out")),
    NationalCode.PIN_LENGTH_WRONG: ("输入密码长度错误", N_("wrong PIN length")),
    NationalCode.PINS_DIFFER: ("两次输入密码不一致", N_("the two PINs entered differ")),
    NationalCode.INITIAL_PIN_CANNOT_TRANSACT: (
        "初始密码不能交易",
        N_("the initial PIN cannot be used to transact"),
    ),
    NationalCode.CANNOT_CHANGE_TO_INITIAL_PIN: (
        "不能改为初始密码",
        N_("the PIN cannot be changed to the initial PIN"),
    ),
    NationalCode.BAD_DATA_CHARACTERS: ("运算数据含非法字符", N_("bad data: invalid characters")),
    NationalCode.BAD_DATA_LENGTH: ("运算数据长度错误", N_("bad data: wrong length")),
    NationalCode.WRONG_PIN: ("PIN校验失败", N_("wrong PIN")),
    NationalCode.PIN_BLOCKED: ("PIN锁定", N_("PIN blocked")),
    NationalCode.NO_PSAM: ("无PSAM卡", N_("no PSAM")),
    NationalCode.PSAM_LACKS_ALGORITHM: (
        "PSAM卡算法不支持",
        N_("the PSAM lacks the card's algorithm"),
    ),
    NationalCode.PSAM_LACKS_RKSSSE: (
        "PSAM卡内没有RKSSSE密钥",
        N_("the PSAM has no RKSSSE key (3.0 cards need it to read basic information)"),
    ),
    NationalCode.HSM_NOT_NEEDED: ("不需要加密机认证", N_("no HSM authentication needed")),
}


def message_for(code: int) -> str | None:
    """The text of national code ``code`` in the active language; None when the table does
    not name it (a bare status word's code)."""
    try:
        return NationalCode(code).message
    except ValueError:
        return None


def sw_code(sw: int) -> int:
    """The status word as terminals report it: 0 for 9000, else minus its value (6A82 → −27266)."""
    if not 0 <= sw <= 0xFFFF:
        raise ValueError(f"status word must be 0000..FFFF, got {sw!r}")
    return 0 if sw == SW.OK else -sw


def code_for_sw(sw: int) -> int:
    """The national code of a status word answered to a PIN or read command.

    63Cx is a wrong PIN (−51; x tries left, :func:`sscard.status.tries_left`),
    6983 a blocked PIN (−52); any other word is :func:`sw_code`.
    """
    if sw & 0xFFF0 == SW.TRIES_LEFT:
        return NationalCode.WRONG_PIN
    if sw == SW.AUTH_METHOD_BLOCKED:
        return NationalCode.PIN_BLOCKED
    return sw_code(sw)


UNCLASSIFIED = sw_code(SW.NO_PRECISE_DIAGNOSIS)
"""−28416 (6F00, no precise diagnosis): an error the national table has no word for,
e.g. a broken audit trail or an unreachable exchange platform ([ours])."""
