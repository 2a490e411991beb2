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
from sscard.i18n import N_, _
from sscard.pin import PinManager
from sscard.pinpolicy import PinPolicyError
from sscard.transport.base import Transport
from sscard.transport.slot import CardSlot

SCREEN: dict[str, str] = {
    "insert": N_("Please insert your social security card."),
    "take": N_("Please take your card."),
    "no_pin": N_("This card has no PIN yet. Please see the staff."),
    "blocked": N_("Your PIN is blocked. Please visit a service point."),
    "now_blocked": N_("Your PIN is now blocked. Please visit a service point."),
    "pad_change": N_(
        "On the keypad: enter your current PIN, then the new PIN twice ({tries} tries left)."
    ),
    "pad_needed": N_("This kiosk needs a PIN pad reader. Please see the staff."),
    "changed": N_("Your PIN has been changed."),
    "not_changed": N_("Your PIN was not changed."),
    "time_up": N_("Time is up. Your PIN was not changed."),
    "cancelled": N_("You cancelled. Your PIN was not changed."),
    "differ": N_("The two new PINs differ. Your PIN was not changed."),
    "length": N_("A PIN has 6 digits. Your PIN was not changed."),
    "wrong": N_("Wrong PIN, {tries} tries left. Your PIN was not changed."),
    "pulled": N_("The card was taken out. Your PIN was not changed."),
    "reinsert": N_("The card was taken out too early. Please insert it again."),
    "confirm_new": N_("To find out whether your PIN changed, enter your NEW PIN on the keypad."),
    "not_changed_tries": N_(
        "Your PIN was not changed ({tries} tries left); your old PIN still works."
    ),
    "unknown_insert": N_("Unknown whether the PIN changed: insert the card again to find out."),
    "unknown_staff": N_("Unknown whether the PIN changed: please see the staff."),
    "ask_current": N_("Current PIN ({tries} tries left):"),
    "ask_new": N_("New PIN (6 digits):"),
    "ask_again": N_("New PIN again:"),
    "not_allowed": N_("That PIN is not allowed: it {rule}. Not changed."),
}
"""Every message the kiosk shows, by id (the kiosk's screen and voice prompts), in English:
:func:`screen` gives one in the active language."""


def screen(key: str, **fields: object) -> str:
    """The message ``key`` of :data:`SCREEN` in the active language, ``fields`` filled in."""
    text = _(SCREEN[key])
    return text.format(**fields) if fields else text


PINPAD_MODES = ("auto", "required", "off")


def _new_prompts() -> tuple[str, str]:
    """The new PIN's two prompts, in the active language."""
    return screen("ask_new"), screen("ask_again")


class KioskUI(Protocol):
    """The kiosk's screen and PIN pad."""

    def show(self, message: str) -> None:
        """Put a message on the screen."""
        ...

    def ask_pin(self, prompt: str) -> str | None:
        """A PIN typed by the holder (hidden); None on timeout, "" when the holder
        cancelled (or confirmed an empty entry)."""
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
            raise errors.InvalidInput(
                _("bad PIN pad mode"), [("pinpad", _("auto, required or off"))]
            )
        self.source = source
        self.ui = ui
        self.reinsert_timeout = reinsert_timeout
        self.pinpad = pinpad

    def run_once(self, stop: threading.Event | None = None) -> KioskOutcome | None:
        """One flow; None when stopped before a card came."""
        stop = stop or threading.Event()
        self.ui.show(screen("insert"))
        transport = self.source.wait_card(stop)
        if transport is None:
            return None
        try:
            outcome = self._flow(transport, stop)
        finally:
            transport.disconnect()
        self.ui.show(outcome.message)
        if outcome.changed is not None:
            self.ui.show(screen("take"))
            self.source.wait_removal(stop)
        return outcome

    def _flow(self, transport: Transport, stop: threading.Event) -> KioskOutcome:
        sent = False
        old = new = ""
        try:
            manager = PinManager(SocialSecurityCard.open(transport))
            features = manager.pad_features() if self.pinpad != "off" else None
            if features is None and self.pinpad == "required":
                return KioskOutcome(False, screen("pad_needed"))
            status = manager.status()
            if not status.set:
                return KioskOutcome(False, screen("no_pin"))
            if status.blocked:
                return KioskOutcome(False, screen("blocked"))
            if features is not None:
                return self._flow_on_pad(manager, features, status.tries_left or 0, stop)
            manager.birth_date()  # read now (for the policy): after the PINs only CHANGE PIN
            entries: list[str] = []
            for prompt in (screen("ask_current", tries=status.tries_left), *_new_prompts()):
                typed = self.ui.ask_pin(prompt)
                if not typed:  # None: nobody typed in time; "": the holder cancelled
                    return KioskOutcome(False, screen("time_up" if typed is None else "cancelled"))
                entries.append(typed)
            old, new, again = entries
            if new != again:
                return KioskOutcome(False, screen("differ"))
            manager.check_new(new, previous=old)
            sent = True
            manager.change(old, new)
            return KioskOutcome(True, screen("changed"))
        except PinPolicyError as exc:
            rule = exc.problems[0][1] if exc.problems else exc.rule
            return KioskOutcome(False, screen("not_allowed", rule=rule))
        except errors.PinIncorrect as exc:
            return KioskOutcome(False, screen("wrong", tries=exc.tries_left))
        except errors.PinBlocked:
            return KioskOutcome(False, screen("now_blocked"))
        except errors.TransportError:
            if not sent:
                return KioskOutcome(False, screen("pulled"))
            return self._settle(stop, self._by_verifying(old, new))

    def _flow_on_pad(
        self, manager: PinManager, features: dict[int, int], tries: int, stop: threading.Event
    ) -> KioskOutcome:
        """CHANGE PIN with every PIN typed on the reader's pad."""
        self.ui.show(screen("pad_change", tries=tries))
        try:
            manager.change_on_pad(features)
            return KioskOutcome(True, screen("changed"))
        except errors.PinEntryCancelled:
            return KioskOutcome(False, screen("cancelled"))
        except errors.PinEntryTimedOut:
            return KioskOutcome(False, screen("time_up"))
        except errors.PinsDiffer:
            return KioskOutcome(False, screen("differ"))
        except errors.PinLengthWrong:
            return KioskOutcome(False, screen("length"))
        except errors.PinIncorrect as exc:
            return KioskOutcome(False, screen("wrong", tries=exc.tries_left))
        except errors.PinBlocked:
            return KioskOutcome(False, screen("now_blocked"))
        except errors.TransportError:
            return self._settle(stop, self._on_pad)

    def _settle(
        self, stop: threading.Event, find_out: Callable[[PinManager], KioskOutcome]
    ) -> KioskOutcome:
        """The card left during CHANGE PIN: ask for it back, then ``find_out`` what it holds."""
        self.ui.show(screen("reinsert"))
        transport = self.source.wait_card(stop, self.reinsert_timeout)
        if transport is None:
            return KioskOutcome(None, screen("unknown_insert"))
        try:
            return find_out(PinManager(SocialSecurityCard.open(transport)))
        except errors.SscardError:
            return KioskOutcome(None, screen("unknown_staff"))
        finally:
            transport.disconnect()

    @staticmethod
    def _by_verifying(old: str, new: str) -> Callable[[PinManager], KioskOutcome]:
        """Host keypad: VERIFY the new PIN, and the old one if that fails (its try back)."""

        def find_out(manager: PinManager) -> KioskOutcome:
            try:
                manager.verify(new)
                return KioskOutcome(True, screen("changed"))
            except errors.PinIncorrect:
                manager.verify(old)  # resets the try the check above spent
                return KioskOutcome(False, screen("not_changed"))

        return find_out

    def _on_pad(self, manager: PinManager) -> KioskOutcome:
        """PIN pad: the tries left first (no PIN); the new PIN on the pad only if they are full."""
        status = manager.status()
        if status.tries_left is not None and status.tries_left < status.try_limit:
            # a successful CHANGE PIN gives the counter back in full: this one did not
            return KioskOutcome(False, screen("not_changed_tries", tries=status.tries_left))
        features = manager.pad_features()
        if features is None:
            return KioskOutcome(None, screen("unknown_staff"))
        self.ui.show(screen("confirm_new"))
        try:
            manager.verify_on_pad(features)
            return KioskOutcome(True, screen("changed"))
        except errors.PinIncorrect as exc:
            return KioskOutcome(False, screen("not_changed_tries", tries=exc.tries_left))
