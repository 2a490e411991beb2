"""The national terminal interface on the agent's reader (docs/agent.md).

:class:`CardService` is what the agent's endpoints call: ``iReadCardBas``
(:meth:`~CardService.read_basic`), ``iVerifyPIN``, ``iChangePIN`` (the PIN typed
on the reader's PIN pad, or given by the caller where the reader has none),
and the staff actions ``iReloadPIN`` (PIN reset) and PIN unblock, audited and
reported like the CLI's. Each call takes the reader's lease
(:class:`~sscard.agent.reader.CardReader`) for its whole command sequence and
answers a plain dict (the ``data`` of docs/agent.md's answers); failures are
the library's typed errors, each with its national code. Nothing here logs or
returns a PIN.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sscard import audit, errors
from sscard.agent.reader import CardReader
from sscard.auth.store import Operator
from sscard.card import SocialSecurityCard
from sscard.db import Connection
from sscard.i18n import N_, _
from sscard.keys.security_module import SecurityModule
from sscard.kiosk import PINPAD_MODES
from sscard.layout import card_profiles, load_profile
from sscard.layout.model import Profile
from sscard.pin import PinManager, PinPolicy, staff_action

__all__ = ["AgentSettings", "CardService", "KeySource"]

KeySource = Callable[[Profile], SecurityModule]
"""Opens the security module for a card's profile (a key store, a token, the PSAM)."""

# What holds the card, shown to a caller who has to wait (CardInUse).
_HOLDERS = {
    "read": N_("reading a card"),
    "status": N_("reading the PIN status"),
    "verify": N_("a PIN check"),
    "change": N_("a PIN change"),
    "pad": N_("PIN entry on the PIN pad"),
    "reset": N_("a staff PIN reset"),
    "unblock": N_("a staff PIN unblock"),
}


@dataclass(frozen=True)
class AgentSettings:
    """How the agent treats its reader (``sscard agent serve`` options)."""

    service_point: str
    busy_wait: float = 2.0
    """Seconds a caller waits for the card before the answer :class:`~sscard.errors.CardInUse`."""
    pinpad: str = "auto"
    """auto: the pad when the caller gives no PIN; required: only the pad; off: never the pad."""
    terminal_device: str = ""
    """终端设备号 in the ``iReadCardBas`` line."""

    def __post_init__(self) -> None:
        if self.pinpad not in PINPAD_MODES:
            raise errors.InvalidInput(
                _("bad PIN pad mode"), [("pinpad", _("auto, required or off"))]
            )


class CardService:
    """The national operations on the card in ``reader``, one caller at a time."""

    def __init__(
        self,
        reader: CardReader,
        settings: AgentSettings,
        *,
        keys: KeySource | None = None,
        store: Callable[[], Connection],
    ) -> None:
        self.reader = reader
        self.settings = settings
        self._keys = keys
        self._store = store
        self._modules: dict[str, SecurityModule] = {}
        self._modules_lock = threading.Lock()
        self._has_pad: bool | None = None

    # --- plumbing ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _card(self, purpose: str) -> Iterator[SocialSecurityCard]:
        """The card in the reader, under the reader's lease for the whole block."""
        with self.reader.card(_HOLDERS[purpose], self.settings.busy_wait) as transport:
            try:
                yield SocialSecurityCard.open(transport)
            except errors.CardRemoved as exc:  # pulled mid-call: the national "no card"
                raise errors.NoCard(str(exc)) from None
            except errors.CommunicationError as exc:  # a link lost with the card gone: no card
                if self.reader.present():
                    raise
                raise errors.NoCard(str(exc)) from None

    def _security(self, profile: Profile) -> SecurityModule:
        """The security module for ``profile``, opened once and kept (KeysRequired: none)."""
        if self._keys is None:
            raise errors.KeyStoreMissing(
                _("this agent has no key store"),
                [("keystore", _("start the agent with a key store or the PSAM's reader"))],
            )
        with self._modules_lock:
            module = self._modules.get(profile.name)
            if module is None:
                module = self._keys(profile)
                self._modules[profile.name] = module
            return module

    def _forget_security(self, profile: Profile) -> None:
        """Drop a module that failed on its own link (a PSAM pulled): reopened next time."""
        with self._modules_lock:
            self._modules.pop(profile.name, None)

    def _with_keys(self, card: SocialSecurityCard) -> None:
        card.security = self._security(card.profile)

    def _pin_source(self, given: bool) -> None:
        """Refuse, before the card is touched, a PIN source this service's mode forbids."""
        mode = self.settings.pinpad
        if given and mode == "required":
            raise errors.InvalidInput(
                _("this service takes PINs only on the reader's PIN pad"),
                [("pin", _("leave it out: the holder types it on the PIN pad"))],
            )
        if not given and mode == "off":
            raise errors.InvalidInput(
                _("no PIN given, and this service does not use the PIN pad"),
                [("pin", _("the PIN the holder typed (6 digits)"))],
            )
        if not given and self._has_pad is False:  # seen before: this reader has no pad
            raise errors.InvalidInput(
                _("no PIN given and the reader has no PIN pad"),
                [("pin", _("the PIN the holder typed (6 digits)"))],
            )

    def _pad(self, manager: PinManager, given: bool) -> dict[int, int] | None:
        """The pad's features when the PIN is to be typed on it (None: the caller's PINs)."""
        if given:
            return None
        features = manager.pad_features()
        self._has_pad = features is not None
        if features is None:
            raise errors.InvalidInput(
                _("no PIN given and the reader has no PIN pad"),
                [("pin", _("the PIN the holder typed (6 digits)"))],
            )
        return features

    # --- status ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The reader, whether a card is in, whether a caller holds it (no card access)."""
        return {
            "reader": self.reader.name,
            "card_present": self.reader.present(),
            "busy": self.reader.holder is not None,
            "holder": self.reader.holder,
            "pin_pad": self._has_pad,
            "pinpad_mode": self.settings.pinpad,
            "service_point": self.settings.service_point,
            "keys": self._keys is not None,
        }

    # --- the cardholder ------------------------------------------------------------------

    def read_basic(self) -> dict[str, Any]:
        """``iReadCardBas``: the basic information by field and as the national pipe line.

        A 3.0 card needs the read key (RKSSSE) of the key store or PSAM; a 2.0 card
        reads freely. With keys, the card identification code's MAC is checked."""
        with self._card("read") as card:
            if self._keys is not None:
                self._with_keys(card)
            try:
                info = card.read_basic_info(terminal_device=self.settings.terminal_device)
            except errors.TokenError:  # the PSAM pulled, a token gone: reopened next call
                self._forget_security(card.profile)
                raise
            except errors.TransportError:  # the card is in: the PSAM's link failed
                if self._keys is not None and self.reader.present():
                    self._forget_security(card.profile)
                raise
        return {**info.to_json(), "line": info.national()}

    def pin_status(self) -> dict[str, Any]:
        """Tries left and blocked state (no try spent), and whether the reader has a PIN pad."""
        with self._card("status") as card:
            manager = PinManager(card)
            features = manager.pad_features() if self.settings.pinpad != "off" else None
            self._has_pad = features is not None
            return {**manager.status().to_json(), "pin_pad": features is not None}

    def verify_pin(self, pin: str | None = None) -> dict[str, Any]:
        """``iVerifyPIN``: ``pin`` given by the caller, or typed on the reader's pad (None).

        A malformed PIN or a PIN source the mode forbids is refused before the card is
        touched (no try spent)."""
        self._pin_source(pin is not None)
        if pin is not None:
            _pin_format(pin, "pin")
        with self._card("verify" if pin is not None else "pad") as card:
            manager = PinManager(card)
            features = self._pad(manager, pin is not None)
            if features is not None:
                manager.verify_on_pad(features)
            else:
                assert pin is not None
                manager.verify(pin)
            return {"verified": True, "pin_pad": features is not None, **_tries(manager)}

    def change_pin(self, old: str | None = None, new: str | None = None) -> dict[str, Any]:
        """``iChangePIN``: the current and new PIN from the caller (policy checked before
        the card is asked), or all three entries typed on the reader's pad (both None).

        A card pulled during the change answers "no card" (−2); whether the card took
        the new PIN is then for :meth:`pin_status` to tell (a change that went through
        gives the counter back in full). No PIN command is ever repeated on its own."""
        if (old is None) != (new is None):
            raise errors.InvalidInput(
                _("give both the current and the new PIN, or neither (PIN pad)"),
                [("old" if old is None else "new", _("missing"))],
            )
        self._pin_source(old is not None)
        if old is not None and new is not None:
            _pin_format(old, "old")
            _policy_first(new, previous=old)
        with self._card("change" if old is not None else "pad") as card:
            manager = PinManager(card)
            features = self._pad(manager, old is not None)
            if features is not None:
                manager.change_on_pad(features)
            else:
                assert old is not None and new is not None
                if self._keys is not None:  # a 3.0 card's birth date (policy) needs the read key
                    with contextlib.suppress(errors.SscardError):
                        self._with_keys(card)
                manager.change(old, new)
            return {"changed": True, "pin_pad": features is not None, **_tries(manager)}

    # --- staff (operator logged in; audited and reported like the CLI's) -----------------

    def reload_pin(self, operator: Operator, new: str) -> dict[str, Any]:
        """``iReloadPIN``: a new PIN for a holder who forgot it, enciphered and MACed under
        the card's reload key by the key store or PSAM; the counter back to full."""
        return self._staff(operator, "pin.reset", "reset", new)

    def unblock_pin(self, operator: Operator) -> dict[str, Any]:
        """PIN unblock [ours]: the counter back to full, the PIN unchanged."""
        return self._staff(operator, "pin.unblock", "unblock", None)

    def _staff(
        self, operator: Operator, action: str, purpose: str, new: str | None
    ) -> dict[str, Any]:
        if new is not None:
            _policy_first(new)
        with self._card(purpose) as card:
            conn = self._store()

            def audited(outcome: str, error: errors.SscardError) -> errors.SscardError:
                audit.record(
                    action,
                    operator=operator,
                    outcome=outcome,
                    error=error,
                    card_serial=card.serial,
                    conn=conn,
                )
                return error

            try:
                if not operator.can(action):  # the app checked already; refuse here too
                    raise audited(
                        "refused", errors.NotAuthorized(operator.id, operator.role, action)
                    )
                try:
                    self._with_keys(card)
                except errors.SscardError as exc:  # no key store, PSAM missing: audited
                    audited("failed", exc)
                    raise
                manager = PinManager(card)
                if new is not None:
                    manager.check_new(new)  # before the card gets the PIN command
                try:
                    return staff_action(
                        manager,
                        action,
                        conn=conn,
                        operator=operator,
                        service_point=self.settings.service_point,
                        new_pin=new,
                    )
                except errors.TokenError:  # the PSAM pulled, a token gone: reopened next call
                    self._forget_security(card.profile)
                    raise
                except errors.TransportError:  # the card is in: the PSAM's link failed
                    if self.reader.present():
                        self._forget_security(card.profile)
                    raise
            finally:
                conn.close()


def _tries(manager: PinManager) -> dict[str, Any]:
    status = manager.status()
    return {"tries_left": status.tries_left, "try_limit": status.try_limit}


@functools.cache
def _pin_length() -> int | None:
    """The PIN length every card profile shares (None when they differ: the card decides)."""
    lengths = {load_profile(name).pin.length for name in card_profiles()}
    return lengths.pop() if len(lengths) == 1 else None


def _pin_format(pin: str, field: str) -> None:
    """A caller's PIN must be digits of the cards' PIN length (checked before the card)."""
    length = _pin_length()
    if not (pin.isascii() and pin.isdigit()) or (length is not None and len(pin) != length):
        raise errors.InvalidInput(
            _("invalid PIN"),
            [(field, _("must be exactly {length} digits").format(length=length or 6))],
        )


def _policy_first(new: str, *, previous: str | None = None) -> None:
    """The PIN policy's rules that need no card (length, repeats, runs, the previous PIN),
    before the card is touched; the birth-date rule follows on the card, still before any
    PIN command (:meth:`PinManager.check_new`)."""
    PinPolicy(length=_pin_length() or len(new)).check(new, previous=previous)
