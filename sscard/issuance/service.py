"""Issuing one card: plan, store, verification, audit and exchange event (issue 6).

Resumable and idempotent. Whatever happened before (card pulled, power cut,
process killed at any APDU), calling :func:`issue_card` again on the same card
finishes the job or starts it cleanly:

* a BLANK or PERSONALIZATION card runs the whole plan (every step is idempotent);
* an ISSUED card the store knows as ``in_progress`` for this holder (torn after
  END PERSONALIZATION) is verified again and then recorded;
* an ISSUED card recorded as issued to this holder is reported, untouched.

A card is recorded as issued only after verification passed, and the record,
its audit entry and its ``card.issued`` / ``card.replaced`` event commit in one
transaction (regulation art. 11, 14).

Several stations may share one store (docs/store.md, "Several stations"): an
issuance holds the claims ``holder:SSN`` and ``card:SERIAL`` from before its
first write until its outcome is recorded, so no two stations personalize a
card for the same holder, or the same card, at once; the store's unique index
``issuance_one_active_card`` backs the one active card per holder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sscard import audit, cardevents, errors
from sscard.audit.log import Actor
from sscard.card import SocialSecurityCard, TransportKeyRefused, encode_pin
from sscard.db import Claim, Connection, IntegrityError, StoreBusy, StoreUnavailable, claim
from sscard.exchange import outbox
from sscard.i18n import _
from sscard.issuance import store
from sscard.issuance.plan import PersonalizationPlan, Step, build_plan
from sscard.layout.holder import normalize_holder, validate_holder
from sscard.layout.model import Profile
from sscard.vocab import KeyType, Lifecycle

REPLACE_REASONS = ("lost", "stolen", "damaged", "expired", "holder_changed", "other")


class HolderHasActiveCard(errors.OperationFailed):
    """The holder already has an issued card; a second one needs ``--replace``."""


class CardAlreadyIssued(errors.OperationFailed):
    """The card in the reader is already issued (to someone else, or outside this store)."""


class CardNotUsable(errors.BlockedError):
    """The card in the reader is blocked and cannot be issued."""


class HolderInProgressElsewhere(StoreBusy):
    """Another station (or reader) is issuing a card to this holder right now."""


class CardInProgressElsewhere(StoreBusy):
    """Another station (or reader) is personalizing this very card right now."""


@dataclass(frozen=True)
class IssueResult:
    """What happened to one card."""

    serial: str
    card_number: str
    status: str  # "issued", "resumed", "already-issued"
    replaced: str | None = None
    events: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        return {
            "serial": self.serial,
            "card_number": self.card_number,
            "status": self.status,
            "replaced": self.replaced,
            "events": list(self.events),
        }


def key_versions(profile: Profile) -> dict[str, int]:
    """Key versions personalized on a card of ``profile``, by reference (``SSSE.EAK.01``)."""
    return {
        s.ref.replace("/", "."): s.version for s in profile.key_scheme.slots if s.type != KeyType.TK
    }


def ensure_schema(conn: Connection) -> None:
    """The issuance, outbox and audit tables, all in the one local store."""
    store.ensure_schema(conn)
    outbox.ensure_schema(conn)
    audit.ensure_schema(conn)


def issue_card(
    card: SocialSecurityCard,
    holder: Mapping[str, Any],
    *,
    pin: str,
    conn: Connection,
    operator: Actor | None,
    service_point: str,
    replace: bool = False,
    replace_reason: str = "other",
    batch_key: str | None = None,
    progress: Callable[[int, Step], None] | None = None,
    in_memory: bool = False,
) -> IssueResult:
    """Issue ``card`` to ``holder`` with initial ``pin``; see the module docstring.

    ``in_memory``: the card lives only in this process (``issue batch
    --virtual``); once the process has ended, a batch closes its unfinished row
    as ``abandoned`` (:func:`sscard.issuance.batch.close_abandoned`).
    """
    # Invalid input is refused before the card is touched (not even its serial is read).
    validate_holder(holder, card.profile)
    encode_pin(pin, card.profile.pin.length)
    plan = build_plan(card.profile, holder, card.serial, pin=pin, sign=card.sign_card_id)
    holder = normalize_holder(holder)  # the stored forms (ssn "…X", ethnicity 1) everywhere
    if replace_reason not in REPLACE_REASONS:
        raise errors.InvalidInput(
            _("invalid replacement reason"),
            [("reason", _("one of {choices}").format(choices=", ".join(REPLACE_REASONS)))],
        )
    ensure_schema(conn)
    serial = card.serial.hex().upper()
    ssn = str(holder["ssn"])
    held = _claim_issuance(conn, ssn, serial)
    try:  # every check reads the store after the claims: a station that waited sees the result
        return _issue_claimed(
            card,
            holder,
            plan=plan,
            progress=progress,
            conn=conn,
            operator=operator,
            service_point=service_point,
            replace=replace,
            replace_reason=replace_reason,
            batch_key=batch_key,
            in_memory=in_memory,
        )
    finally:
        _release(held)


def _claim_issuance(conn: Connection, ssn: str, serial: str) -> list[Claim]:
    """Claim the holder and the card for this issuance; the claims newly taken here.

    Refused (nothing written, the card untouched) when another station holds either.
    """
    wanted: list[tuple[str, Callable[[], StoreBusy]]] = [
        (f"holder:{ssn}", lambda: _holder_busy(ssn)),
        (f"card:{serial}", lambda: _card_busy(serial)),
    ]
    taken: list[Claim] = []
    for name, busy in wanted:
        if name in conn.claims:
            continue  # the caller holds it already, and releases it
        got = claim(conn, name)
        if got is None:
            _release(taken)
            raise busy()
        taken.append(got)
    return taken


def _release(claims: list[Claim]) -> None:
    """Give ``claims`` up; a store that went away took them with it."""
    for c in claims:
        with suppress(StoreUnavailable):
            c.release()


def _holder_busy(ssn: str) -> StoreBusy:
    return HolderInProgressElsewhere(
        _("a card for holder {ssn} is being issued on another station right now").format(ssn=ssn)
    ).with_hint(_("let that issuance finish, then check the holder's card before trying again"))


def _card_busy(serial: str) -> StoreBusy:
    return CardInProgressElsewhere(
        _("card {serial} is being personalized on another station right now").format(serial=serial)
    )


def _issue_claimed(
    card: SocialSecurityCard,
    holder: Mapping[str, Any],
    *,
    plan: PersonalizationPlan,
    progress: Callable[[int, Step], None] | None,
    conn: Connection,
    operator: Actor | None,
    service_point: str,
    replace: bool,
    replace_reason: str,
    batch_key: str | None,
    in_memory: bool,
) -> IssueResult:
    """:func:`issue_card` once its claims are held."""
    serial = card.serial.hex().upper()
    ssn, number = str(holder["ssn"]), str(holder["card_number"])
    known = store.card(conn, serial)
    if known is not None and known.status not in ("in_progress", "abandoned"):
        if known.status == "issued" and (known.ssn, known.card_number) == (ssn, number):
            return IssueResult(serial, known.card_number, "already-issued")
        raise CardAlreadyIssued(
            _(
                "card {serial} is already {status} (card number {card_number}); use a blank card"
            ).format(serial=serial, status=known.status, card_number=known.card_number)
        )
    active = store.active_card(conn, ssn)
    if active is not None and active.serial != serial and not replace:
        raise HolderHasActiveCard(
            _(
                "this holder already has an active card ({card_number}, serial "
                "{serial}); a new one replaces it, with a reason"
            ).format(card_number=active.card_number, serial=active.serial)
        ).with_hint(_("replace the active card (the old one is then revoked), giving a reason"))

    life = card.lifecycle()
    blocked = (
        Lifecycle.CARD_BLOCKED,
        Lifecycle.APP_BLOCKED_TEMPORARY,
        Lifecycle.APP_BLOCKED_PERMANENT,
    )
    if life in blocked:
        raise CardNotUsable(
            _("card {serial} is blocked ({lifecycle}); it cannot be issued").format(
                serial=serial, lifecycle=life
            )
        )
    operator_id = operator.id if operator is not None else None
    if life == Lifecycle.ISSUED:
        if known is None or known.ssn != ssn:
            raise CardAlreadyIssued(
                _(
                    "card {serial} is already issued, but not by this issuance store; "
                    "use a blank card"
                ).format(serial=serial)
            )
        phases: tuple[str, ...] | None = ("verify",)
        status = "resumed"
    else:
        store.begin(
            conn,
            serial=serial,
            card_number=number,
            ssn=ssn,
            profile=card.profile.name,
            key_versions=key_versions(card.profile),
            operator=operator_id,
            replaces=active.serial if active is not None and active.serial != serial else None,
            batch_key=batch_key,
            held_by=store.process_id() if in_memory else None,
        )
        phases = None
        status = "issued"
    return _record_issued(
        conn,
        card,
        holder,
        operator,
        service_point,
        active if replace else None,
        replace_reason,
        status,
        partial(plan.run, card, progress=progress, phases=phases),
        fresh=known is None,
    )


def _failed(conn: Connection, serial: str, exc: BaseException, *, fresh: bool) -> None:
    """Note a failed attempt. A blank card that refused our transport key is untouched:
    a row this attempt created is dropped, so no stale ``in_progress`` row stays."""
    if fresh and isinstance(exc, TransportKeyRefused):
        store.forget_untouched(conn, serial, type(exc).__name__)
    else:
        store.failed(conn, serial, type(exc).__name__)


def _record_issued(
    conn: Connection,
    card: SocialSecurityCard,
    holder: Mapping[str, Any],
    operator: Actor | None,
    service_point: str,
    old: store.CardRecord | None,
    reason: str,
    status: str,
    personalize: Callable[[], None],
    *,
    fresh: bool = False,
) -> IssueResult:
    """Run ``personalize`` and record it (:func:`sscard.cardevents.recorded_action`).

    A failure marks the attempt failed and is audited; success commits the
    issuance rows, the events and the audit record in one transaction.
    """
    serial = card.serial.hex().upper()
    number = str(holder["card_number"])
    payload: dict[str, Any] = {
        "card_serial": serial,
        "card_number": number,
        "ssn": holder["ssn"],
        "profile": card.profile.name,
        "key_versions": key_versions(card.profile),
        "issue_date": holder["issue_date"],
        "expiry_date": holder["expiry_date"],
    }
    replaced = old is not None and old.serial != serial
    events: list[cardevents.Event]
    if old is not None and replaced:
        payload["replaces"] = {"card_serial": old.serial, "card_number": old.card_number}
        payload["reason"] = reason
        blocked = {
            "card_serial": old.serial,
            "card_number": old.card_number,
            "ssn": old.ssn,
            "reason": "replaced",
            "on_card": False,
        }
        events = [("card.replaced", payload), ("card.blocked", blocked)]
    else:
        payload["region"] = holder["region"]
        events = [("card.issued", payload)]

    def writes(c: Connection) -> None:
        if old is not None and replaced:  # first: the store holds one active card per holder
            store.mark_replaced(c, old.serial)
        try:
            store.mark_issued(c, serial)
        except IntegrityError as exc:
            if not store.is_one_active_card_violation(exc):
                raise
            raise HolderHasActiveCard(
                _(
                    "the store refused card {serial}: holder {ssn} already has an active card"
                ).format(serial=serial, ssn=holder["ssn"])
            ) from None

    ids = cardevents.recorded_action(
        "card.issue",
        personalize,
        conn=conn,
        operator=operator,
        service_point=service_point,
        card_serial=serial,
        card_number=number,
        events=events,
        writes=writes,
        on_failure=lambda exc: _failed(conn, serial, exc, fresh=fresh),
        detail={"replaces": old.serial} if old is not None else None,
    )
    return IssueResult(serial, number, status, old.serial if old else None, tuple(ids))
