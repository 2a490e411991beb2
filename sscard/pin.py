"""Cardholder PIN management (regulation art. 16; the card's VERIFY, CHANGE PIN,
PIN RELOAD, PIN UNBLOCK: docs/card.md).

Cardholders check and change their PIN (kiosk, counter PIN pad); staff reset a
forgotten PIN (PIN RELOAD, enciphered and MACed by the security module) or
unblock a blocked one (PIN UNBLOCK, the PIN is kept). The PIN policy is checked
before any PIN command reaches the card. Errors are typed
(:class:`~sscard.errors.PinIncorrect` with tries left,
:class:`~sscard.errors.PinBlocked`, :class:`~sscard.pinpolicy.PinPolicyError`)
and never carry a PIN; neither does any log line or APDU trace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sscard import cardevents, commands, errors
from sscard.apdu import CommandApdu, ResponseApdu
from sscard.audit.log import Actor
from sscard.card import SocialSecurityCard, encode_pin
from sscard.db import Connection
from sscard.i18n import _
from sscard.pinpolicy import PinPolicy, PinPolicyError
from sscard.protocol import error_for
from sscard.vocab import CLA, INS, SW, KeyType

__all__ = ["PinManager", "PinPolicy", "PinPolicyError", "PinStatus", "staff_action"]


@dataclass(frozen=True)
class PinStatus:
    """The PIN's state, read without spending a try."""

    tries_left: int | None
    try_limit: int
    blocked: bool
    set: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "tries_left": self.tries_left,
            "try_limit": self.try_limit,
            "blocked": self.blocked,
            "set": self.set,
        }

    def describe(self) -> str:
        if not self.set:
            return _("no PIN set yet (the card is not issued)")
        if self.blocked:
            return _("PIN blocked: visit a service point to have it unblocked")
        return _("PIN active, {tries} of {limit} tries left").format(
            tries=self.tries_left, limit=self.try_limit
        )


class PinManager:
    """PIN operations on one card session."""

    def __init__(self, card: SocialSecurityCard, policy: PinPolicy | None = None) -> None:
        self.card = card
        self.policy = policy or PinPolicy(length=card.profile.pin.length)
        self._birth_date: str | None = None
        self._birth_date_tried = False

    def _select(self) -> None:
        self.card.select(self.card.profile.pin.df)

    def birth_date(self) -> str | None:
        """The holder's birth date from EF06, for the policy; None when it cannot be read
        (a 3.0 card without the read key). Tried once: later calls send no APDU."""
        if not self._birth_date_tried:
            self._birth_date_tried = True
            try:
                self._birth_date = self.card.read_holder().get("birth_date")
            except errors.SscardError:
                self._birth_date = None
        return self._birth_date

    def check_new(self, new: str, *, previous: str | None = None) -> None:
        """Apply the policy to a new PIN (before the card gets any PIN command)."""
        self.policy.check(new, birth_date=self.birth_date(), previous=previous)

    def status(self) -> PinStatus:
        """Tries left and blocked state; spends no try."""
        tries = self.card.pin_tries_left()
        limit = self.card.profile.pin.try_limit
        return PinStatus(tries, limit, tries == 0, tries is not None)

    def verify(self, pin: str) -> None:
        """VERIFY: returns when right; :class:`PinIncorrect` / :class:`PinBlocked` otherwise."""
        block = encode_pin(pin, self.card.profile.pin.length)
        self._select()
        self.card.protocol.send(commands.verify(block))

    def change(self, old: str, new: str) -> None:
        """CHANGE PIN (cardholder): the old PIN proves it is the holder."""
        length = self.card.profile.pin.length
        old_block = encode_pin(old, length)
        self.check_new(new, previous=old)
        new_block = encode_pin(new, length)
        self._select()
        self.card.protocol.send(commands.change_pin(old_block, new_block))

    # --- on the reader's PIN pad: the host never holds a PIN (docs/card.md, "PIN pads") ---

    def pad_features(self) -> dict[int, int] | None:
        """The reader's PIN pad features, or None when it has no PIN pad (or no control)."""
        from sscard.transport.part10 import has_pin_pad, reader_features

        try:
            features = reader_features(self.card.protocol.transport)
        except (errors.ReaderControlUnsupported, errors.TransportError, errors.ProtocolError):
            return None
        return features if has_pin_pad(features) else None

    def verify_on_pad(self, features: dict[int, int]) -> None:
        """VERIFY with the PIN typed on the pad. The pad's cancel / timeout / length
        errors come as typed errors (no try spent); the card's answer as for :meth:`verify`."""
        from sscard.securepin import secure_verify

        self._select()
        self._card_answer(secure_verify(self.card.protocol.transport, features), INS.VERIFY)

    def change_on_pad(self, features: dict[int, int]) -> None:
        """CHANGE PIN with the current PIN and the new one (twice) typed on the pad.

        The host never sees a PIN, so the PIN policy cannot be applied here: the pad
        checks the length, the card the current PIN (docs/card.md, "PIN pads")."""
        from sscard.securepin import secure_change

        self._select()
        answer = secure_change(self.card.protocol.transport, features)
        self._card_answer(answer, INS.CHANGE_PIN, cla=CLA.PROPRIETARY)

    def _card_answer(self, answer: bytes, ins: int, *, cla: int = CLA.ISO) -> None:
        response = ResponseApdu.parse(answer)
        if response.sw != SW.OK:
            raise error_for(CommandApdu(cla, ins), response.sw)

    def reload(self, new: str) -> None:
        """PIN RELOAD (staff): a new PIN and a fresh counter, with the RPK of this card."""
        self.check_new(new)
        self.card.reload_pin(new)

    def unblock(self) -> None:
        """PIN UNBLOCK (staff): the counter back to the limit, the PIN unchanged."""
        self._select()
        slot = self.card.profile.key_scheme.find(self.card.profile.pin.df, KeyType.PUK, 1)
        self.card.send_protected(commands.pin_unblock(), slot)


def staff_action(
    manager: PinManager,
    action: str,
    *,
    conn: Connection,
    operator: Actor | None,
    service_point: str,
    new_pin: str | None = None,
) -> dict[str, Any]:
    """Run ``pin.reset`` (with ``new_pin``) or ``pin.unblock`` and record it.

    The audit record and the exchange event (``pin.reset`` / ``pin.unblocked``,
    never a PIN) commit together after the card said yes; a failure is audited
    with its error class.
    """
    do: Callable[[], None]
    if action == "pin.reset":
        if new_pin is None:
            raise errors.InvalidInput(_("no new PIN"), [("pin", _("a reset needs the new PIN"))])
        pin = new_pin

        def do() -> None:
            manager.reload(pin)

        category = "pin.reset"
    elif action == "pin.unblock":
        do, category = manager.unblock, "pin.unblocked"
    else:
        raise ValueError(f"unknown PIN staff action {action!r}")
    result = cardevents.recorded(
        manager.card,
        action,
        do,
        conn=conn,
        operator=operator,
        service_point=service_point,
        category=category,
    )
    return {**result, "action": action, **manager.status().to_json()}
