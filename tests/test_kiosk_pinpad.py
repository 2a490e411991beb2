"""The kiosk on a PIN pad reader: the holder types every PIN on the pad, the host holds none.

The reader is the emulated PIN pad (sscard.applets.pinpad): vpcd has no PC/SC part
10, so this in-process reader is the test path (docs/card.md, "PIN pads").
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sscard import errors
from sscard.applets.cos import EmulatedCard
from sscard.applets.pinpad import EmulatedPinPad, Key, PullAt
from sscard.kiosk import SCREEN, KioskSession
from sscard.paths import default_store
from sscard.transport import InProcessTransport
from sscard.transport.base import Transport
from tests.cardkit import PIN, issued_card, pin_works, tries_left
from tests.operatorkit import env_for

NEW = "802461"


class NoKeypadUI:
    """The kiosk's screen; a host keypad that must never be asked for a PIN."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    def show(self, message: str) -> None:
        self.shown.append(message)

    def ask_pin(self, prompt: str) -> str | None:
        raise AssertionError(f"the host asked for a PIN with a PIN pad present: {prompt}")


class PadSlot:
    """The kiosk's reader with a PIN pad; the card can be pulled and put back."""

    def __init__(self, card: EmulatedCard, on_reinsert: tuple[str | Key, ...] = ()) -> None:
        self.card = card
        self.pad = EmulatedPinPad(card, "emulated PIN pad")
        self.on_reinsert = on_reinsert
        """What the holder types after putting the card back (when asked to)."""

    def wait_card(self, stop: threading.Event, timeout: float | None = None) -> Transport | None:
        if self.pad.card is None:
            self.pad.insert(self.card)  # the holder puts the card back ...
            self.pad.clear_keys()  # ... and stops typing what was meant for the change
            self.pad.press(*self.on_reinsert)
        self.pad.connect()
        return self.pad

    def wait_removal(self, stop: threading.Event) -> None:
        return None


def test_the_pin_changes_on_the_pad_and_no_pin_reaches_the_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    card = issued_card()
    slot = PadSlot(card)
    slot.pad.press(PIN, NEW, NEW)
    ui = NoKeypadUI()
    outcome = KioskSession(slot, ui).run_once()
    assert outcome is not None and outcome.changed is True
    assert SCREEN["pad_change"].format(tries=6) in ui.shown
    assert [p.text for p in slot.pad.prompts][-3:] == [
        "请输入密码",
        "请输入新密码",
        "请再次输入新密码",
    ]
    assert pin_works(card, NEW)
    for secret in (PIN, NEW):
        assert secret not in caplog.text
        assert secret not in repr(slot.pad)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ((Key.CANCEL,), "cancelled"),
        ((Key.TIMEOUT,), "time_up"),
        ((), "time_up"),  # nobody types: the pad gives up
        ((PIN, NEW, "111111"), "differ"),
        ((PIN, "12345", "12345"), "length"),
    ],
)
def test_cancel_timeout_mismatch_and_length_change_nothing_and_spend_no_try(
    keys: tuple[str | Key, ...], message: str
) -> None:
    card = issued_card()
    slot = PadSlot(card)
    slot.pad.press(*keys)
    outcome = KioskSession(slot, NoKeypadUI()).run_once()
    assert outcome is not None and outcome.changed is False
    assert outcome.message == SCREEN[message]
    assert tries_left(card) == 6 and pin_works(card, PIN)


def test_a_wrong_current_pin_says_the_tries_left() -> None:
    card = issued_card()
    slot = PadSlot(card)
    slot.pad.press("000000", NEW, NEW)
    outcome = KioskSession(slot, NoKeypadUI()).run_once()
    assert outcome is not None and outcome.changed is False
    assert outcome.message == SCREEN["wrong"].format(tries=5)


@pytest.mark.parametrize("after", [0, 1, 2])
def test_card_pulled_while_the_holder_types_changes_nothing(after: int) -> None:
    """Pulled before the APDU reaches the card: the counter is full, so the kiosk asks the
    holder (saying why) to type the new PIN once; it does not verify, so not changed."""
    card = issued_card()
    slot = PadSlot(card, on_reinsert=(NEW,))
    slot.pad.pull_card(PullAt.ENTRY, after=after)
    slot.pad.press(PIN, NEW, NEW)
    ui = NoKeypadUI()
    outcome = KioskSession(slot, ui).run_once()
    assert SCREEN["reinsert"] in ui.shown and SCREEN["confirm_new"] in ui.shown
    assert pin_works(card, PIN)
    assert outcome is not None and outcome.changed is False
    assert outcome.message == SCREEN["not_changed_tries"].format(tries=5)


@pytest.mark.parametrize("writes", [0, 1, 2, 3])
def test_card_pulled_during_change_pin_the_outcome_is_what_the_card_holds(writes: int) -> None:
    """A tear during CHANGE PIN after ``writes`` EEPROM writes. Below a full counter the kiosk
    knows without any PIN; with a full one it asks for the new PIN on the pad (one entry
    scripted: the holder answers with the new PIN)."""
    card = issued_card()
    slot = PadSlot(card, on_reinsert=(NEW,))
    slot.pad.pull_card(PullAt.APDU, after=writes)
    slot.pad.press(PIN, NEW, NEW)
    ui = NoKeypadUI()
    outcome = KioskSession(slot, ui).run_once()
    assert outcome is not None
    changed = pin_works(card, NEW)
    assert outcome.changed is changed
    if not changed:
        assert pin_works(card, PIN)
    if SCREEN["confirm_new"] not in ui.shown:
        assert slot.pad.queued == 1  # nobody was asked for a PIN a second time


def test_a_partial_tries_counter_settles_without_any_pin() -> None:
    """One wrong PIN earlier: after a pull before the APDU the counter is still below the
    limit, so the PIN did not change, and nobody is asked for a PIN."""
    card = issued_card()
    slot = PadSlot(card)
    slot.pad.press("000000", NEW, NEW)
    KioskSession(slot, NoKeypadUI()).run_once()
    slot.pad.pull_card(PullAt.ENTRY, after=1)
    slot.pad.press(PIN, NEW, NEW)
    slot.on_reinsert = (NEW,)
    ui = NoKeypadUI()
    outcome = KioskSession(slot, ui).run_once()
    assert outcome is not None and outcome.changed is False
    assert outcome.message == SCREEN["not_changed_tries"].format(tries=5)
    assert SCREEN["confirm_new"] not in ui.shown


def test_pinpad_required_refuses_a_plain_reader_and_off_uses_the_host() -> None:
    card = issued_card()

    class PlainSlot(PadSlot):
        def wait_card(
            self, stop: threading.Event, timeout: float | None = None
        ) -> Transport | None:
            transport = InProcessTransport(self.card)
            transport.connect()
            return transport

    outcome = KioskSession(PlainSlot(card), NoKeypadUI(), pinpad="required").run_once()
    assert outcome is not None and outcome.message == SCREEN["pad_needed"]

    class HostUI(NoKeypadUI):
        def __init__(self) -> None:
            super().__init__()
            self.pins = [PIN, NEW, NEW]

        def ask_pin(self, prompt: str) -> str | None:
            return self.pins.pop(0)

    slot = PadSlot(card)
    outcome = KioskSession(slot, HostUI(), pinpad="off").run_once()
    assert outcome is not None and outcome.changed is True and slot.pad.prompts == []
    with pytest.raises(errors.InvalidInput):
        KioskSession(slot, HostUI(), pinpad="sometimes")


# --- the CLI on a PIN pad reader (the emulated pad: reader form pinpad:PATH) --------------

SSCARD = str(Path(sys.executable).with_name("sscard"))


def pad_cli(
    reader: str, *args: str, keys: str = "", role: str = "service"
) -> subprocess.CompletedProcess[str]:
    """``sscard -r READER ARGS`` with the emulated pad's key presses in its environment."""
    env = {**env_for(role), "SSCARD_PINPAD_KEYS": keys, "SSCARD_LOG_LEVEL": "trace"}
    return subprocess.run(
        [SSCARD, "--log-level", "trace", "-r", reader, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_pin_change_and_verify_on_the_pad_from_the_cli(card_file: Path) -> None:
    reader = f"pinpad:{card_file}"
    changed = pad_cli(reader, "--json", "pin", "change", keys=f"{PIN},{NEW},{NEW}", role="kiosk")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout) == {"changed": True, "pin_pad": True}
    verified = pad_cli(reader, "--json", "pin", "verify", keys=NEW)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["pin_pad"] is True
    # no PIN in the trace (every APDU logged; packed BCD in hex reads as the same digits),
    # the output, or the local store
    for run in (changed, verified):
        for secret in (PIN, NEW):
            assert secret not in run.stdout + run.stderr
    store = default_store()
    if store.exists():
        raw = store.read_bytes()
        for secret in (PIN, NEW):
            assert secret.encode() not in raw


@pytest.mark.parametrize(
    ("keys", "error", "national"),
    [
        ("cancel", "PinEntryCancelled", -31),
        ("timeout", "PinEntryTimedOut", -32),
        (f"{PIN},{NEW},111111", "PinsDiffer", -34),
        (f"{PIN},12345,12345", "PinLengthWrong", -33),
        (f"000000,{NEW},{NEW}", "PinIncorrect", -51),
    ],
)
def test_pad_errors_carry_their_national_codes(
    card_file: Path, keys: str, error: str, national: int
) -> None:
    result = pad_cli(f"pinpad:{card_file}", "--json", "pin", "change", keys=keys, role="kiosk")
    assert result.returncode != 0
    payload = json.loads(result.stderr.strip().splitlines()[-1])
    assert (payload["error"], payload["national_code"]) == (error, national)
    assert "Traceback" not in result.stderr


def test_pin_stdin_still_works_on_a_pad_reader(card_file: Path) -> None:
    result = subprocess.run(
        [SSCARD, "-r", f"pinpad:{card_file}", "pin", "verify", "--pin-stdin"],
        input=f"{PIN}\n",
        capture_output=True,
        text=True,
        env=env_for("service"),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_kiosk_pinpad_required_refuses_a_reader_without_a_pad(card_file: Path) -> None:
    result = subprocess.run(
        [SSCARD, "-r", f"virtual:{card_file}", "kiosk", "--once", "--pinpad", "required"],
        capture_output=True,
        text=True,
        env=env_for("kiosk"),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert SCREEN["pad_needed"] in result.stdout + result.stderr
