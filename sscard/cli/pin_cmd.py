"""``sscard pin`` and ``sscard kiosk``: the cardholder's PIN (regulation art. 16)."""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from sscard.card import SocialSecurityCard
from sscard.cli.auth import operator, require_operator
from sscard.cli.connect import connected_transport, service_point_option, staff_card
from sscard.cli.context import CliState, pass_state
from sscard.cli.keystore import keystore_options
from sscard.cli.secrets import read_pins
from sscard.i18n import _
from sscard.kiosk import KioskSession
from sscard.pin import PinManager, staff_action
from sscard.transport.slot import ReaderSlot, open_slot

_pin_stdin = click.option(
    "--pin-stdin",
    is_flag=True,
    help="Read PINs from stdin, one per line, in the order the prompts would ask them "
    "(scripts and tests; without it a reader's PIN pad is used when it has one).",
)


@contextmanager
def _manager(state: CliState) -> Iterator[PinManager]:
    with connected_transport(state) as transport:
        yield PinManager(SocialSecurityCard.open(transport))


@click.group()
def pin() -> None:
    """The cardholder PIN: status, verify, change; staff reset and unblock.

    On a reader with a PIN pad (PC/SC part 10; 'sscard readers' shows them)
    the holder types every PIN on the pad and sscard never sees it. Else PINs
    come from a hidden prompt (a new PIN is asked twice) or, for automation,
    from stdin lines with --pin-stdin; never from the command line. Exit
    codes: 3 wrong PIN (tries left in the message), 4 blocked, 7 refused by
    the PIN policy or a PIN of the wrong length on the pad, 1 PIN entry
    cancelled, timed out, or the two new PINs differ on the pad.

    \b
    Examples:
      sscard -r virtual:card.img pin status
      printf '802461\\n' | sscard pin verify --pin-stdin
      printf '802461\\n975310\\n975310\\n' | sscard pin change --pin-stdin
      sscard pin reset --keystore sp.ks        (service staff, new PIN typed by the holder)
    """


@pin.command()
@pass_state
def status(state: CliState) -> None:
    """Tries left and whether the PIN is blocked (spends no try)."""
    with _manager(state) as manager:
        st = manager.status()
    state.emit(st.to_json(), st.describe())


@pin.command()
@_pin_stdin
@pass_state
def verify(state: CliState, pin_stdin: bool) -> None:
    """Check a PIN (a wrong one spends a try); on the reader's PIN pad when it has one."""
    with _manager(state) as manager:
        features = None if pin_stdin else manager.pad_features()
        if features is not None:
            click.echo(_("Type the PIN on the reader's keypad."), err=True)
            manager.verify_on_pad(features)
        else:
            (value,) = read_pins(pin_stdin, [(_("PIN"), False)])
            manager.verify(value)
        st = manager.status()
    state.emit(
        {"verified": True, "pin_pad": features is not None, **st.to_json()}, _("PIN correct.")
    )


@pin.command()
@_pin_stdin
@require_operator("pin.change")
@pass_state
def change(state: CliState, pin_stdin: bool) -> None:
    """The holder changes the PIN: current PIN, then the new one twice.

    The new PIN is checked against the PIN policy before the card is asked. On a
    reader with a PIN pad all three are typed on the pad instead (the host never
    sees them, so the pad checks the length and the card the current PIN).
    """
    with _manager(state) as manager:
        features = None if pin_stdin else manager.pad_features()
        if features is not None:
            click.echo(
                _("On the reader's keypad: the current PIN, then the new PIN twice."), err=True
            )
            manager.change_on_pad(features)
        else:
            old, new = read_pins(pin_stdin, [(_("Current PIN"), False), (_("New PIN"), True)])
            manager.change(old, new)
    state.emit({"changed": True, "pin_pad": features is not None}, _("PIN changed."))


def _staff(
    state: CliState,
    action: str,
    keystore: str | None,
    fd: int | None,
    service_point: str,
    new_pin: str | None,
) -> None:
    with staff_card(state, keystore, fd) as (card, conn):
        manager = PinManager(card)
        if new_pin is not None:
            manager.check_new(new_pin)  # before the card gets the PIN command
        result = staff_action(
            manager,
            action,
            conn=conn,
            operator=operator(),
            service_point=service_point,
            new_pin=new_pin,
        )
    words = (
        _("New PIN set; the counter is back to {tries_left} tries.")
        if action == "pin.reset"
        else _("PIN unblocked: {tries_left} tries; the PIN itself is unchanged.")
    )
    state.emit(result, words.format(tries_left=result["tries_left"]))


@pin.command()
@_pin_stdin
@keystore_options
@service_point_option
@require_operator("pin.reset", record=False)
@pass_state
def reset(
    state: CliState,
    pin_stdin: bool,
    keystore: str | None,
    passphrase_fd: int | None,
    service_point: str,
) -> None:
    """Staff: set a new PIN for a holder who forgot it (PIN RELOAD) and reset the counter.

    The holder types the new PIN twice. It travels enciphered and MACed with
    this card's reload key from the key store; the action is audited and
    reported to the exchange platform (never the PIN).
    """
    (new,) = read_pins(pin_stdin, [(_("New PIN"), True)])
    _staff(state, "pin.reset", keystore, passphrase_fd, service_point, new)


@pin.command()
@keystore_options
@service_point_option
@require_operator("pin.unblock", record=False)
@pass_state
def unblock(
    state: CliState, keystore: str | None, passphrase_fd: int | None, service_point: str
) -> None:
    """Staff: unblock a blocked PIN (PIN UNBLOCK); the PIN stays what it was. Audited."""
    _staff(state, "pin.unblock", keystore, passphrase_fd, service_point, None)


# --- kiosk ------------------------------------------------------------------------


class TerminalUI:
    """Screen and keypad on a terminal: hidden input with a timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def show(self, message: str) -> None:
        click.echo(message)

    def ask_pin(self, prompt: str) -> str | None:
        click.echo(f"{prompt} ", nl=False)
        line = _read_hidden_line(self.timeout)
        click.echo("")
        return line


def _read_hidden_line(timeout: float) -> str | None:
    fd = sys.stdin.fileno()
    old: list[Any] | None = None
    if os.isatty(fd):
        old = termios.tcgetattr(fd)
        new = termios.tcgetattr(fd)
        new[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSADRAIN, new)
    try:
        ready = select.select([fd], [], [], timeout)[0]
        if not ready:
            return None
        line = sys.stdin.readline()
        return line.rstrip("\r\n") if line else None
    finally:
        if old is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)


@click.command()
@click.option(
    "--timeout",
    type=click.FloatRange(1, 600),
    default=30.0,
    show_default=True,
    help="Seconds to wait for each PIN before going back to the start.",
)
@click.option("--once", is_flag=True, help="Run one flow and exit (always so for virtual: cards).")
@click.option(
    "--pinpad",
    type=click.Choice(["auto", "required", "off"]),
    default="auto",
    show_default=True,
    help="auto: PINs on the reader's PIN pad when it has one; required: refuse a reader "
    "without one; off: PINs typed at this terminal.",
)
@require_operator("pin.change", record=False)
@pass_state
def kiosk(state: CliState, timeout: float, once: bool, pinpad: str) -> None:
    """A terminal PIN-change kiosk for one reader: insert, current PIN, new PIN twice, remove.

    Timeouts go back to the start; pulling the card at any step never leaves a
    half-changed PIN (the kiosk says whether it changed). Ctrl-C exits.

    \b
    Example:
      sscard operator login kiosk-07 && sscard -r "ACS ACR39U" kiosk
    """
    source = open_slot(state.reader)
    session = KioskSession(source, TerminalUI(timeout), reinsert_timeout=timeout, pinpad=pinpad)
    stop = threading.Event()
    try:
        while not stop.is_set():
            outcome = session.run_once(stop)
            if once or not isinstance(source, ReaderSlot) or outcome is None:
                break
    except KeyboardInterrupt:
        click.echo("\n" + _("Kiosk stopped."))
