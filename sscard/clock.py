"""The one clock of the local records: operators, sessions, audit trail, backups."""

from __future__ import annotations

from datetime import UTC, datetime


def now_utc() -> datetime:
    """The current time (UTC); one function so tests and records agree."""
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    """``2025-01-31T08:15:00.123456Z``: sortable as text."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
