"""PIN policy (issue 7, regulation art. 16): checked before any card is touched.

Default rules for the 6-digit cardholder PIN: exactly ``length`` digits; not all
the same digit; not an ascending or descending run (123456, 654321); not a part
of the holder's birth date (YYMMDD, MMDDYY, DDMMYY, YYYYMM, MMYYYY); not the
previous PIN. A refused PIN names the rule it broke, never the PIN.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass

from sscard.errors import InvalidInput
from sscard.i18n import N_, _
from sscard.national import NationalCode

RULES = {
    "length": N_("must be exactly {length} digits"),
    "same-digits": N_("must not be one digit repeated"),
    "sequence": N_("must not be a run of ascending or descending digits"),
    "birth-date": N_("must not be taken from the holder's birth date"),
    "previous": N_("must differ from the previous PIN"),
}
"""The rules by name, in English (``_(RULES[rule])`` in the active language)."""


class PinPolicyError(InvalidInput):
    """A PIN broke a rule of the policy; ``rule`` names it (exit code 7)."""

    def __init__(self, rule: str, length: int = 6) -> None:
        self.rule = rule
        text = _(RULES[rule]).format(length=length)
        super().__init__(
            _("the PIN was refused by the PIN policy"),
            [("pin", _("{text} (rule: {rule})").format(text=text, rule=rule))],
        )

    @property
    def national_code(self) -> int:
        """−33 for a PIN of the wrong length, else −23 (invalid input)."""
        if self.rule == "length":
            return NationalCode.PIN_LENGTH_WRONG
        return NationalCode.INVALID_INPUT


@dataclass(frozen=True)
class PinPolicy:
    """Which rules apply; ``enabled=False`` keeps only the length rule."""

    length: int = 6
    enabled: bool = True

    def check(
        self, pin: str, *, birth_date: str | None = None, previous: str | None = None
    ) -> None:
        """Raise :class:`PinPolicyError` for the first rule ``pin`` breaks."""
        if len(pin) != self.length or not pin.isascii() or not pin.isdigit():
            raise PinPolicyError("length", self.length)
        if not self.enabled:
            return
        if len(set(pin)) == 1:
            raise PinPolicyError("same-digits", self.length)
        steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
        if steps in ({1}, {9}):
            raise PinPolicyError("sequence", self.length)
        if birth_date and pin in _date_forms(birth_date):
            raise PinPolicyError("birth-date", self.length)
        if previous is not None and secrets.compare_digest(pin, previous):
            raise PinPolicyError("previous", self.length)

    def random(self, *, birth_date: str | None = None, previous: str | None = None) -> str:
        """A random PIN that passes the policy (from the OS's CSPRNG)."""
        while True:
            pin = "".join(secrets.choice("0123456789") for _digit in range(self.length))
            try:
                self.check(pin, birth_date=birth_date, previous=previous)
            except PinPolicyError:
                continue
            return pin


def _date_forms(iso_date: str) -> set[str]:
    """6-digit forms of a ``YYYY-MM-DD`` date that people use as PINs."""
    y, m, d = iso_date[:4], iso_date[5:7], iso_date[8:10]
    yy = y[2:]
    return {yy + m + d, m + d + yy, d + m + yy, y + m, m + y, d + m + y[:2], m + d + y[:2]}
