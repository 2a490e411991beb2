"""Cardholder and card data for issuance: schema and checks (spec/card.md, EF05/EF06).

:func:`validate_holder` checks one card's data against ``holder.schema.json``
and then the rules a schema cannot say (no control characters, GB 11643 check
digit, birth date and gender in the ID, real dates in range, GBK names that fit
the record). Every problem is reported at once as ``(field, message)`` pairs in
:class:`~sscard.errors.InvalidInput`. :func:`normalize_holder` turns the forms
real data also uses (ethnicity ``"01"``, check digit ``x``, a card number
without its check character) into the stored ones; validation and encoding
apply it first.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from sscard.errors import InvalidInput
from sscard.i18n import N_, _
from sscard.layout import cardno, gb11643
from sscard.layout.controls import control_problem, escape_controls
from sscard.layout.model import Profile

HOLDER_FIELDS = (
    "ssn",
    "name",
    "name_ext",
    "gender",
    "ethnicity",
    "birthplace",
    "birth_date",
    "card_number",
    "issue_date",
    "expiry_date",
    "region",
    "issuer_org",
)
DATE_FIELDS = ("birth_date", "issue_date", "expiry_date")

# What each field must be, said once for every schema error on that field.
_HINTS = {
    "ssn": N_("must be 18 characters: 17 digits and a check digit 0-9 or X (GB 11643)"),
    "name": N_("must be non-empty text"),
    "name_ext": N_("must be non-empty text when given"),
    "gender": N_("must be '1' (male), '2' (female) or '9' (unspecified), GB/T 2261.1"),
    "ethnicity": N_(
        "must be a GB 3304 code: 1..56, 97 (other) or 98 (foreign origin), "
        "as a number or a two-digit string such as '01'"
    ),
    "birthplace": N_("must be 6 digits (GB/T 2260 division code)"),
    "birth_date": N_("must be a date YYYY-MM-DD"),
    "card_number": N_(
        "must be 9 characters, digits and capital letters, the last the check character "
        "(or the 8 before it, to have it appended)"
    ),
    "issue_date": N_("must be a date YYYY-MM-DD"),
    "expiry_date": N_("must be a date YYYY-MM-DD"),
    "region": N_("must be 6 digits (GB/T 2260 division code)"),
    "issuer_org": N_("must be 24 digits (issuing institution code)"),
}
_DEFAULT_LENGTHS = {"name": 30, "name_ext": 20}
EARLIEST_BIRTH = dt.date(1900, 1, 1)
_ETHNICITY_CODES = frozenset([f"{n:02d}" for n in range(1, 57)] + ["97", "98"])


@cache
def holder_schema() -> dict[str, Any]:
    """The JSON Schema of the issuance input, shipped with the package."""
    text = Path(__file__).with_name("holder.schema.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def normalize_holder(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with the written forms real data uses turned into the stored ones.

    Ethnicity ``"01"``..``"56"``, ``"97"``, ``"98"`` (GB 3304 as written) and
    integral numbers such as ``1.0`` become integers; an ID number ending in a
    lower-case ``x`` gets ``X``; a card number of 8 characters ``0-9A-Z`` gets
    its check character appended (:mod:`sscard.layout.cardno`). Anything else is
    left for validation to judge.
    """
    out = dict(data)
    code = out.get("ethnicity")
    if (isinstance(code, str) and code in _ETHNICITY_CODES) or (
        isinstance(code, float) and code.is_integer()
    ):
        out["ethnicity"] = int(code)
    ssn = out.get("ssn")
    if isinstance(ssn, str) and len(ssn) == 18 and ssn.endswith("x"):
        out["ssn"] = ssn[:17] + "X"
    number = out.get("card_number")
    if isinstance(number, str) and len(number) == cardno.BODY and cardno.is_alphanumeric(number):
        out["card_number"] = cardno.complete(number)
    return out


def validate_holder(data: Mapping[str, Any], profile: Profile | None = None) -> None:
    """Return ``None`` if ``data`` is valid issuance input, else raise ``InvalidInput``
    listing every problem. Name lengths come from ``profile`` (default: the spec's)."""
    problems = holder_problems(data, profile)
    if problems:
        raise InvalidInput(_("invalid cardholder data"), problems)


def holder_problems(data: Any, profile: Profile | None = None) -> list[tuple[str, str]]:
    """Every problem of one holder record as ``(field, message)``, in field order."""
    if not isinstance(data, Mapping):
        message = _("must be an object with the fields {fields}")
        return [("$", message.format(fields=", ".join(HOLDER_FIELDS)))]
    data = normalize_holder(data)
    problems: dict[str, str] = {}
    for key in sorted(set(data) - set(HOLDER_FIELDS), key=str):
        problems[escape_controls(str(key))] = _("unknown field")
    for key in HOLDER_FIELDS:
        value = data.get(key)
        problem = control_problem(value) if isinstance(value, str) else None
        if problem:
            problems[key] = problem
    import jsonschema  # loaded when holder data is checked, not to read a card

    validator = jsonschema.Draft202012Validator(holder_schema())
    for error in validator.iter_errors(data):
        if error.validator == "additionalProperties":
            continue  # listed above, names escaped
        elif error.validator == "required":
            for key in HOLDER_FIELDS:
                if f"'{key}'" in error.message and key not in data:
                    problems.setdefault(key, _("missing"))
        else:
            field = str(error.absolute_path[0]) if error.absolute_path else "$"
            hint = _HINTS.get(field)
            problems.setdefault(field, _(hint) if hint else error.message)
    _semantic_problems(data, problems, _lengths(profile))
    order = {f: i for i, f in enumerate(HOLDER_FIELDS)}
    return sorted(problems.items(), key=lambda p: (order.get(p[0], len(order)), p[0]))


def _lengths(profile: Profile | None) -> dict[str, int]:
    if profile is None:
        return dict(_DEFAULT_LENGTHS)
    lengths = dict(_DEFAULT_LENGTHS)
    for item in profile.records():
        if item.field in lengths:
            lengths[item.field] = item.length
    return lengths


def _semantic_problems(
    data: Mapping[str, Any], out: dict[str, str], lengths: dict[str, int]
) -> None:
    """Checks beyond the schema, only on fields that passed it."""

    def ok(field: str) -> bool:
        return field in data and field not in out

    dates: dict[str, dt.date] = {}
    for field in DATE_FIELDS:
        if ok(field):
            try:
                dates[field] = dt.date.fromisoformat(data[field])
            except ValueError:
                out[field] = _("{value} is not a real date").format(value=repr(data[field]))
    if "birth_date" in dates:
        born = dates["birth_date"]
        today = dt.date.today()
        if born < EARLIEST_BIRTH:
            out["birth_date"] = _(
                "must be between {earliest} and the issue date, not {date}"
            ).format(earliest=EARLIEST_BIRTH.isoformat(), date=born.isoformat())
        elif born > today:
            out["birth_date"] = _("must not be after today ({today})").format(
                today=today.isoformat()
            )
    if ok("ssn"):
        _ssn_problems(data, out, dates)
    if ok("card_number"):
        problem = cardno.check_problem(data["card_number"])
        if problem:
            out["card_number"] = problem
    for field in ("birthplace", "region"):
        if ok(field):
            problem = gb11643.division_problem(data[field])
            if problem:
                out[field] = problem
    if (
        "issue_date" in dates
        and "expiry_date" in dates
        and dates["expiry_date"] <= dates["issue_date"]
    ):
        out["expiry_date"] = _("must be after the issue date {date}").format(
            date=dates["issue_date"].isoformat()
        )
    if (
        "birth_date" in dates
        and "issue_date" in dates
        and dates["issue_date"] < dates["birth_date"]
    ):
        out["issue_date"] = _("must not be before the birth date {date}").format(
            date=dates["birth_date"].isoformat()
        )
    if ok("name"):
        _name_problem(data["name"], "name", "gbk", lengths["name"], out)
    if ok("name_ext"):
        _name_problem(data["name_ext"], "name_ext", "gb18030", lengths["name_ext"], out)


def _ssn_problems(data: Mapping[str, Any], out: dict[str, str], dates: dict[str, dt.date]) -> None:
    ssn: str = data["ssn"]
    expected = gb11643.check_digit(ssn[:17])
    if ssn[17] != expected:
        out["ssn"] = _("wrong check digit {digit}, GB 11643 gives {expected}").format(
            digit=ssn[17], expected=expected
        )
        return
    if ssn[:2] not in gb11643.ID_PREFIXES:
        out["ssn"] = _(
            "address code starts with {prefix}, not a GB/T 2260 province code "
            "(nor 83, Taiwan residents' residence permits)"
        ).format(prefix=ssn[:2])
        return
    born = gb11643.birth_date(ssn)
    if born is None:
        out["ssn"] = _("digits 7-14 ({digits}) are not a real birth date").format(digits=ssn[6:14])
        return
    if "birth_date" in dates and dates["birth_date"] != born:
        out["birth_date"] = _("does not match the ID number, which says {date}").format(
            date=born.isoformat()
        )
    if data.get("gender") in ("1", "2") and "gender" not in out:
        id_gender = gb11643.gender(ssn)
        if data["gender"] != id_gender:
            if id_gender == "1":
                out["gender"] = _("does not match the ID number's 17th digit, which says male (1)")
            else:
                out["gender"] = _(
                    "does not match the ID number's 17th digit, which says female (2)"
                )


def _name_problem(text: str, field: str, encoding: str, length: int, out: dict[str, str]) -> None:
    try:
        raw = text.encode(encoding)
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        out[field] = _(
            "character {char} (U+{code:04X}) is not in GBK: write a common substitute "
            "in name and the rare characters in name_ext"
        ).format(char=repr(bad), code=ord(bad))
        return
    if len(raw) > length:
        out[field] = _(
            "too long: {size} bytes in {encoding}, the card record holds {length}"
        ).format(size=len(raw), encoding=encoding.upper(), length=length)
