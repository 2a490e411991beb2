"""Read holder files for batch issuance: CSV, JSON Lines or JSON (docs/layout.md).

CSV columns carry the holder field names (``ssn``, ``name``, …); an empty cell
means the field is absent; ``ethnicity`` is read as an integer. Every row keeps
its line number so problems can say where they are, and its data normalized
(:func:`~sscard.layout.holder.normalize_holder`).

Hostile files are :class:`~sscard.errors.InvalidInput`, never a traceback: a
key given twice in a JSON object, JSON nested too deeply, numbers of more
digits than any field has, ``NaN``/``Infinity``, CSV cells over the csv
module's size limit.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sscard.errors import InvalidInput
from sscard.i18n import _
from sscard.layout.controls import escape_controls, is_control
from sscard.layout.holder import HOLDER_FIELDS, holder_problems, normalize_holder
from sscard.layout.model import Profile

INTEGER_COLUMNS = ("ethnicity",)
MAX_NUMBER_DIGITS = 24  # the longest digit field (issuer_org); far below int()'s limit
MAX_DEPTH = 8  # a list of flat objects needs 2; the rest of the stack must never recurse far


class _BadJson(ValueError):
    """Something json.loads accepts but a holder file must not have."""


class _Duplicates(dict[str, Any]):
    """A JSON object that had a key more than once (the keys in ``duplicates``)."""

    duplicates: list[str]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seen: list[str] = []
    for key, value in pairs:
        if key in out and key not in seen:
            seen.append(key)
        out[key] = value
    if not seen:
        return out
    marked = _Duplicates(out)
    marked.duplicates = seen
    return marked


def _number(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _BadJson(
            _("a number of {count} digits: too many digits for any field").format(count=len(text))
        )
    return int(text)


def _constant(name: str) -> Any:
    raise _BadJson(_("{name} is not a JSON value").format(name=name))


def _loads(text: str) -> Any:
    """``json.loads`` that marks duplicate keys; ``ValueError`` on hostile input."""
    try:
        data = json.loads(
            text, object_pairs_hook=_object, parse_int=_number, parse_constant=_constant
        )
    except RecursionError:
        data = None
        deep = True
    else:
        deep = _deeper_than(data, MAX_DEPTH)
    if deep:
        raise _BadJson(_("nested too deeply (holder data is one flat object)"))
    return data


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists/objects in ``value`` nest more than ``limit`` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend(
                (v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return False


def _duplicate_problems(where: str, item: Any) -> list[tuple[str, str]]:
    if not isinstance(item, _Duplicates):
        return []
    return [
        (
            _("{where}: {field}").format(where=where, field=escape_controls(k)),
            _("given more than once"),
        )
        for k in item.duplicates
    ]


@dataclass(frozen=True, slots=True)
class HolderRow:
    """One card's data from a holder file, with where it came from."""

    line: int
    data: dict[str, Any]


def read_holders(path: str | Path) -> list[HolderRow]:
    """Rows of a ``.csv``, ``.jsonl`` or ``.json`` file (a list of objects or one object)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(
            _("cannot read {path}").format(path=path), [(_("file"), exc.strerror or str(exc))]
        ) from None
    text = _decode(raw, path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = parse_csv(text)
    elif suffix == ".jsonl":
        rows = parse_jsonl(text)
    elif suffix == ".json":
        rows = _parse_json(text)
    else:
        raise InvalidInput(
            _("cannot read {path}").format(path=path),
            [(_("file"), _("use a .csv, .jsonl or .json file"))],
        )
    return [
        HolderRow(r.line, normalize_holder(r.data)) if isinstance(r.data, dict) else r for r in rows
    ]


def _decode(raw: bytes, path: Path) -> str:
    """UTF-8 (with or without BOM), else GB 18030 (spreadsheets saved on Chinese Windows)."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidInput(
        _("cannot read {path}").format(path=path), [(_("file"), _("not UTF-8 or GB 18030 text"))]
    )


def parse_csv(text: str) -> list[HolderRow]:
    """Rows of CSV text whose header names holder fields."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise InvalidInput(
            _("invalid holder file"),
            [(_("line {line}").format(line=1), _("not valid CSV: {error}").format(error=exc))],
        ) from None
    unknown = [c for c in header if c not in HOLDER_FIELDS]
    if unknown or not header:
        problems = [
            (
                _("line {line}: column {column}").format(line=1, column=_shown(c)),
                _("unknown column"),
            )
            for c in unknown
        ]
        problems = problems or [(_("line {line}").format(line=1), _("no header row"))]
        raise InvalidInput(_("invalid holder file header"), problems)
    rows: list[HolderRow] = []
    line = 2
    try:
        while True:
            line = reader.line_num + 1  # where the record starts (a quoted cell can span lines)
            record = next(reader, None)
            if record is None:
                break
            data: dict[str, Any] = {}
            for key, value in record.items():
                if key is None:
                    data["(extra cells)"] = value
                    continue
                value = _trim(value or "")
                if value == "":
                    continue
                data[key] = _integer(value) if key in INTEGER_COLUMNS else value
            rows.append(HolderRow(line, data))
    except csv.Error as exc:
        raise InvalidInput(
            _("invalid holder file"),
            [(_("line {line}").format(line=line), _("not valid CSV: {error}").format(error=exc))],
        ) from None
    return rows


def _shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for an error message: control characters escaped, cut at ``limit``."""
    cut = text if len(text) <= limit else text[:limit] + "…"
    return "'" + escape_controls(cut) + "'"


def _trim(cell: str) -> str:
    """The cell without surrounding blanks; line breaks and other control characters
    (but tabs) stay, for validation to refuse."""
    start, end = 0, len(cell)
    while start < end and _blank(cell[start]):
        start += 1
    while end > start and _blank(cell[end - 1]):
        end -= 1
    return cell[start:end]


def _blank(char: str) -> bool:
    return char.isspace() and (char == "\t" or not is_control(char))


def _integer(cell: str) -> int | str:
    """An ASCII digit cell of a sensible length as an integer, else the text as it is."""
    if cell.isascii() and cell.isdigit() and len(cell) <= MAX_NUMBER_DIGITS:
        return int(cell)
    return cell


def parse_jsonl(text: str) -> list[HolderRow]:
    """Rows of JSON Lines text, one object per non-blank line."""
    rows: list[HolderRow] = []
    problems: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = _("line {line}").format(line=number)
        try:
            item = _loads(line)
        except json.JSONDecodeError as exc:
            problems.append((where, _("not valid JSON: {error}").format(error=exc.msg)))
            continue
        except ValueError as exc:
            problems.append((where, _("not valid holder data: {error}").format(error=exc)))
            continue
        problems += _duplicate_problems(where, item)
        rows.append(HolderRow(number, item))
    if problems:
        raise InvalidInput(_("invalid holder file"), problems)
    return rows


def _parse_json(text: str) -> list[HolderRow]:
    try:
        data = _loads(text)
    except json.JSONDecodeError as exc:
        where = _("line {line}").format(line=exc.lineno)
        raise InvalidInput(_("invalid holder file"), [(where, exc.msg)]) from None
    except ValueError as exc:
        problem = _("not valid holder data: {error}").format(error=exc)
        raise InvalidInput(_("invalid holder file"), [(_("file"), problem)]) from None
    items = data if isinstance(data, list) else [data]
    problems = [
        p
        for i, item in enumerate(items, start=1)
        for p in _duplicate_problems(_("line {line}").format(line=i), item)
    ]
    if problems:
        raise InvalidInput(_("invalid holder file"), problems)
    return [HolderRow(i, item) for i, item in enumerate(items, start=1)]


def validate_rows(rows: list[HolderRow], profile: Profile | None = None) -> None:
    """Raise one :class:`InvalidInput` listing every problem of every row (``line N: field``)."""
    problems: list[tuple[str, str]] = []
    bad = 0
    for row in rows:
        found = holder_problems(row.data, profile)
        bad += bool(found)
        problems += [
            (_("line {line}: {field}").format(line=row.line, field=field), message)
            for field, message in found
        ]
    if problems:
        raise InvalidInput(
            _("invalid cardholder data in {bad} of {total} row(s)").format(
                bad=bad, total=len(rows)
            ),
            problems,
        )
