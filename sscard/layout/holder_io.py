"""Read holder files for batch issuance: CSV, JSON Lines or JSON (docs/layout.md).

CSV columns carry the holder field names (``ssn``, ``name``, …); an empty cell
means the field is absent; ``ethnicity`` is read as an integer. Every row keeps
its line number so problems can say where they are.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sscard.errors import InvalidInput
from sscard.layout.holder import HOLDER_FIELDS, holder_problems
from sscard.layout.model import Profile

INTEGER_COLUMNS = ("ethnicity",)


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
        raise InvalidInput(f"cannot read {path}", [("file", exc.strerror or str(exc))]) from None
    text = _decode(raw, path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return parse_csv(text)
    if suffix == ".jsonl":
        return parse_jsonl(text)
    if suffix == ".json":
        return _parse_json(text)
    raise InvalidInput(f"cannot read {path}", [("file", "use a .csv, .jsonl or .json file")])


def _decode(raw: bytes, path: Path) -> str:
    """UTF-8 (with or without BOM), else GB 18030 (spreadsheets saved on Chinese Windows)."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidInput(f"cannot read {path}", [("file", "not UTF-8 or GB 18030 text")])


def parse_csv(text: str) -> list[HolderRow]:
    """Rows of CSV text whose header names holder fields."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in HOLDER_FIELDS]
    if unknown or not header:
        problems = [(f"line 1: column {c!r}", "unknown column") for c in unknown]
        problems = problems or [("line 1", "no header row")]
        raise InvalidInput("invalid holder file header", problems)
    rows: list[HolderRow] = []
    for record in reader:
        data: dict[str, Any] = {}
        for key, value in record.items():
            if key is None:
                data["(extra cells)"] = value
                continue
            if value is None or value.strip() == "":
                continue
            value = value.strip()
            data[key] = int(value) if key in INTEGER_COLUMNS and value.isdigit() else value
        rows.append(HolderRow(reader.line_num, data))
    return rows


def parse_jsonl(text: str) -> list[HolderRow]:
    """Rows of JSON Lines text, one object per non-blank line."""
    rows: list[HolderRow] = []
    problems: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(HolderRow(number, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append((f"line {number}", f"not valid JSON: {exc.msg}"))
    if problems:
        raise InvalidInput("invalid holder file", problems)
    return rows


def _parse_json(text: str) -> list[HolderRow]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput("invalid holder file", [(f"line {exc.lineno}", exc.msg)]) from None
    items = data if isinstance(data, list) else [data]
    return [HolderRow(i, item) for i, item in enumerate(items, start=1)]


def validate_rows(rows: list[HolderRow], profile: Profile | None = None) -> None:
    """Raise one :class:`InvalidInput` listing every problem of every row (``line N: field``)."""
    problems = [
        (f"line {row.line}: {field}", message)
        for row in rows
        for field, message in holder_problems(row.data, profile)
    ]
    if problems:
        bad = len({p[0].split(":")[0] for p in problems})
        raise InvalidInput(f"invalid cardholder data in {bad} of {len(rows)} row(s)", problems)
