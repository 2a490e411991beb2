"""The national read result: what ``iReadCardBas`` gives a business system (docs/card.md).

Fields in the order of the national terminal interface; :meth:`BasicInfo.national`
is its exact pipe-separated form, trailing pipe included:
``区划代码|社会保障号码|卡号|卡识别码|姓名|复位信息|规范版本|发卡日期|卡有效期|终端机编号|终端设备号|``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class BasicInfo:
    """One card's basic information as terminals report it (all text)."""

    region: str  # 区划代码: the region of the card identification code, 6 digits
    ssn: str  # 社会保障号码
    card_number: str  # 卡号, 9 characters with the check character
    card_id: str  # 卡识别码, 32 hexadecimal digits
    name: str  # 姓名: name ‖ name extension
    atr: str  # 复位信息: the ATR in hexadecimal
    spec_version: str  # 规范版本, e.g. "3.00"
    issue_date: str  # 发卡日期, YYYYMMDD
    expiry_date: str  # 卡有效期, YYYYMMDD
    terminal_number: str = ""  # 终端机编号 (from the PSAM where there is one)
    terminal_device: str = ""  # 终端设备号

    def national(self) -> str:
        """The ``iReadCardBas`` output line: every field, each followed by ``|``."""
        return "".join(f"{getattr(self, f.name)}|" for f in fields(self))

    def to_json(self) -> dict[str, Any]:
        """The same fields by name."""
        return asdict(self)
