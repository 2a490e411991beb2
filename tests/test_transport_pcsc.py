"""The PC/SC transport through the real stack: pcscd + vpcd + pyscard + the scripted card."""

from __future__ import annotations

import threading
import time

import pytest
from smartcard import scard

from sscard import errors
from sscard.apdu import CommandApdu
from sscard.applets import ScriptedCard
from sscard.applets.pcsc_rig import VPCD_READERS, card_in_reader
from sscard.protocol import ApduProtocol
from sscard.transport import pcsc
from sscard.transport.part10 import CM_IOCTL_GET_FEATURE_REQUEST, reader_features
from sscard.transport.resolve import open_transport
from tests.conftest import PluggedCard


def test_readers_listed_with_card_and_atr(scripted_card: PluggedCard) -> None:
    names = pcsc.list_readers()
    assert scripted_card.reader in names
    states = {s.name: s for s in pcsc.reader_states()}
    mine = states[scripted_card.reader]
    assert mine.card_present
    assert mine.atr == scripted_card.card.atr


def test_transmit_through_pcscd(scripted_card: PluggedCard) -> None:
    with pcsc.PcscTransport(scripted_card.reader) as transport:
        assert transport.atr == scripted_card.card.atr
        assert transport.protocol == "T=1"
        protocol = ApduProtocol(transport)
        r = protocol.send(CommandApdu(0x00, 0xA4, 0x04, 0x00, bytes.fromhex("A0000000031010")))
        assert r.data == bytes.fromhex("6F07840507A0000000")
        echo = protocol.transmit(0x80, 0xEE, 0, 0, bytes(range(200)), le=256)
        assert echo.data == bytes(range(200))
        with pytest.raises(errors.FileNotFound):
            protocol.transmit(0x00, 0xA4, 0, 0, b"\xdf\x99")
    assert bytes.fromhex("00A4040007A0000000031010") in scripted_card.card.received


def test_t0_handling_through_pcscd(t0_card: PluggedCard) -> None:
    with pcsc.PcscTransport(t0_card.reader) as transport:
        r = ApduProtocol(transport).transmit(0x80, 0xCB, 0x01, 0x2C)  # 300 bytes via 61xx
    assert r.data == bytes(i & 0xFF for i in range(300))
    assert sum(1 for a in t0_card.card.received if a[1] == 0xC0) == 2


def test_pick_reader_by_exact_name_and_substring() -> None:
    available = ["ACS ACR39U ICC Reader 00 00", "Virtual PCD 00 00", "Virtual PCD 00 01"]
    assert pcsc.pick_reader("Virtual PCD 00 01", available) == "Virtual PCD 00 01"
    assert pcsc.pick_reader("acr39", available) == "ACS ACR39U ICC Reader 00 00"
    with pytest.raises(errors.ReaderNotFound, match="matches 2 readers") as ambiguous:
        pcsc.pick_reader("virtual", available)
    assert ambiguous.value.available == ["Virtual PCD 00 00", "Virtual PCD 00 01"]
    with pytest.raises(errors.ReaderNotFound, match="no reader matches 'omnikey'") as missing:
        pcsc.pick_reader("omnikey", available)
    assert "Virtual PCD 00 01" in str(missing.value)
    with pytest.raises(errors.ReaderNotFound, match="several readers"):
        pcsc.pick_reader(None, available)
    assert pcsc.pick_reader(None, ["Only One"]) == "Only One"
    with pytest.raises(errors.ReaderNotFound, match="no reader"):
        pcsc.pick_reader(None, [])


def test_resolver_picks_the_only_reader_holding_a_card(scripted_card: PluggedCard) -> None:
    others = [s for s in pcsc.reader_states() if s.card_present and s.name != scripted_card.reader]
    if others:
        pytest.skip("another test run on this machine has a card in the other vpcd reader")
    transport = open_transport(None)
    assert transport.name == scripted_card.reader


def test_resolver_rejects_ambiguous_pattern(pcscd: None) -> None:
    with pytest.raises(errors.ReaderNotFound, match="matches 2 readers"):
        open_transport("virtual pcd")


def test_wait_for_insertion_and_removal(vpcd_port: int) -> None:
    reader = VPCD_READERS[vpcd_port]
    with pytest.raises(errors.NoCard, match=r"no card inserted within 0\.3 s"):
        pcsc.wait_for_card(reader, 0.3)
    card = ScriptedCard()
    holder: dict[str, bytes | None] = {}

    def wait() -> None:
        holder["atr"] = pcsc.wait_for_card(reader, 10)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    with card_in_reader(card, vpcd_port) as bridge:
        waiter.join(10)
        assert holder["atr"] == card.atr
        with pytest.raises(errors.CardNotRemoved):
            pcsc.wait_for_card(reader, 0.3, present=False)
        bridge.remove()
        assert pcsc.wait_for_card(reader, 10, present=False) is None
        bridge.insert()
        assert pcsc.wait_for_card(reader, 10) == card.atr


def test_card_pulled_out_mid_session_is_card_removed(scripted_card: PluggedCard) -> None:
    transport = pcsc.PcscTransport(scripted_card.reader)
    transport.connect()
    try:
        scripted_card.bridge.remove()
        pcsc.wait_for_card(scripted_card.reader, 10, present=False)
        with pytest.raises((errors.CardRemoved, errors.NoCard)):
            transport.transmit(bytes.fromhex("80EE00000101"))
    finally:
        transport.disconnect()
        scripted_card.bridge.insert()


def test_exclusive_by_default_shared_on_request(scripted_card: PluggedCard) -> None:
    with pcsc.PcscTransport(scripted_card.reader):
        other = pcsc.PcscTransport(scripted_card.reader, shared=True)
        with pytest.raises(errors.ReaderBusy, match="another application holds the reader"):
            other.connect()
    with (
        pcsc.PcscTransport(scripted_card.reader, shared=True) as a,
        pcsc.PcscTransport(scripted_card.reader, shared=True) as b,
    ):
        assert a.transmit(bytes.fromhex("80EE0000016101")) == b"a\x90\x00"
        assert b.transmit(bytes.fromhex("80EE0000016201")) == b"b\x90\x00"


def test_recovers_once_from_reset_by_another_application(scripted_card: PluggedCard) -> None:
    with (
        pcsc.PcscTransport(scripted_card.reader, shared=True) as mine,
        pcsc.PcscTransport(scripted_card.reader, shared=True) as other,
    ):
        other.reconnect(reset=True)  # pcscd then answers SCARD_W_RESET_CARD to `mine`
        hresult, _ = scard.SCardTransmit(
            other._card, scard.SCARD_PCI_T1, list(bytes.fromhex("80EE0000017A01"))
        )
        assert hresult == scard.SCARD_S_SUCCESS
        reconnects = []
        original = mine.reconnect

        def counting_reconnect(*, reset: bool = False) -> None:
            reconnects.append(reset)
            original(reset=reset)

        mine.reconnect = counting_reconnect  # type: ignore[method-assign]
        assert mine.transmit(bytes.fromhex("80EE0000017801")) == b"x\x90\x00"
        assert reconnects == [False]  # the reset was seen and recovered from, once


def test_no_reader_and_unknown_reader_errors(scripted_card: PluggedCard) -> None:
    transport = pcsc.PcscTransport("No Such Reader 00 00")
    with pytest.raises(errors.ReaderNotFound):
        transport.connect()


def test_vpcd_has_no_part_10(scripted_card: PluggedCard) -> None:
    """vpcd has no PC/SC part 10 (vsmartcard issues 264, 276): no features, no PIN pad."""
    with pcsc.PcscTransport(scripted_card.reader, shared=True) as transport:
        assert reader_features(transport) == {}
        with pytest.raises(errors.ReaderControlUnsupported, match="0x42000D48"):
            transport.control(CM_IOCTL_GET_FEATURE_REQUEST)
