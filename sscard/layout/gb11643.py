"""Citizen identification numbers (GB 11643-1999) and division codes (GB/T 2260).

The check digit is ISO 7064 MOD 11-2: weights ``2**(17-i) mod 11`` for the 17
digits, check value ``(12 - sum mod 11) mod 11``, ``X`` for 10. GB 11643-1999
Appendix A gives ``11010519491231002X`` (a woman born 1949-12-31 in Chaoyang
district, Beijing).
"""

from __future__ import annotations

import datetime as dt

from sscard.i18n import _

WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))

# First two digits of GB/T 2260 codes: the provinces, autonomous regions,
# municipalities and special administrative regions.
# fmt: off
PROVINCES = frozenset((
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
    "65", "71", "81", "82",
))
# fmt: on

# First two digits a citizen ID number (or a residence permit number in the same
# format) may start with: the provinces, and 83 for the residence permits of
# Taiwan residents (2018: address codes 810000 Hong Kong, 820000 Macao, 830000
# Taiwan; 83 is not a GB/T 2260 code, Taiwan's own division code is 71).
ID_PREFIXES = PROVINCES | {"83"}


def check_digit(body: str) -> str:
    """The check character for the first 17 digits of a citizen ID number."""
    if len(body) != 17 or not body.isascii() or not body.isdigit():
        raise ValueError("need the 17 digits before the check digit")
    total = sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def birth_date(ssn: str) -> dt.date | None:
    """The birth date encoded in digits 7..14, or ``None`` if it is not a real date."""
    try:
        return dt.date(int(ssn[6:10]), int(ssn[10:12]), int(ssn[12:14]))
    except ValueError:
        return None


def gender(ssn: str) -> str:
    """GB/T 2261.1 gender from the 17th digit: odd ``1`` (male), even ``2`` (female)."""
    return "1" if int(ssn[16]) % 2 else "2"


def division_problem(code: str) -> str | None:
    """Why ``code`` is not a GB/T 2260 division code, or ``None``."""
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        return _("must be 6 digits (GB/T 2260 division code)")
    if code[:2] not in PROVINCES:
        return _("{prefix} is not a GB/T 2260 province code").format(prefix=code[:2])
    return None
