"""What every emulated chip does the same way: the plumbing under the card OS and the PSAM.

``EmulatedChip`` is the :class:`~sscard.transport.base.CardLike` part both
:class:`~sscard.applets.cos.EmulatedCard` and
:class:`~sscard.applets.psam.EmulatedPsam` extend: power on and off over an
image that is locked while powered, the ``process`` loop (latency, the
one-time challenge, a status word for every APDU: a bug is logged and answered
6F00), the ISO header checks before the command table, Ne applied to the
answer, one atomic EEPROM write per ``_persist``, error counters spent before
the comparison, and tear plans. Each chip keeps in its own module its command
table, its volatile state and its lifecycle gates.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from sscard.apdu import CommandApdu
from sscard.applets.image import with_tck
from sscard.errors import CardRemoved, InvalidInput
from sscard.i18n import _
from sscard.keys.algorithms import FACTOR_LENGTH
from sscard.vocab import CLA, SW, WRONG_LE_SW1, tries_left_sw

log = logging.getLogger("sscard.applets")

CHALLENGE_LENGTH = FACTOR_LENGTH
"""GET CHALLENGE answers 8 bytes."""


def _sw(sw: int, data: bytes = b"") -> bytes:
    """A response: ``data`` followed by the status word."""
    return data + sw.to_bytes(2, "big")


OK = _sw(SW.OK)


class _Sw(Exception):
    """Internal: answer with this status word."""

    def __init__(self, sw: int) -> None:
        self.sw = sw


@dataclass(frozen=True)
class Latency:
    """Delays that model a real card: per APDU and per EEPROM write, in seconds."""

    apdu: float = 0.0
    write: float = 0.0

    @classmethod
    def named(cls, name: str) -> Latency:
        """``none`` or ``realistic`` (5 ms per APDU, 20 ms per EEPROM write)."""
        presets = {"none": cls(), "realistic": cls(0.005, 0.020)}
        if name not in presets:
            raise InvalidInput(
                _("unknown latency model"), [("latency", _("use none or realistic"))]
            )
        return presets[name]


@dataclass
class TearPlan:
    """Cut the power during APDU number ``apdu`` (1-based, counted from arming),
    after ``writes`` of its EEPROM writes have completed (0: before any)."""

    apdu: int
    writes: int = 0
    fired: bool = False


class TryCounter(Protocol):
    """A PIN or a key with an error counter."""

    tries_left: int

    @property
    def limit(self) -> int: ...


def spend_try(
    counter: TryCounter, matches: Callable[[], bool], persist: Callable[[], None]
) -> bool:
    """One try of a PIN or a key (docs/card.md, "Card-grade behaviour").

    6983 when no try is left. Otherwise the counter is decremented and
    persisted before the comparison, and given back in full (persisted) only
    after a match. True when it matched.
    """
    if counter.tries_left <= 0:
        raise _Sw(SW.AUTH_METHOD_BLOCKED)
    counter.tries_left -= 1
    persist()
    if not matches():
        return False
    if counter.tries_left != counter.limit:
        counter.tries_left = counter.limit
        persist()
    return True


def _honour_ne(command: CommandApdu, response: bytes) -> bytes:
    """Apply Ne (ISO 7816-3/4 command cases) to a handler's answer.

    A command without Le (case 1 or 3) gets no response data, only the status
    word; data longer than Ne answers ``6Cxx``, xx the exact length (00: 256).
    Le ``00`` means up to 256 bytes.
    """
    data = response[:-2]
    if not data:
        return response
    if command.le is None:
        return response[-2:]
    if len(data) > command.le:
        return _sw((WRONG_LE_SW1 << 8) | (len(data) & 0xFF))
    return response


class ChipState(Protocol):
    """What a chip's non-volatile state has in common: its serial and ATR."""

    serial: bytes
    atr: bytes  # empty: the chip's default ATR


S = TypeVar("S", bound=ChipState)


class ChipStorage(Protocol[S]):
    """Where a chip's EEPROM lives: each ``commit`` happens entirely or not at all."""

    def load(self) -> S: ...

    def commit(self, state: S) -> None: ...


Handler = Callable[[Any, CommandApdu, "bytes | None"], bytes]
_VALID_CLA = frozenset(CLA)


class EmulatedChip(Generic[S]):
    """An emulated chip over a :class:`ChipStorage`; subclasses bring the rest.

    A subclass sets ``DEFAULT_ATR`` (without its TCK) and ``NAME`` (for logs),
    registers its command table with :meth:`_define_commands`, and may extend
    ``_reset_volatile`` (its RAM), ``_begin_apdu`` and ``_gate`` (its lifecycle).
    """

    DEFAULT_ATR: ClassVar[bytes]
    NAME: ClassVar[str]
    _commands: ClassVar[Mapping[tuple[int, int], Handler]] = {}
    _known_ins: ClassVar[frozenset[int]] = frozenset()

    def __init__(
        self,
        storage: ChipStorage[S],
        *,
        latency: Latency | None = None,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.storage = storage
        self.latency = latency or Latency()
        self._random = random
        self._state = storage.load()
        self.powered = False
        self.tear: TearPlan | None = None
        self._apdus_since_arm = 0
        self._writes_this_apdu = 0
        self._challenge: bytes | None = None
        self._reset_volatile()

    @classmethod
    def _define_commands(cls, table: Mapping[tuple[int, int], Handler]) -> None:
        """The chip's command table, by ``(CLA, INS)``."""
        cls._commands = table
        cls._known_ins = frozenset(ins for _cla, ins in table)

    # --- CardLike ---------------------------------------------------------------------

    @property
    def atr(self) -> bytes:
        """The vendor's answer to reset: nothing in it identifies the chip or its serial."""
        return self._state.atr or with_tck(self.DEFAULT_ATR)

    @property
    def serial(self) -> bytes:
        return self._state.serial

    @property
    def state(self) -> S:
        """The non-volatile state as it is in RAM (read-only use)."""
        return self._state

    def power_on(self) -> bytes:
        """Cold reset: RAM is rebuilt from the EEPROM; security state is gone."""
        acquire = getattr(self.storage, "acquire", None)
        if acquire is not None:
            acquire()
        self._state = self.storage.load()
        self._reset_volatile()
        self.powered = True
        return self.atr

    def power_off(self) -> None:
        self.powered = False
        self._reset_volatile()
        release = getattr(self.storage, "release", None)
        if release is not None:
            release()

    def arm_tear(self, apdu: int, writes: int = 0) -> None:
        """Cut the power during the ``apdu``-th next APDU after ``writes`` EEPROM writes."""
        self.tear = TearPlan(apdu, writes)
        self._apdus_since_arm = 0

    def process(self, apdu: bytes) -> bytes:
        if self.latency.apdu:
            time.sleep(self.latency.apdu)
        if not self.powered:
            self.power_on()  # a reader always powers the chip before the first APDU
        self._apdus_since_arm += 1
        self._writes_this_apdu = 0
        challenge, self._challenge = self._challenge, None
        self._begin_apdu()
        try:
            response = self._dispatch(bytes(apdu), challenge)
        except _Sw as answer:
            response = _sw(answer.sw)
        except CardRemoved:
            raise
        except Exception:  # a chip never crashes: log the bug, answer "no precise diagnosis"
            log.exception(_("emulated %s: unexpected error"), _(self.NAME))
            response = _sw(SW.NO_PRECISE_DIAGNOSIS)
        self._maybe_tear(end_of_apdu=True)
        return response

    # --- volatile state and persistence ---------------------------------------------

    def _reset_volatile(self) -> None:
        """RAM at power on and off: extended by each chip for its own."""
        self._challenge = None

    def _begin_apdu(self) -> None:
        """Called before each APDU, once the challenge has been taken."""

    def _maybe_tear(self, *, end_of_apdu: bool = False) -> None:
        plan = self.tear
        if plan is None or plan.fired or self._apdus_since_arm != plan.apdu:
            return
        if end_of_apdu or self._writes_this_apdu >= plan.writes:
            plan.fired = True
            self.power_off()
            raise CardRemoved(
                _("emulated {chip}: power cut by the tear plan").format(chip=_(self.NAME))
            )

    def _persist(self) -> None:
        """One EEPROM write: the whole state, atomically."""
        self._maybe_tear()
        if self.latency.write:
            time.sleep(self.latency.write)
        self.storage.commit(self._state)
        self._writes_this_apdu += 1

    # --- dispatch ---------------------------------------------------------------------

    def _dispatch(self, raw: bytes, challenge: bytes | None) -> bytes:
        """Header checks in ISO order (length, CLA, INS, CLA for this INS, body), then
        the chip's gate, then the handler of ``(CLA, INS)``."""
        if len(raw) < 4:
            return _sw(SW.WRONG_LENGTH)
        cla, ins = raw[0], raw[1]
        if cla not in _VALID_CLA:
            return _sw(SW.CLA_NOT_SUPPORTED)
        if ins not in self._known_ins:
            return _sw(SW.INS_NOT_SUPPORTED)
        handler = self._commands.get((cla, ins))
        if handler is None:
            return _sw(SW.CLA_NOT_SUPPORTED)
        try:
            command = CommandApdu.parse(raw)
        except ValueError:
            return _sw(SW.WRONG_LENGTH)
        if command.is_extended:  # a short-APDU chip
            return _sw(SW.WRONG_LENGTH)
        gate = self._gate(ins)
        if gate is not None:
            return _sw(gate)
        return _honour_ne(command, handler(self, command, challenge))

    def _gate(self, ins: int) -> SW | None:
        """The status word refusing ``ins`` in the chip's lifecycle state (None: go on)."""
        return None

    # --- shared commands and checks ---------------------------------------------------

    def _get_challenge(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        """GET CHALLENGE ``00 84 00 00 08``: for the next command only."""
        if cmd.p1 or cmd.p2:
            return _sw(SW.INCORRECT_P1P2)
        if cmd.data or cmd.le != CHALLENGE_LENGTH:
            return _sw(SW.WRONG_LENGTH)
        self._challenge = self._random(CHALLENGE_LENGTH)
        return _sw(SW.OK, self._challenge)

    def _get_response(self, cmd: CommandApdu, ch: bytes | None) -> bytes:
        return _sw(SW.CONDITIONS_NOT_SATISFIED)  # T=1: nothing is ever pending

    def _spend_try(self, counter: TryCounter, matches: Callable[[], bool]) -> bool:
        """One try of a PIN or a key: :func:`spend_try`."""
        return spend_try(counter, matches, self._persist)

    def _check_key(self, key: TryCounter, ok: Callable[[], bool], fail: SW | None) -> None:
        """Spend a try of ``key``; on a mismatch answer ``fail`` (None: 63Cx)."""
        if not self._spend_try(key, ok):
            raise _Sw(fail if fail is not None else tries_left_sw(key.tries_left))
