"""Reader slots through the real stack (pcscd + vpcd): insert, removal, stop, timeout."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sscard.applets import ScriptedCard
from sscard.applets.pcsc_rig import VPCD_READERS, card_in_reader
from sscard.transport import InProcessTransport, pcsc
from sscard.transport.base import Transport
from sscard.transport.slot import ReaderSlot, StandingSlot, open_slot

pytestmark = pytest.mark.pcsc


class Waiter(threading.Thread):
    """Runs one slot wait in the background and keeps what it returned."""

    def __init__(self, slot: ReaderSlot, removal: bool = False, timeout: float | None = None):
        super().__init__(daemon=True)
        self.slot, self.removal, self.timeout = slot, removal, timeout
        self.stop = threading.Event()
        self.result: Transport | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if self.removal:
                self.slot.wait_removal(self.stop)
            else:
                self.result = self.slot.wait_card(self.stop, self.timeout)
        except BaseException as exc:
            self.error = exc


def _empty(port: int) -> ReaderSlot:
    reader = VPCD_READERS[port]
    pcsc.wait_for_card(reader, 10, present=False)
    return ReaderSlot(reader, poll=0.2)


def test_card_inserted_after_the_wait_starts_is_connected(vpcd_port: int) -> None:
    waiter = Waiter(_empty(vpcd_port), timeout=20)
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive()  # nothing in the reader yet
    card = ScriptedCard()
    with card_in_reader(card, vpcd_port):
        waiter.join(10)
        assert not waiter.is_alive() and waiter.error is None
        transport = waiter.result
        assert transport is not None and transport.connected
        try:
            assert transport.atr == card.atr
            assert card.atr == pcsc.reader_states([transport.name])[0].atr
        finally:
            transport.disconnect()


def test_removal_is_detected(vpcd_port: int) -> None:
    slot = _empty(vpcd_port)
    with card_in_reader(ScriptedCard(), vpcd_port):
        waiter = Waiter(slot, removal=True)
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive()  # the card is still in
    waiter.join(10)
    assert not waiter.is_alive() and waiter.error is None


def test_stop_event_ends_both_waits(vpcd_port: int) -> None:
    slot = _empty(vpcd_port)
    waiter = Waiter(slot)
    waiter.start()
    time.sleep(0.3)
    waiter.stop.set()
    waiter.join(3)
    assert not waiter.is_alive() and waiter.result is None and waiter.error is None
    with card_in_reader(ScriptedCard(), vpcd_port):
        remover = Waiter(slot, removal=True)
        remover.start()
        time.sleep(0.3)
        remover.stop.set()
        remover.join(3)
        assert not remover.is_alive() and remover.error is None


def test_wait_card_times_out_on_an_empty_reader(vpcd_port: int) -> None:
    slot = _empty(vpcd_port)
    started = time.monotonic()
    assert slot.wait_card(threading.Event(), timeout=1.0) is None
    assert 0.9 <= time.monotonic() - started < 3


def test_open_slot_for_an_emulated_card_stands(tmp_path: Path) -> None:
    from sscard.applets.factory import new_card_file

    path = tmp_path / "card.img"
    new_card_file(path, "national-3")
    slot = open_slot(f"virtual:{path}")
    assert isinstance(slot, StandingSlot) and not slot.in_memory
    stop = threading.Event()
    transport = slot.wait_card(stop)
    assert isinstance(transport, InProcessTransport) and transport.connected
    transport.disconnect()
    slot.wait_removal(stop)  # returns at once: the card never leaves
    stop.set()
    assert slot.wait_card(stop) is None
