"""Event ids and timestamps of the exchange protocol (docs/exchange.md, "Events").

Ids are UUIDs version 7 (RFC 9562): 48 bits of Unix milliseconds then random
bits, so they are globally unique without coordination and sort by creation
time. Times are UTC, RFC 3339 with microseconds and ``Z`` (fixed width, so
their text sorts like the times).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def new_event_id() -> str:
    """A fresh UUIDv7 as lower-case text."""
    ms = time.time_ns() // 1_000_000
    value = (ms & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC variant
    h = f"{value:032x}"  # as str(uuid.UUID(int=value)), without building the object
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utc_text(moment: datetime | None = None) -> str:
    """``moment`` (default: now) as fixed-width RFC 3339 UTC text.

    A naive datetime is refused: its time zone would be a guess.
    """
    if moment is None:
        moment = datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("occurred_at must be time-zone aware (e.g. datetime.now(UTC))")
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_utc(text: str) -> datetime:
    """Parse RFC 3339 UTC text written by :func:`utc_text` (fraction optional)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True)
class Event:
    """One card event as it travels to the platform."""

    id: str
    service_point: str
    occurred_at: str
    category: str
    payload: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        """The event as its JSON message (schema ``event.json``)."""
        return {
            "id": self.id,
            "service_point": self.service_point,
            "occurred_at": self.occurred_at,
            "category": self.category,
            "payload": self.payload,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Event:
        """The inverse of :meth:`to_wire` (the data must be schema-valid)."""
        return cls(
            data["id"],
            data["service_point"],
            data["occurred_at"],
            data["category"],
            data["payload"],
        )
