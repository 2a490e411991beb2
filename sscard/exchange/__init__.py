"""Thin client to the city exchange platform, and a reference platform (docs/exchange.md).

Regulation art. 8-12 and 15: shared data flows only through the platform, over
mutual TLS, under each department's sharing agreement, and a change reaches the
shared database within 24 hours. The service point writes events to a durable
outbox (:mod:`sscard.exchange.outbox`) in the same transaction as the change;
:mod:`sscard.exchange.sync` pushes them and pulls the block list and holder
updates (:mod:`sscard.exchange.inbox`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sscard.lazy import lazy_names

if TYPE_CHECKING:
    from sscard.exchange.events import Event, new_event_id
    from sscard.exchange.schema import CATEGORIES

__all__ = ["CATEGORIES", "Event", "new_event_id"]

_HOMES = {
    "CATEGORIES": "sscard.exchange.schema",
    "Event": "sscard.exchange.events",
    "new_event_id": "sscard.exchange.events",
}
"""Imported on first use (PEP 562): reading the block list does not load the
message schemas (jsonschema)."""


__getattr__, __dir__ = lazy_names(__name__, _HOMES)
