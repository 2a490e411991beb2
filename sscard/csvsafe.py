"""CSV cells a spreadsheet cannot run as formulas (OWASP "CSV Injection").

Every CSV file sscard writes goes through :func:`safe_cell` (or
:func:`safe_row`): a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return gets a leading ``'``, so Excel, LibreOffice and Google
Sheets show it as text instead of evaluating it (``=HYPERLINK(...)``,
``@SUM(...)``, DDE). Numbers and other non-text values are left as they are.
"""

from __future__ import annotations

from collections.abc import Mapping

FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """``value`` for a CSV cell: text that a spreadsheet would run as a formula gets a ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_LEADS):
        return "'" + value
    return value


def safe_row(row: Mapping[str, object]) -> dict[str, object]:
    """``row`` with :func:`safe_cell` applied to every cell (for ``csv.DictWriter``)."""
    return {key: safe_cell(value) for key, value in row.items()}
