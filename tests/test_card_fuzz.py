"""Random APDUs at a personalized card: it always answers a valid status word, never
raises, its image still loads, and records change only through authorised writes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sscard.applets.cos import EmulatedCard
from sscard.applets.factory import open_card_file
from sscard.applets.image import CardState, FileStorage, MemoryStorage
from tests.cardkit import issued_card

# Status words the card may answer (ISO 7816-4 and the card spec).
VALID_SW = {
    0x9000,
    0x6282,
    0x6283,
    0x6700,
    0x6981,
    0x6982,
    0x6983,
    0x6984,
    0x6985,
    0x6986,
    0x6988,
    0x6A80,
    0x6A81,
    0x6A82,
    0x6A83,
    0x6A86,
    0x6A88,
    0x6A89,
    0x6B00,
    0x6D00,
    0x6E00,
    0x9303,
}
INS = [
    0xA4,
    0xB2,
    0xDC,
    0xB0,
    0xD6,
    0x84,
    0x82,
    0x88,
    0x20,
    0x5E,
    0x24,
    0x1E,
    0x18,
    0x16,
    0xD4,
    0xE0,
    0xEA,
    0xC0,
    0xCA,
]
SSSE = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")

_TEMPLATE = issued_card()


def _records(state: CardState) -> dict[str, list[bytes | None]]:
    return {
        f"{i}:{f.label()}": [*f.records, bytes(f.data)]
        for i, f in enumerate(state.walk())
        if not f.is_df
    }


def _fresh() -> EmulatedCard:
    card = EmulatedCard(MemoryStorage(_TEMPLATE.storage.load()))
    card.power_on()
    return card


headers = st.tuples(
    st.sampled_from([0x00, 0x04, 0x80, 0x84, 0xA0, 0xFF]),
    st.one_of(st.sampled_from(INS), st.integers(0, 255)),
    st.integers(0, 255),
    st.integers(0, 255),
)


@st.composite
def apdus(draw: st.DrawFn) -> bytes:
    cla, ins, p1, p2 = draw(headers)
    head = bytes((cla, ins, p1, p2))
    shape = draw(st.sampled_from(["case1", "case2", "case3", "case4", "garbage"]))
    data = draw(st.binary(min_size=1, max_size=40))
    le = bytes((draw(st.integers(0, 255)),))
    if shape == "case1":
        return head
    if shape == "case2":
        return head + le
    if shape == "case3":
        return head + bytes((len(data),)) + data
    if shape == "case4":
        return head + bytes((len(data),)) + data + le
    return draw(st.binary(max_size=12))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(apdus(), min_size=1, max_size=25), st.booleans())
def test_random_apdus_never_break_the_card(sequence: list[bytes], start_in_ssse: bool) -> None:
    card = _fresh()
    before = _records(card.state)
    if start_in_ssse:
        card.process(SSSE)
    for apdu in sequence:
        response = card.process(apdu)
        assert len(response) >= 2
        sw = int.from_bytes(response[-2:], "big")
        assert sw in VALID_SW or sw & 0xFFF0 == 0x63C0 or sw >> 8 == 0x6C, hex(sw)
        if sw == 0x9000 and apdu[1:2] in (b"\xdc", b"\xd6"):
            raise AssertionError(f"an unauthorised write succeeded: {apdu.hex()}")
    reloaded = card.storage.load()  # the EEPROM still holds a loadable card …
    assert _records(reloaded) == before  # … with its records unchanged


@settings(max_examples=60, deadline=None)
@given(st.lists(apdus(), min_size=5, max_size=40))
def test_random_apdus_on_a_card_file(
    tmp_path_factory: pytest.TempPathFactory, sequence: list[bytes]
) -> None:
    # The same through the encrypted image file: it must always reopen.
    path = tmp_path_factory.mktemp("fuzz") / "card.img"
    storage = FileStorage(path, durable=False)
    storage.create(_TEMPLATE.storage.load())
    card = EmulatedCard(storage)
    card.power_on()
    card.process(SSSE)
    for apdu in sequence:
        sw = int.from_bytes(card.process(apdu)[-2:], "big")
        assert sw in VALID_SW or sw & 0xFFF0 == 0x63C0 or sw >> 8 == 0x6C
    card.power_off()
    again = open_card_file(path)
    assert _records(again.storage.load()) == _records(_TEMPLATE.storage.load())
