"""APDU-level conformance of the emulated card (docs/card.md), in-process and
through pcscd + vpcd + pyscard, for both profiles."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sscard import errors
from sscard.apdu import CommandApdu
from sscard.applets.cos import EmulatedCard
from sscard.applets.image import DEFAULT_ATR, with_tck
from sscard.applets.pcsc_rig import VPCD_READERS, card_in_reader
from sscard.applets.vpcd import VpcdBridge
from sscard.card import SocialSecurityCard
from sscard.keys.algorithms import auth_cryptogram
from sscard.keys.dev import development_card_key
from sscard.layout import load_profile
from sscard.transport import InProcessTransport, pcsc
from sscard.transport.base import Transport
from tests.cardkit import PIN, PROFILES, SAMPLE_HOLDER, Slot, issued_card, session

SSSE_NAME = "7378312E73682EC9E7BBE1B1A3D5CF"


@dataclass
class PcscSlot:
    slot: Slot
    bridge: VpcdBridge
    reader: str


@pytest.fixture(scope="module")
def pcsc_slot(vpcd_port: int) -> Iterator[PcscSlot]:
    slot = Slot(issued_card("national-3"))
    with card_in_reader(slot, vpcd_port) as bridge:
        yield PcscSlot(slot, bridge, VPCD_READERS[vpcd_port])


@dataclass
class Link:
    card: EmulatedCard
    transport: Transport
    profile: str

    def send(self, text: str) -> tuple[bytes, int]:
        raw = self.transport.transmit(bytes.fromhex(text.replace(" ", "")))
        return raw[:-2], int.from_bytes(raw[-2:], "big")

    def sw(self, text: str) -> int:
        return self.send(text)[1]

    def session(self) -> SocialSecurityCard:
        return session(self.transport, self.profile)


@pytest.fixture(params=[(p, k) for k in ("inprocess", "pcsc") for p in PROFILES], ids=str)
def link(request: pytest.FixtureRequest) -> Iterator[Link]:
    profile, kind = request.param
    card = issued_card(profile)
    if kind == "inprocess":
        transport: Transport = InProcessTransport(card)
    else:
        ps: PcscSlot = request.getfixturevalue("pcsc_slot")
        if ps.slot.atr != card.atr:  # another profile: take the card out and put the new one in
            ps.bridge.remove()
            pcsc.wait_for_card(ps.reader, 10, present=False)
            ps.slot.card = card
            ps.bridge.insert()
            pcsc.wait_for_card(ps.reader, 10)
        ps.slot.card = card
        transport = pcsc.PcscTransport(ps.reader)
    transport.connect()
    try:
        yield Link(card, transport, profile)
    finally:
        transport.disconnect()


# --- identity and selection ------------------------------------------------------


def test_atr_is_the_vendors_and_the_serial_comes_from_get_data(link: Link) -> None:
    atr = link.transport.atr
    assert atr == with_tck(DEFAULT_ATR)  # the same vendor ATR for both generations
    assert atr[:5] == bytes.fromhex("3B8D800100") and atr[5:14] == b"SSCARDEMU"
    assert link.card.serial not in atr  # nothing in it identifies the card
    tck = 0
    for b in atr[1:-1]:
        tck ^= b
    assert atr[-1] == tck
    serial, sw = link.send("80CA000208")  # GET DATA: the chip serial
    assert sw == 0x9000 and serial == link.card.serial
    assert link.session().serial == link.card.serial


def test_select_by_fid_and_by_name(link: Link) -> None:
    assert link.sw("00A40000023F00") == 0x9000
    data, sw = link.send(f"00A404000F{SSSE_NAME}00")
    assert sw == 0x9000 and bytes.fromhex(SSSE_NAME) in data
    assert link.sw("00A4000C02EF05") == 0x9000
    assert link.sw("00A4000002DF01") == 0x9000
    assert link.sw("00A4000002DF99") == 0x6A82
    assert link.sw("00A4040C05A000000003") == 0x6A82
    assert link.sw("00A4010C02DF01") == 0x6A82  # DF01 is current: it has no child DF01
    assert link.sw(f"00A4040C0F{SSSE_NAME}") == 0x9000
    assert link.sw("00A4010C02DF01") == 0x9000  # child DF of the current DF (SSSE)
    assert link.sw("00A4020C02EF05") == 0x9000  # DF01's own EF05
    assert link.sw("00A4020C02EF06") == 0x6A82  # P1=02 looks under the current DF only
    assert link.sw("00A4000C02EF06") == 0x9000  # P1=00 also looks in the parent (SSSE)
    assert link.sw("00A4030002DF01") == 0x6A86  # unsupported P1
    assert link.sw("00A4000003DF0101") == 0x6700  # FID of 3 bytes


def test_select_mf_without_data(link: Link) -> None:
    assert link.sw(f"00A4040C0F{SSSE_NAME}") == 0x9000
    assert link.sw("00A40000") == 0x9000  # P1P2 0000, no data: the MF (case 1: nothing back)
    assert link.sw("00A4020C02EF05") == 0x6A82  # the MF is current: no EF05 under it
    fci, sw = link.send("00A4000000")  # case 2: the MF's FCI
    assert sw == 0x9000 and fci == bytes.fromhex("6F07 820138 83023F00")
    assert link.sw("00A4000C") == 0x9000


def test_select_by_path(link: Link) -> None:
    assert link.sw(f"00A4040C0F{SSSE_NAME}") == 0x9000
    fci, sw = link.send("00A4090004DF01EF0500")  # from the current DF (SSSE)
    # DF01.EF05: linear variable, records of up to 82 bytes, 4 of them
    assert sw == 0x9000 and fci == bytes.fromhex(
        "6F0E 820504210052 04 8302EF05 880105".replace(" ", "")
    )
    assert link.sw("00B2010400") == 0x6982  # DF01.EF05 is current: its records need DF01's key
    assert link.sw("00A4090C02DF01") == 0x6A82  # DF01 is current now: it has no child DF01
    assert link.sw("00A4090C02EF05") == 0x9000  # DF01's EF05
    assert link.sw("00A4080C02DF01") == 0x6A82  # from the MF: DF01 lies under SSSE (no FID)
    assert link.sw("00A4080C023F00") == 0x9000  # the MF itself
    assert link.sw("00A4090C04DF99EF05") == 0x6A82
    assert link.sw("00A4090C03DF01EF") == 0x6700  # half a FID
    assert link.sw("00A4080C") == 0x6700  # a path needs at least one FID


def test_an_ef_selected_in_the_parent_makes_the_parent_current(link: Link) -> None:
    link.sw(f"00A4040C0F{SSSE_NAME}")
    assert link.sw("00A4010C02DF01") == 0x9000
    assert link.sw("00A4000C02EF06") == 0x9000  # EF06 of SSSE: SSSE is the current DF again
    card_id, sw = link.send("00B2012C00")  # SFI 5 is found in SSSE (EF05 item 01: free on 3.0)
    assert sw == 0x9000 and card_id[:2] == b"\x01\x10"


def test_select_answers_fci_fcp_or_nothing_per_p2(link: Link) -> None:
    link.sw(f"00A4040C0F{SSSE_NAME}")
    fci, sw = link.send("00A4020002EF0500")
    # 6F: 82 descriptor (linear variable) ‖ data coding ‖ record length 0012 ‖ 7 records,
    # 83 FID, 88 SFI; no tag 80 for a record EF
    assert sw == 0x9000
    assert fci == bytes.fromhex("6F0E 820504210012 07 8302EF05 880105".replace(" ", ""))
    fcp, sw = link.send("00A4020402EF0500")
    assert sw == 0x9000 and fcp == b"\x62" + fci[1:]
    assert link.send("00A4020C02EF0500") == (b"", 0x9000)
    assert link.sw("00A4020802EF0500") == 0x6A86  # FMD: not supported
    df, sw = link.send(f"00A404000F{SSSE_NAME}00")
    # the application's FCI also carries the algorithm indicator in its proprietary template
    indicator = {"national-3": "03", "national-2": "01"}[link.profile]
    assert sw == 0x9000 and df == bytes.fromhex(
        f"6F1C 820138 840F{SSSE_NAME} A506 9F0C03 8601{indicator}".replace(" ", "")
    )


def test_the_card_honours_ne(link: Link) -> None:
    assert link.send("00A40000023F00") == (b"", 0x9000)  # case 3: the status word only
    assert link.send("00A40000023F0001") == (b"", 0x6C09)  # Le short: the exact length
    fci, sw = link.send("00A40000023F0009")
    assert sw == 0x9000 and len(fci) == 9
    fci, sw = link.send("00A40000023F0040")  # Le longer: what there is
    assert sw == 0x9000 and len(fci) == 9
    link.sw(f"00A4040C0F{SSSE_NAME}")
    assert link.send("00880001" + "08" + "A5" * 8)[0] == b""  # case 3: no cryptogram back
    assert link.send("0088000108" + "A5" * 8 + "04")[1] & 0xFF00 == 0x6C00


def test_free_records_read_by_sfi_and_current_ef(link: Link) -> None:
    link.sw(f"00A404000F{SSSE_NAME}")
    number, sw = link.send("00B2072C00")  # EF05 (SFI 5) record 7: card number
    assert sw == 0x9000 and number == b"\x07\x09" + SAMPLE_HOLDER["card_number"].encode()
    if link.profile == "national-3":  # EF06 only after the read authentication
        assert link.sw("00B2013400") == 0x6982
        link.session().authenticate_for_reading()
    ssn, sw = link.send("00B2013400")  # EF06 (SFI 6) record 1
    assert sw == 0x9000 and ssn == b"\x08\x12" + SAMPLE_HOLDER["ssn"].encode()
    assert link.sw("00A4000C02EF06") == 0x9000
    name_ext, sw = link.send("00B2030400")  # never written: tag ‖ len ‖ FF…
    assert sw == 0x9000 and name_ext == b"\x4e\x14" + b"\xff" * 20
    assert link.sw("00B2093400") == 0x6A83
    assert link.sw("00B2003400") == 0x6A83
    assert link.sw("00B2013700") == 0x6A86  # P2 not "record number"
    assert link.send("00B2013405")[1] == 0x6C14  # wrong Le: exact length is 0x14


def test_department_files_need_external_authentication(link: Link) -> None:
    c = link.session()
    c.select("DF01")
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        c.read_record("DF01.EF05", 1)
    c.external_authenticate("DF01")
    assert c.read_record("DF01.EF05", 1)[:1] != b""
    c.select("SSSE")  # another DF: the rights are gone
    c.select("DF01")
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        c.read_record("DF01.EF05", 1)


def test_write_needs_its_key_and_selection_clears_it(link: Link) -> None:
    c = link.session()
    record = b"\x07\x09" + b"B0000001V"
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        c.update_record("EF05", 7, record)
    c.external_authenticate("SSSE")
    c.update_record("EF05", 7, record)
    assert c.read_record("EF05", 7) == record
    c.select("SSSE", force=True)
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        c.update_record("EF05", 7, b"\x07\x09" + b"C0000001Y")
    assert c.read_record("EF05", 7) == record


def test_line_protected_update(link: Link) -> None:
    c = link.session()
    item = c.profile.ef("DF01.EF05").record(1)
    record = bytes((item.tag, item.length)) + b"\x11" * item.length
    c.update_record("DF01.EF05", 1, record, protected=True)  # write: ext-auth(DF01) or sm(DF01)
    c.external_authenticate("DF01")
    assert c.read_record("DF01.EF05", 1) == record
    # A MAC computed over other data is refused with 6988
    _ch, _ = link.send("0084000008")
    _data, sw = link.send("04DC012C" + f"{len(record) + 4:02X}" + record.hex() + "00000000")
    assert sw == 0x6988


# --- challenge and authentication ------------------------------------------------


def test_challenge_is_one_time(link: Link) -> None:
    c = link.session()
    c.select("SSSE")
    first = c.get_challenge()
    assert len(first) == 8 and first != c.get_challenge()
    challenge = c.get_challenge()
    assert c.security is not None
    slot = c.profile.key_scheme.find("SSSE", "EAK", 1)
    cryptogram = c.security.external_auth(c.serial, slot, challenge)
    assert link.sw("00A4000C02EF05") == 0x9000  # any other command uses the challenge up
    assert link.sw(f"00820001{len(cryptogram):02X}{cryptogram.hex()}") == 0x6984
    assert link.sw("0084000004") == 0x6700
    assert link.sw("0084000108") == 0x6A86


def test_external_authentication_counts_down_and_blocks(link: Link) -> None:
    c = link.session()
    c.select("SSSE")
    slot = c.profile.key_scheme.find("SSSE", "EAK", 1)
    lc = 8 if link.profile == "national-2" else 16
    for left in (14, 13):
        link.send("0084000008")
        assert link.sw(f"00820001{lc:02X}" + "00" * lc) == 0x63C0 | left
    c.external_authenticate("SSSE")  # right key: counter back to the limit
    for _ in range(slot.error_limit):
        link.send("0084000008")
        link.sw(f"00820001{lc:02X}" + "00" * lc)
    with pytest.raises(errors.KeyBlocked):
        c.external_authenticate("SSSE")
    assert link.sw(f"00820009{lc:02X}" + "00" * lc) == 0x6A88  # no such key


def test_internal_authentication_proves_the_card(link: Link) -> None:
    c = link.session()
    c.internal_authenticate()
    c.select("SSSE")
    response, sw = link.send("0088000108" + "A5" * 8 + "00")
    assert sw == 0x9000 and len(response) == (8 if link.profile == "national-2" else 16)
    assert link.sw("0088000107" + "A5" * 7) == 0x6700


def test_transport_key_refused_after_issuance(link: Link) -> None:
    profile = load_profile(link.profile)
    tk = development_card_key(profile.key_scheme.find("MF", "TK", 0), link.card.serial)
    link.sw("00A40000023F00")
    challenge, _ = link.send("0084000008")
    cryptogram = auth_cryptogram(tk, challenge, algorithm=profile.algorithm)
    # On an issued card KID 00 in the MF is the MK, not the TK: the TK cryptogram fails.
    sw = link.sw(f"00820000{len(cryptogram):02X}{cryptogram.hex()}")
    assert sw & 0xFFF0 == 0x63C0
    assert link.sw("80E00000020000") == 0x6985  # CREATE FILE after END PERSONALIZATION
    assert link.sw("80D4010115" + "00" * 21) == 0x6985  # plain WRITE KEY
    assert link.sw("80EA0000") == 0x6985


# --- PIN ---------------------------------------------------------------------------


def test_pin_verify_counts_down_blocks_and_change(link: Link) -> None:
    c = link.session()
    c.select("SSSE")
    assert link.sw("0020000000") in (0x63C6,)  # no data: tries left, none spent
    assert link.sw("0020000000") == 0x63C6
    assert link.sw("0020000003000000") == 0x63C5
    assert link.sw(f"0020000003{PIN}") == 0x9000
    assert link.sw("0020000000") == 0x9000  # verified (ISO 7816-4), no try spent
    assert c.pin_tries_left() == 6  # the session reads 9000 as a full counter
    c.select("SSSE", force=True)  # the security state is gone: the tries left again
    assert link.sw("0020000000") == 0x63C6  # reset after success
    assert link.sw(f"805E010007{PIN}FF246802") == 0x9000  # CHANGE PIN
    assert link.sw(f"0020000003{PIN}") == 0x63C5
    assert link.sw("0020000003246802") == 0x9000
    for left in (5, 4, 3, 2, 1):
        assert link.sw("0020000003111111") == 0x63C0 | left
    assert link.sw("0020000003111111") == 0x6983
    assert link.sw("0020000003246802") == 0x6983  # blocked: even the right PIN
    assert link.sw("0020000002246802") == 0x6700
    assert link.sw("00200000031234AB") == 0x6A80  # not BCD


def test_staff_unblock_and_reload(link: Link) -> None:
    c = link.session()
    c.select("SSSE")
    for _ in range(6):
        link.sw("0020000003999999")
    assert c.pin_tries_left() == 0
    slot = c.profile.key_scheme.find("SSSE", "PUK", 1)
    c.send_protected(CommandApdu(0x80, 0x24, 0, 0), slot)
    assert c.pin_tries_left() == 6
    assert link.sw(f"0020000003{PIN}") == 0x9000  # PIN kept
    c.reload_pin("802461")
    assert link.sw("0020000003802461") == 0x9000


def test_reload_with_a_wrong_mac_counts_down_the_reload_key(link: Link) -> None:
    c = link.session()
    c.select("SSSE")
    bs = 8 if link.profile == "national-2" else 16
    for _ in range(2):
        link.send("0084000008")
        assert link.sw(f"845E0000{bs + 4:02X}" + "00" * (bs + 4)) == 0x6988
    assert link.sw(f"845E0000{bs + 4:02X}" + "00" * (bs + 4)) == 0x6984  # challenge used up
    rpk = c.profile.key_scheme.find("SSSE", "RPK", 1)
    for _ in range(rpk.error_limit - 2):
        link.send("0084000008")
        link.sw(f"845E0000{bs + 4:02X}" + "00" * (bs + 4))
    with pytest.raises(errors.KeyBlocked):
        c.reload_pin("802461")
    assert link.sw(f"0020000003{PIN}") == 0x9000  # the PIN did not change


# --- blocking ----------------------------------------------------------------------


def test_application_block_temporary_then_unblock(link: Link) -> None:
    c = link.session()
    c.block_application()
    assert c.lifecycle() == "APP_BLOCKED_TEMPORARY"
    assert link.sw(f"00A404000F{SSSE_NAME}") == 0x6283
    assert link.sw(f"0020000003{PIN}") == 0x6985
    c.forget_selection()
    c.unblock_application()
    assert c.lifecycle() == "ISSUED"
    assert link.sw(f"0020000003{PIN}") == 0x9000


def test_application_block_permanent_and_card_block(link: Link) -> None:
    c = link.session()
    c.block_application(permanent=True)
    assert link.sw(f"00A404000F{SSSE_NAME}") == 0x9303
    assert link.sw(f"0020000003{PIN}") == 0x9303
    assert link.sw("00A40000023F00") == 0x9000
    assert c.lifecycle() == "APP_BLOCKED_PERMANENT"
    c.forget_selection()
    c.block_card()
    for apdu in ("00A40000023F00", "0084000008", f"0020000003{PIN}", "80CA000101"):
        assert link.sw(apdu) == 0x6A81
    assert c.lifecycle() == "CARD_BLOCKED"


# --- garbage -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00A400", 0x6700),  # shorter than a header
        ("A0A40000023F00", 0x6E00),  # class not supported
        ("0077000000", 0x6D00),  # unknown instruction
        ("80A40000023F00", 0x6E00),  # known INS, wrong class
        ("00A40000053F00", 0x6700),  # Lc larger than the data
        ("00A40000023F0000AA", 0x6700),  # trailing garbage
        ("00B0000000", 0x6986),  # READ BINARY without a current EF
        ("00A40000000001023F00", 0x6700),  # extended APDU
        ("80CA9F7F00", 0x6A88),  # GET DATA of an unknown object
    ],
)
def test_garbage_gets_iso_status_words(link: Link, apdu: str, sw: int) -> None:
    assert link.sw(apdu) == sw


def test_power_cycle_clears_security_state(link: Link) -> None:
    c = link.session()
    c.external_authenticate("SSSE")
    link.transport.reconnect(reset=True)
    c = link.session()
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        c.update_record("EF05", 7, b"\x07\x09" + b"B0000001V")
