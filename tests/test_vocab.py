"""The card vocabulary (sscard.vocab) is one module both sides speak (issue 13, items 3 and 4)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from sscard import commands
from sscard.applets import cos
from sscard.applets.factory import new_memory_card
from sscard.keys.records import key_record, parse_key_record
from sscard.keys.scheme import KeySlot
from sscard.layout import load_profile
from sscard.layout.fcp import TAG_FCP, encode_fci, parse_fcp
from sscard.vocab import (
    INS,
    SW,
    Algorithm,
    FileType,
    KeyType,
    Lifecycle,
    tries_left,
    tries_left_sw,
)
from tests.cardkit import PROFILES, issued_card

SSCARD = Path(__file__).resolve().parent.parent / "sscard"


def test_vocab_imports_nothing_from_sscard() -> None:
    tree = ast.parse((SSCARD / "vocab.py").read_text(encoding="utf-8"))
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in imported if m.startswith("sscard")]


def test_members_render_as_the_strings_and_numbers_of_before() -> None:
    assert json.dumps([Lifecycle.ISSUED, FileType.LINEAR_FIXED, KeyType.EAK, Algorithm.SM4]) == (
        '["ISSUED", "linear-fixed", "EAK", "sm4"]'
    )
    assert f"{Lifecycle.CARD_BLOCKED} {KeyType.TK} {Algorithm.TDES}" == "CARD_BLOCKED TK 3des"
    assert f"{SW.APPLICATION_BLOCKED:04X}" == "9303" and SW.OK == 0x9000
    assert INS.PIN_RELOAD is INS.CHANGE_PIN and INS.SELECT == 0xA4


def test_tries_left_words() -> None:
    assert tries_left_sw(2) == 0x63C2 and tries_left_sw(20) == 0x63CF
    assert tries_left(0x63CA) == 10 and tries_left(SW.AUTH_METHOD_BLOCKED) is None


def test_lifecycle_codes_are_the_get_data_bytes() -> None:
    assert [life.code for life in Lifecycle] == [1, 2, 3, 4, 5, None]
    for life in Lifecycle:
        if life.code is not None:
            assert Lifecycle.from_code(life.code) is life
    assert Lifecycle.from_code(0x42) is None
    card = issued_card()
    assert card.process(commands.get_lifecycle().encode()) == b"\x03\x90\x00"


def test_key_record_bytes_are_the_enum_codes() -> None:
    slot = KeySlot("SSSE", "STK", 1, 2, "sm4")
    assert slot.type is KeyType.STK and slot.algorithm is Algorithm.SM4
    record = key_record(slot, bytes(16))
    assert record[0] == KeyType.STK.code == 0x06 and record[3] == Algorithm.SM4.code == 0x02
    parsed = parse_key_record(record)
    assert parsed.type is KeyType.STK and parsed.algorithm is Algorithm.SM4
    assert "type='STK'" in repr(parsed) and "algorithm='sm4'" in repr(parsed)
    assert {KeyType.from_code(t.code) for t in KeyType} == set(KeyType)


@pytest.mark.parametrize("name", PROFILES)
def test_profile_strings_become_enums_at_the_loader(name: str) -> None:
    profile = load_profile(name)
    assert isinstance(profile.algorithm, Algorithm)
    assert all(isinstance(f.type, FileType) for f in profile.files)
    assert all(
        isinstance(s.type, KeyType) and isinstance(s.algorithm, Algorithm)
        for s in profile.key_scheme.slots
    )
    data = json.loads(json.dumps(profile.to_data()))  # the JSON form is plain strings again
    assert data["files"][0]["type"] == "mf" and data["algorithm"] == str(profile.algorithm)


@pytest.mark.parametrize("name", PROFILES)
def test_select_answers_the_fci_layout_fcp_encodes(name: str) -> None:
    """The emulator's FCI and the host's FCP come from one codec (sscard.layout.fcp)."""
    profile = load_profile(name)
    card = issued_card(name)
    for spec in profile.files:
        if spec.fid is None or spec.parent not in ("MF", "SSSE"):
            continue
        card.process(commands.select_mf().encode())
        if spec.parent == "SSSE":
            assert profile.file("SSSE").df_name is not None
            card.process(commands.select_by_name(profile.file("SSSE").df_name).encode())
        p1 = 0x01 if spec.is_df else 0x02
        answer = card.process(bytes((0x00, INS.SELECT, p1, 0x00, 2)) + spec.fid + b"\x00")
        assert answer[-2:] == SW.OK.encode()
        fcp = parse_fcp(commands.create_file(spec).data)
        assert answer[:-2] == encode_fci(fcp), spec.id


def test_fcp_gives_the_record_structure_in_tag_82() -> None:
    """ISO 7816-4: descriptor ‖ data coding ‖ record length (2 B) ‖ record count; no tag 80."""
    profile = load_profile("national-3")
    data = commands.create_file(profile.file("EF05")).data
    assert bytes.fromhex("820504210012" + "07") in data and b"\x80\x02" not in data
    fcp = parse_fcp(data)
    assert (fcp.record_length, fcp.record_count, fcp.size) == (0x12, 7, None)
    old = bytes.fromhex("6211 820104 8302EF05 80020712 8604010001FF".replace(" ", ""))
    with pytest.raises(ValueError, match="tag 82"):
        parse_fcp(old)  # the structure in tag 80, as before: refused
    df = parse_fcp(commands.create_file(profile.file("DF01")).data)
    # DF01 has its FID and its AID (D156000005 ‖ DF number)
    assert encode_fci(df) == bytes.fromhex("6F0F 820138 8302DF01 8406D15600000501".replace(" ", ""))
    extra = bytes.fromhex("9F0C03860103")
    fci = encode_fci(df, template=TAG_FCP, proprietary=extra)
    head = "6217 820138 8302DF01 8406D15600000501 A506"
    assert fci == bytes.fromhex(head.replace(" ", "")) + extra


def test_the_card_os_serves_the_command_table_by_cla_and_ins() -> None:
    served = {ins for _, ins in cos._COMMANDS}
    assert served == set(INS) - {INS.RESET_RETRY_COUNTER, INS.DELIVERY_KEY, INS.CIPHER_DATA}
    # The three block / unblock commands are one handler.
    handlers = {cos._COMMANDS[(0x84, ins)] for ins in (0x1E, 0x18, 0x16)}
    assert len(handlers) == 1
    card = new_memory_card("national-3", bytes(8))
    assert card.process(bytes((0x80, INS.SELECT, 0, 0))) == SW.CLA_NOT_SUPPORTED.encode()
    assert card.process(bytes((0x00, 0x2C, 0, 0))) == SW.INS_NOT_SUPPORTED.encode()
