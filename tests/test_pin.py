"""PIN management: library (in-process and through pcscd), CLI, kiosk flow, and no PIN
anywhere in logs, traces or output."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sscard import errors
from sscard.applets.cos import EmulatedCard
from sscard.applets.pcsc_rig import VPCD_READERS, card_in_reader
from sscard.cli.exit_codes import ExitCode
from sscard.keys.dev import DEV_CITY
from sscard.keys.entry import KeyEntry
from sscard.keys.security_module import SoftwareSecurityModule
from sscard.keys.software_store import SoftwareKeyStore
from sscard.kiosk import SCREEN, KioskSession
from sscard.layout import load_profile
from sscard.pin import PinManager
from sscard.pinpolicy import PinPolicyError
from sscard.transport import InProcessTransport, pcsc
from sscard.transport.base import Transport
from tests.cardkit import PIN, issued_card, pin_works, session
from tests.operatorkit import env_for

SSCARD = str(Path(sys.executable).with_name("sscard"))
NEW = "975310"
OTHER = "802461"


@pytest.fixture(params=["inprocess", "pcsc"])
def manager(request: pytest.FixtureRequest) -> Iterator[tuple[PinManager, EmulatedCard]]:
    card = issued_card()
    if request.param == "inprocess":
        transport: Transport = InProcessTransport(card)
        transport.connect()
        yield PinManager(session(transport, "national-3")), card
        transport.disconnect()
        return
    port: int = request.getfixturevalue("vpcd_port")
    with card_in_reader(card, port):
        transport = pcsc.PcscTransport(VPCD_READERS[port])
        transport.connect()
        yield PinManager(session(transport, "national-3")), card
        transport.disconnect()


def test_change_then_verify_with_the_new_pin(manager: tuple[PinManager, EmulatedCard]) -> None:
    m, _ = manager
    m.change(PIN, NEW)
    m.verify(NEW)
    with pytest.raises(errors.PinIncorrect) as info:
        m.verify(PIN)
    assert info.value.tries_left == 5


def test_count_down_to_blocked_then_staff_unblock_and_reload(
    manager: tuple[PinManager, EmulatedCard],
) -> None:
    m, _ = manager
    for left in (5, 4, 3, 2, 1):
        with pytest.raises(errors.PinIncorrect) as info:
            m.verify("000000")
        assert info.value.tries_left == left and f"{left} tr" in str(info.value)
    with pytest.raises(errors.PinBlocked, match="service point"):
        m.verify("000000")
    assert m.status().blocked
    with pytest.raises(errors.PinBlocked):
        m.verify(PIN)  # blocked: even the right PIN is refused
    m.unblock()
    assert m.status().tries_left == 6
    m.verify(PIN)  # the PIN was kept
    m.reload(OTHER)
    m.verify(OTHER)


def test_policy_is_checked_before_the_card_is_asked(
    manager: tuple[PinManager, EmulatedCard],
) -> None:
    m, _ = manager
    for bad, rule in (
        ("111111", "same-digits"),
        ("123456", "sequence"),
        ("491231", "birth-date"),
        (PIN, "previous"),
    ):
        with pytest.raises(PinPolicyError) as info:
            m.change(PIN, bad)
        assert info.value.rule == rule
    assert m.status().tries_left == 6  # no try spent, nothing sent
    m.verify(PIN)


def _stranger_module() -> SoftwareSecurityModule:
    store = SoftwareKeyStore(kind="root", city=None)
    for slot in load_profile("national-3").key_scheme.slots:
        store.add(
            KeyEntry(
                ref=slot.ref,
                version=slot.version,
                algorithm=slot.algorithm,
                levels=slot.levels,
                depth=0,
                value=os.urandom(16),
            )
        )
    return SoftwareSecurityModule(store, city=DEV_CITY)


def test_reload_with_a_wrong_key_is_refused_and_counts_down(
    manager: tuple[PinManager, EmulatedCard],
) -> None:
    m, card = manager
    m.card.security = _stranger_module()
    ssse = card.state.mf.children[0]
    rpk = ssse.key("RPK", 1)
    assert rpk is not None and rpk.tries_left == rpk.error_limit
    with pytest.raises(errors.BadMac):
        m.reload(OTHER)
    with pytest.raises(errors.BadMac):
        m.reload(OTHER)
    assert card.state.mf.children[0].key("RPK", 1).tries_left == rpk.error_limit - 2  # type: ignore[union-attr]
    m.verify(PIN)  # the PIN did not change


# --- CLI -----------------------------------------------------------------------------


def cli(
    card: Path, *args: str, stdin: str = "", role: str = "issuer", trace: bool = False
) -> subprocess.CompletedProcess[str]:
    head = ["--log-level", "trace"] if trace else []
    return subprocess.run(
        [SSCARD, *head, "-r", f"virtual:{card}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env_for(role),
        timeout=60,
    )


def test_cli_exit_codes(card_file: Path) -> None:
    wrong = cli(card_file, "pin", "verify", "--pin-stdin", stdin="000000\n")
    assert wrong.returncode == ExitCode.WRONG_PIN and "5 tries left" in wrong.stderr
    for _ in range(5):
        cli(card_file, "pin", "verify", "--pin-stdin", stdin="000000\n")
    blocked = cli(card_file, "--json", "pin", "status")
    assert json.loads(blocked.stdout)["blocked"] is True
    refused = cli(card_file, "pin", "verify", "--pin-stdin", stdin=f"{PIN}\n")
    assert refused.returncode == ExitCode.BLOCKED and "service point" in refused.stderr
    weak = cli(
        card_file, "pin", "change", "--pin-stdin", stdin=f"{PIN}\n654321\n654321\n", role="kiosk"
    )
    assert weak.returncode == ExitCode.INVALID_INPUT and "sequence" in weak.stderr


def test_staff_actions_need_their_role_and_are_audited(card_file: Path, tmp_path: Path) -> None:
    for _ in range(6):
        cli(card_file, "pin", "verify", "--pin-stdin", stdin="000000\n")
    kiosk = cli(card_file, "pin", "unblock", "--keystore", "dev", role="kiosk")
    assert kiosk.returncode == ExitCode.AUTH and "pin.unblock" in kiosk.stderr
    nokeys = cli(card_file, "pin", "unblock", role="service")
    assert nokeys.returncode == ExitCode.INVALID_INPUT and "--keystore" in nokeys.stderr
    ok = cli(card_file, "--json", "pin", "unblock", "--keystore", "dev", role="service")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["tries_left"] == 6
    reset = cli(
        card_file,
        "pin",
        "reset",
        "--keystore",
        "dev",
        "--pin-stdin",
        stdin=f"{OTHER}\n{OTHER}\n",
        role="service",
    )
    assert reset.returncode == 0, reset.stderr
    assert cli(card_file, "pin", "verify", "--pin-stdin", stdin=f"{OTHER}\n").returncode == 0
    db = sqlite3.connect(Path(os.environ["SSCARD_DATA_DIR"]) / "sscard.db")
    actions = db.execute(
        "SELECT action, outcome FROM audit_log WHERE action LIKE 'pin.%'"
    ).fetchall()
    assert ("pin.unblock", "ok") in actions and ("pin.reset", "ok") in actions
    assert ("pin.unblock", "refused") in actions
    events = [r[0] for r in db.execute("SELECT category FROM outbox_events").fetchall()]
    assert "pin.reset" in events and "pin.unblocked" in events


def test_no_pin_in_any_log_trace_or_output(card_file: Path) -> None:
    pins = [PIN, NEW, OTHER, "097351"]
    runs = [
        cli(card_file, "pin", "status", trace=True),
        cli(card_file, "pin", "verify", "--pin-stdin", stdin="097351\n", trace=True),
        cli(card_file, "pin", "verify", "--pin-stdin", stdin=f"{PIN}\n", trace=True),
        cli(
            card_file,
            "pin",
            "change",
            "--pin-stdin",
            stdin=f"{PIN}\n{NEW}\n{NEW}\n",
            role="kiosk",
            trace=True,
        ),
        cli(
            card_file,
            "pin",
            "reset",
            "--keystore",
            "dev",
            "--pin-stdin",
            stdin=f"{OTHER}\n{OTHER}\n",
            role="service",
            trace=True,
        ),
        cli(card_file, "pin", "unblock", "--keystore", "dev", role="service", trace=True),
        cli(card_file, "--json", "pin", "verify", "--pin-stdin", stdin=f"{OTHER}\n", trace=True),
    ]
    assert all(r.returncode == 0 for r in runs[2:]), [r.stderr for r in runs]
    assert "TRACE sscard.apdu" in runs[1].stderr  # the trace is really on
    text = "\n".join(r.stdout + r.stderr for r in runs)
    db_dump = "\n".join(
        sqlite3.connect(Path(os.environ["SSCARD_DATA_DIR"]) / "sscard.db").iterdump()
    )
    for p in pins:
        assert p not in text
        assert p not in db_dump
        spaced = " ".join(p[i : i + 2] for i in range(0, 6, 2))
        assert spaced not in text  # nor as hex bytes


# --- kiosk ---------------------------------------------------------------------------


class ScriptedUI:
    """A PIN pad that types the given PINs and can pull the card out at a step."""

    def __init__(self, pins: list[str], on_ask: dict[int, object] | None = None) -> None:
        self.pins = list(pins)
        self.asked = 0
        self.on_ask = on_ask or {}
        self.shown: list[str] = []

    def show(self, message: str) -> None:
        self.shown.append(message)

    def ask_pin(self, prompt: str) -> str | None:
        self.asked += 1
        action = self.on_ask.get(self.asked)
        if callable(action):
            action()
        return self.pins.pop(0) if self.pins else None


class Slot:
    """An in-process reader whose card can be pulled and put back."""

    def __init__(self, card: EmulatedCard) -> None:
        self.card = card
        self.transport = InProcessTransport(card)
        self.present = True

    def wait_card(self, stop: threading.Event, timeout: float | None = None) -> Transport | None:
        if not self.present:
            self.present = True  # the holder puts it back
            self.transport.insert(self.card)
        self.transport = InProcessTransport(self.card)
        self.transport.connect()
        return self.transport

    def wait_removal(self, stop: threading.Event) -> None:
        return None

    def pull(self) -> None:
        self.present = False
        self.transport.remove()


def test_kiosk_changes_the_pin() -> None:
    card = issued_card()
    ui = ScriptedUI([PIN, NEW, NEW])
    outcome = KioskSession(Slot(card), ui).run_once()
    assert outcome is not None and outcome.changed is True
    assert pin_works(card, NEW)


@pytest.mark.parametrize("step", [1, 2, 3])
def test_kiosk_card_pulled_before_the_change(step: int) -> None:
    card = issued_card()
    slot = Slot(card)
    ui = ScriptedUI([PIN, NEW, NEW], {step: slot.pull})
    outcome = KioskSession(slot, ui).run_once()
    assert outcome is not None and outcome.changed is False
    assert "not changed" in outcome.message
    assert pin_works(card, PIN)


@pytest.mark.parametrize("writes", [0, 1, 2, 3])
def test_kiosk_card_pulled_during_the_change(writes: int) -> None:
    # The power goes during CHANGE PIN after 0..3 EEPROM writes (3: after all of them,
    # before the answer). The kiosk asks for the card again and says what happened.
    card = issued_card()
    slot = Slot(card)

    def arm() -> None:
        # The third PIN prompt comes right before CHANGE PIN; the APDUs after it are
        # SELECT (skipped: already selected) and CHANGE PIN, the first one.
        card.arm_tear(1, writes if writes < 3 else 99)

    ui = ScriptedUI([PIN, NEW, NEW], {3: arm})
    outcome = KioskSession(slot, ui).run_once()
    assert card.tear is not None and card.tear.fired  # the power really went during CHANGE PIN
    assert any("insert it again" in m for m in ui.shown)
    assert outcome is not None and outcome.changed is (writes == 3)
    assert pin_works(card, NEW) is outcome.changed
    assert pin_works(card, PIN) is (not outcome.changed)


def test_kiosk_wrong_pin_and_timeout() -> None:
    card = issued_card()
    wrong = KioskSession(Slot(card), ScriptedUI(["000000", NEW, NEW])).run_once()
    assert wrong is not None and not wrong.changed and "5 tries left" in wrong.message
    timeout = KioskSession(Slot(card), ScriptedUI([])).run_once()
    assert timeout is not None and not timeout.changed and "Time is up" in timeout.message


@pytest.mark.parametrize("step", [1, 2, 3])
def test_kiosk_cancel_is_not_a_timeout(step: int) -> None:
    """A keypad answers None when nobody typed in time and "" when the holder cancelled:
    the kiosk says which, and the card got no PIN command either way."""
    card = issued_card()
    entries = [PIN, NEW, NEW][: step - 1]
    cancelled = KioskSession(Slot(card), ScriptedUI([*entries, ""])).run_once()
    assert cancelled is not None and cancelled.changed is False
    assert cancelled.message == SCREEN["cancelled"]
    timed_out = KioskSession(Slot(card), ScriptedUI(entries)).run_once()
    assert timed_out is not None and timed_out.message == SCREEN["time_up"]
    assert pin_works(card, PIN)
