"""The self-service PIN change flow for kiosk software (regulation art. 16).

:class:`KioskSession` runs one flow: wait for a card, ask the current PIN and
the new one twice, change it, and wait for the card to be taken out. It
survives the card being pulled at any step without a half state: the outcome
says whether the PIN changed. If the card is pulled while the CHANGE PIN
command is on its way, only the card knows; the session asks for the card
again and finds out (VERIFY with the new PIN, and with the old one if that
fails, so no try is lost).

The screen and keypad are a :class:`KioskUI`; the reader is a
:class:`~sscard.transport.slot.CardSlot`.

With a PIN pad reader (``pinpad`` "auto" finds one, "required" insists, "off"
never uses it) the holder types every PIN on the pad and the host never holds
one (docs/card.md, "PIN pads"). If the card leaves during CHANGE PIN, the
session learns the outcome without a PIN where it can: the tries left (VERIFY
without data, no try spent) below the limit mean the PIN did not change (a
successful change resets the counter). Only when the counter is full does it ask
the holder to type the new PIN on the pad, saying why: no try is spent silently.
Every prompt is in :data:`SCREEN` for the kiosk's screen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sscard import errors
from sscard.card import SocialSecurityCard
from sscard.pin import PinManager
from sscard.pinpolicy import PinPolicyError
from sscard.transport.base import Transport
from sscard.transport.slot import CardSlot

SCREEN: dict[str, str] = {
    "insert": "Please insert your social security card.",
    "take": "Please take your card.",
    "no_pin": "This card has no PIN yet. Please see the staff.",
    "blocked": "Your PIN is blocked. Please visit a service point.",
    "now_blocked": "Your PIN is now blocked. Please visit a service point.",
    "pad_change": "On the keypad: enter your current PIN, then the new PIN twice "
    "({tries} tries left).",
    "pad_needed": "This kiosk needs a PIN pad reader. Please see the staff.",
    "changed": "Your PIN has been changed.",
    "not_changed": "Your PIN was not changed.",
    "time_up": "Time is up. Your PIN was not changed.",
    "cancelled": "You cancelled. Your PIN was not changed.",
    "differ": "The two new PINs differ. Your PIN was not changed.",
    "length": "A PIN has 6 digits. Your PIN was not changed.",
    "wrong": "Wrong PIN, {tries} tries left. Your PIN was not changed.",
    "pulled": "The card was taken out. Your PIN was not changed.",
    "reinsert": "The card was taken out too early. Please insert it again.",
    "confirm_new": "To find out whether your PIN changed, enter your NEW PIN on the keypad.",
    "not_changed_tries": "Your PIN was not changed ({tries} tries left); your old PIN still works.",
    "unknown_insert": "Unknown whether the PIN changed: insert the card again to find out.",
    "unknown_staff": "Unknown whether the PIN changed: please see the staff.",
    "ask_current": "Current PIN ({tries} tries left):",
    "ask_new": "New PIN (6 digits):",
    "ask_again": "New PIN again:",
    "not_allowed": "That PIN is not allowed: it {rule}. Not changed.",
}
"""Every message the kiosk shows, by id (the kiosk's screen and voice prompts)."""

PINPAD_MODES = ("auto", "required", "off")


class KioskUI(Protocol):
    """The kiosk's screen and PIN pad."""

    def show(self, message: str) -> None:
        """Put a message on the screen."""
        ...

    def ask_pin(self, prompt: str) -> str | None:
        """A PIN typed by the holder (hidden); None on timeout or cancel."""
        ...


CardSource = CardSlot  # the kiosk's reader (a ReaderSlot, or a StandingSlot for an emulated card)


@dataclass(frozen=True)
class KioskOutcome:
    """How one flow ended. ``changed`` is True, False, or None (card never came back)."""

    changed: bool | None
    message: str


class KioskSession:
    """One reader, one holder at a time."""

    def __init__(
        self,
        source: CardSource,
        ui: KioskUI,
        *,
        reinsert_timeout: float = 60.0,
        pinpad: str = "auto",
    ) -> None:
        if pinpad not in PINPAD_MODES:
            raise errors.InvalidInput("bad PIN pad mode", [("pinpad", "auto, required or off")])
        self.source = source
        self.ui = ui
        self.reinsert_timeout = reinsert_timeout
        self.pinpad = pinpad

    def run_once(self, stop: threading.Event | None = None) -> KioskOutcome | None:
        """One flow; None when stopped before a card came."""
        stop = stop or threading.Event()
        self.ui.show(SCREEN["insert"])
        transport = self.source.wait_card(stop)
        if transport is None:
            return None
        try:
            outcome = self._flow(transport, stop)
        finally:
            transport.disconnect()
        self.ui.show(outcome.message)
        if outcome.changed is not None:
            self.ui.show(SCREEN["take"])
            self.source.wait_removal(stop)
        return outcome

    def _flow(self, transport: Transport, stop: threading.Event) -> KioskOutcome:
        sent = False
        old = new = ""
        try:
            manager = PinManager(SocialSecurityCard.open(transport))
            features = manager.pad_features() if self.pinpad != "off" else None
            if features is None and self.pinpad == "required":
                return KioskOutcome(False, SCREEN["pad_needed"])
            status = manager.status()
            if not status.set:
                return KioskOutcome(False, SCREEN["no_pin"])
            if status.blocked:
                return KioskOutcome(False, SCREEN["blocked"])
            if features is not None:
                return self._flow_on_pad(manager, features, status.tries_left or 0, stop)
            manager.birth_date()  # read now (for the policy): after the PINs only CHANGE PIN
            old = self.ui.ask_pin(SCREEN["ask_current"].format(tries=status.tries_left)) or ""
            if not old:
                return KioskOutcome(False, SCREEN["time_up"])
            new = self.ui.ask_pin(SCREEN["ask_new"]) or ""
            again = (self.ui.ask_pin(SCREEN["ask_again"]) or "") if new else ""
            if not new or not again:
                return KioskOutcome(False, SCREEN["time_up"])
            if new != again:
                return KioskOutcome(False, SCREEN["differ"])
            manager.check_new(new, previous=old)
            sent = True
            manager.change(old, new)
            return KioskOutcome(True, SCREEN["changed"])
        except PinPolicyError as exc:
            rule = exc.problems[0][1] if exc.problems else exc.rule
            return KioskOutcome(False, SCREEN["not_allowed"].format(rule=rule))
        except errors.PinIncorrect as exc:
            return KioskOutcome(False, SCREEN["wrong"].format(tries=exc.tries_left))
        except errors.PinBlocked:
            return KioskOutcome(False, SCREEN["now_blocked"])
        except errors.TransportError:
            if not sent:
                return KioskOutcome(False, SCREEN["pulled"])
            return self._settle(stop, self._by_verifying(old, new))

    def _flow_on_pad(
        self, manager: PinManager, features: dict[int, int], tries: int, stop: threading.Event
    ) -> KioskOutcome:
        """CHANGE PIN with every PIN typed on the reader's pad."""
        self.ui.show(SCREEN["pad_change"].format(tries=tries))
        try:
            manager.change_on_pad(features)
            return KioskOutcome(True, SCREEN["changed"])
        except errors.PinEntryCancelled:
            return KioskOutcome(False, SCREEN["cancelled"])
        except errors.PinEntryTimedOut:
            return KioskOutcome(False, SCREEN["time_up"])
        except errors.PinsDiffer:
            return KioskOutcome(False, SCREEN["differ"])
        except errors.PinLengthWrong:
            return KioskOutcome(False, SCREEN["length"])
        except errors.PinIncorrect as exc:
            return KioskOutcome(False, SCREEN["wrong"].format(tries=exc.tries_left))
        except errors.PinBlocked:
            return KioskOutcome(False, SCREEN["now_blocked"])
        except errors.TransportError:
            return self._settle(stop, self._on_pad)

    def _settle(
        self, stop: threading.Event, find_out: Callable[[PinManager], KioskOutcome]
    ) -> KioskOutcome:
        """The card left during CHANGE PIN: ask for it back, then ``find_out`` what it holds."""
        self.ui.show(SCREEN["reinsert"])
        transport = self.source.wait_card(stop, self.reinsert_timeout)
        if transport is None:
            return KioskOutcome(None, SCREEN["unknown_insert"])
        try:
            return find_out(PinManager(SocialSecurityCard.open(transport)))
        except errors.SscardError:
            return KioskOutcome(None, SCREEN["unknown_staff"])
        finally:
            transport.disconnect()

    @staticmethod
    def _by_verifying(old: str, new: str) -> Callable[[PinManager], KioskOutcome]:
        """Host keypad: VERIFY the new PIN, and the old one if that fails (its try back)."""

        def find_out(manager: PinManager) -> KioskOutcome:
            try:
                manager.verify(new)
                return KioskOutcome(True, SCREEN["changed"])
            except errors.PinIncorrect:
                manager.verify(old)  # resets the try the check above spent
                return KioskOutcome(False, SCREEN["not_changed"])

        return find_out

    def _on_pad(self, manager: PinManager) -> KioskOutcome:
        """PIN pad: the tries left first (no PIN); the new PIN on the pad only if they are full."""
        status = manager.status()
        if status.tries_left is not None and status.tries_left < status.try_limit:
            # a successful CHANGE PIN gives the counter back in full: this one did not
            return KioskOutcome(False, SCREEN["not_changed_tries"].format(tries=status.tries_left))
        features = manager.pad_features()
        if features is None:
            return KioskOutcome(None, SCREEN["unknown_staff"])
        self.ui.show(SCREEN["confirm_new"])
        try:
            manager.verify_on_pad(features)
            return KioskOutcome(True, SCREEN["changed"])
        except errors.PinIncorrect as exc:
            return KioskOutcome(False, SCREEN["not_changed_tries"].format(tries=exc.tries_left))
