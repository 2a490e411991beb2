"""Blocking and unblocking cards (docs/card.md APPLICATION BLOCK / UNBLOCK, CARD BLOCK;
regulation art. 11: a lost card is reported to the exchange platform).

Levels: ``app`` (temporary application block, undone by :func:`unblock`),
``app-permanent`` and ``card`` (permanent: every command then answers 6A81).
Each command is MACed with the card's line-protection key by the security
module; the action is audited and reported (``card.blocked`` /
``card.unblocked``) in one transaction after the card said yes.
"""

from __future__ import annotations

from typing import Any

from sscard import cardevents
from sscard.audit.log import Actor
from sscard.card import SocialSecurityCard
from sscard.db import Connection
from sscard.errors import InvalidInput
from sscard.i18n import _

LEVELS = ("app", "app-permanent", "card")
REASONS = ("lost", "stolen", "damaged", "deceased", "fraud", "replaced", "other")


def block(
    card: SocialSecurityCard,
    *,
    level: str,
    reason: str,
    conn: Connection,
    operator: Actor | None,
    service_point: str,
) -> dict[str, Any]:
    """Block ``card`` at ``level`` for ``reason``; audit and report it."""
    if level not in LEVELS:
        raise InvalidInput(
            _("unknown block level"),
            [("level", _("one of {choices}").format(choices=", ".join(LEVELS)))],
        )
    if reason not in REASONS:
        raise InvalidInput(
            _("unknown block reason"),
            [("reason", _("one of {choices}").format(choices=", ".join(REASONS)))],
        )

    def do() -> None:
        if level == "card":
            card.block_card()
        else:
            card.block_application(permanent=level == "app-permanent")

    result = cardevents.recorded(
        card,
        "card.block",
        do,
        conn=conn,
        operator=operator,
        service_point=service_point,
        category="card.blocked",
        payload={"reason": reason, "on_card": True},
    )
    return {**result, "level": level, "reason": reason, "lifecycle": card.lifecycle()}


def unblock(
    card: SocialSecurityCard,
    *,
    conn: Connection,
    operator: Actor | None,
    service_point: str,
) -> dict[str, Any]:
    """Lift a temporary application block; audit and report it."""
    result = cardevents.recorded(
        card,
        "card.unblock",
        card.unblock_application,
        conn=conn,
        operator=operator,
        service_point=service_point,
        category="card.unblocked",
    )
    return {**result, "lifecycle": card.lifecycle()}
