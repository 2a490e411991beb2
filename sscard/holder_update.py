"""Writing holder-data updates from the exchange platform onto the card (regulation art. 8-12).

The sync client pulls updates the departments made to a holder's data into the
local inbox (``sscard.exchange.inbox``). When the card next appears at a
service point, :func:`apply_pending` writes them: it authenticates to SSSE with
the card's external-authentication key, rewrites only the records that
change, reads them back, and then, in one transaction, marks the update
applied, audits it and reports ``holder.changed`` (``written_to_card``):
:func:`sscard.cardevents.recorded_action`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from sscard import cardevents
from sscard.audit.log import Actor
from sscard.card import SocialSecurityCard
from sscard.db import Connection
from sscard.errors import InvalidInput
from sscard.exchange import inbox
from sscard.i18n import _
from sscard.issuance.plan import VerificationFailed
from sscard.layout import encode_holder, validate_holder


def pending(card: SocialSecurityCard, conn: Connection) -> list[inbox.HolderUpdate]:
    """Updates waiting for this card (by its card number)."""
    inbox.ensure_schema(conn)
    number = str(card.read_holder()["card_number"])
    return inbox.pending_updates(conn, number)


def _write_records(card: SocialSecurityCard, records: dict[tuple[str, int], bytes]) -> None:
    """Rewrite ``records`` with SSSE's external authentication, then read them back."""
    card.external_authenticate("SSSE")
    for (ef, no), data in sorted(records.items()):
        card.update_record(ef, no, data)
    for (ef, no), data in sorted(records.items()):
        if card.read_record(ef, no) != data:
            raise VerificationFailed(
                _("{ef} record {no} reads back different").format(ef=ef, no=no)
            )


def apply_pending(
    card: SocialSecurityCard,
    *,
    conn: Connection,
    operator: Actor | None,
    service_point: str,
) -> list[dict[str, Any]]:
    """Write every pending update onto ``card``, oldest first; what was done, per update."""
    inbox.ensure_schema(conn)
    current = card.read_holder()
    serial = card.serial.hex().upper()
    number = str(current["card_number"])
    done: list[dict[str, Any]] = []
    for update in inbox.pending_updates(conn, number):
        if update.ssn != current["ssn"]:
            raise InvalidInput(
                _("update is for another holder"),
                [
                    (
                        "ssn",
                        _("update {event} does not match the card's holder").format(
                            event=update.event_id
                        ),
                    )
                ],
            )
        if (
            card.profile.key_city is None
            and update.changes.get("region", current["region"]) != (current["region"])
        ):
            raise InvalidInput(
                _("the region cannot change on an issued card"),
                [
                    (
                        "region",
                        _(
                            "update {event}: the card's keys are diversified for region "
                            "{region}; a holder who moved to another city gets a new card"
                        ).format(event=update.event_id, region=current["region"]),
                    )
                ],
            )
        new = {**current, **update.changes}
        validate_holder(new, card.profile)  # e.g. a birth date that contradicts the SSN
        keep = _same_mac(card.card_id().mac)  # the region cannot change, so neither does the code
        before = encode_holder(card.profile, current, card.serial, keep)
        after = encode_holder(card.profile, new, card.serial, keep)
        changed = {k: v for k, v in after.items() if before.get(k) != v}

        (event,) = cardevents.recorded_action(
            "holder.update",
            partial(_write_records, card, changed),
            conn=conn,
            operator=operator,
            service_point=service_point,
            card_serial=serial,
            card_number=number,
            writes=partial(inbox.mark_applied, event_id=update.event_id),
            events=[
                (
                    "holder.changed",
                    {
                        "ssn": current["ssn"],
                        "card_number": number,
                        "changes": update.changes,
                        "written_to_card": True,
                    },
                )
            ],
            detail={"fields": ",".join(sorted(update.changes))},
        )
        current = new
        done.append(
            {
                "update": update.event_id,
                "fields": sorted(update.changes),
                "records": len(changed),
                "event": event,
            }
        )
    return done


def _same_mac(mac: bytes) -> Callable[[bytes], bytes]:
    """A signer that keeps the card identification code's MAC as it is."""
    return lambda _data: mac
