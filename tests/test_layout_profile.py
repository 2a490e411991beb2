"""Card profiles: shipped profiles match the spec, extends/merge, schema errors name the path."""

from __future__ import annotations

import json
from functools import reduce
from pathlib import Path
from typing import Any

import pytest

from sscard.errors import InvalidInput, ProfileError
from sscard.keys.scheme import KeyScheme
from sscard.layout import AccessCondition, load_profile, shipped_profiles
from sscard.layout.loader import validate_profile_data

SERIAL = bytes.fromhex("0102030405060708")


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def resolved(name: str = "national-3") -> dict[str, Any]:
    return load_profile(name).to_data()


def problems_of(exc: pytest.ExceptionInfo[ProfileError]) -> dict[str, str]:
    return dict(exc.value.problems)


def test_default_profile_is_ss3_sm4() -> None:
    assert load_profile().name == "national-3"
    assert load_profile(None) == load_profile("national-3")


@pytest.mark.parametrize(
    ("name", "algorithm", "version", "spec_version", "block"),
    [("national-3", "sm4", 0x03, "3.00", 16), ("national-2", "3des", 0x02, "2.00", 8)],
)
def test_shipped_profiles_follow_the_spec_table(
    name: str, algorithm: str, version: int, spec_version: str, block: int
) -> None:
    p = load_profile(name)
    assert p.algorithm == algorithm
    assert p.production is False
    assert {s.algorithm for s in p.key_scheme.slots} == {algorithm}
    assert p.ef("EF05").record(3).constant == spec_version
    assert p.command_set.block_size == block and p.command_set.mac_length == 4
    atr = p.atr(SERIAL)
    assert len(atr) == 17
    assert atr[:4] == bytes.fromhex("3B8C8001")
    assert atr[4:8] == bytes.fromhex("535343") + bytes([version])
    assert atr[8:16] == SERIAL  # ATR bytes 9..16, 1-based
    assert reduce(lambda a, b: a ^ b, atr[1:]) == 0  # ISO 7816-3: T0..TCK XOR to zero
    assert p.atr_template.serial(atr) == SERIAL


def test_atr_of_the_other_profile_or_a_bad_tck_has_no_serial() -> None:
    ss3, ss2 = load_profile("national-3"), load_profile("national-2")
    assert ss3.atr_template.serial(ss2.atr(SERIAL)) is None
    broken = bytearray(ss3.atr(SERIAL))
    broken[-1] ^= 1
    assert ss3.atr_template.serial(bytes(broken)) is None
    with pytest.raises(InvalidInput):
        ss3.atr(b"\x01\x02")


def test_both_profiles_share_one_layout() -> None:
    def layout(name: str) -> list[Any]:
        data = resolved(name)
        for f in data["files"]:
            for k in f.get("keys", []):
                k.pop("algorithm")
            for r in f.get("records", []):
                r.pop("value", None)
        return data["files"]

    assert layout("national-3") == layout("national-2")


def test_file_tree_matches_the_spec() -> None:
    p = load_profile()
    assert p.df("MF").fid == bytes.fromhex("3F00")
    ssse = p.df("SSSE")
    assert ssse.df_name == bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")
    assert ssse.df_name == "sx1.sh.社会保障".encode("gbk")
    assert [f.id for f in p.path("EF06")] == ["MF", "SSSE", "EF06"]
    assert (p.ef("EF05").sfi, p.ef("EF06").sfi) == (5, 6)
    assert {f.id for f in p.children("SSSE") if f.is_df} == {f"DF0{i}" for i in range(1, 6)}
    ef06 = p.ef("EF06")
    assert [(r.tag, r.length, r.field) for r in ef06.records] == [
        (0x08, 18, "ssn"),
        (0x09, 30, "name"),
        (0x4E, 20, "name_ext"),
        (0x0A, 1, "gender"),
        (0x0B, 1, "ethnicity"),
        (0x0C, 3, "birthplace"),
        (0x0D, 4, "birth_date"),
    ]
    assert [r.tag for r in p.ef("EF05").records] == [1, 2, 3, 4, 5, 6, 7]  # record number = tag
    assert p.pin.length == 6 and p.pin.try_limit == 6 and p.pin.encoding == "bcd-packed"
    with pytest.raises(KeyError):
        p.ef("SSSE")
    with pytest.raises(KeyError):
        p.df("EF05")


def test_access_conditions_match_the_spec() -> None:
    p = load_profile()
    ef05 = p.ef("EF05").access
    assert ef05 is not None and ef05.read_is_free
    assert ef05.write == (AccessCondition("ext-auth", "SSSE", 1),)
    df01 = p.ef("DF01.EF05").access
    assert df01 is not None and not df01.read_is_free
    assert AccessCondition("sm", "DF01") in df01.write
    df04 = p.ef("DF04.EF05").access
    assert df04 is not None
    assert {c.kind for c in df04.read} == {"pin", "ext-auth"}


def test_key_scheme_is_built_from_the_profile() -> None:
    p = load_profile("national-2")
    assert isinstance(p.key_scheme, KeyScheme)
    assert p.key_scheme.find("SSSE", "IAK", 1).algorithm == "3des"
    assert {s.type for s in p.key_scheme.in_df("SSSE")} == {"MK", "EAK", "IAK", "PUK", "RPK", "STK"}
    assert {s.type for s in p.key_scheme.in_df("MF")} == {"MK", "TK"}
    for df in ("DF01", "DF02", "DF03", "DF04", "DF05"):
        assert p.key_scheme.find(df, "EAK", 1).levels == 3


@pytest.mark.parametrize("name", ["national-3", "national-2"])
def test_resolved_profile_json_validates_and_loads_back_equal(name: str, tmp_path: Path) -> None:
    p = load_profile(name)
    assert validate_profile_data(p.to_data()) == p
    assert load_profile(write(tmp_path / "copy.json", p.to_data())) == p


def test_base_layout_cannot_be_loaded_on_its_own() -> None:
    assert "national-base" in shipped_profiles()
    with pytest.raises(ProfileError, match="base layout"):
        load_profile("national-base")


def test_unknown_profile_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ProfileError, match="national-3"):
        load_profile("no-such-profile")


def test_unknown_keys_are_errors_naming_their_path(tmp_path: Path) -> None:
    data = resolved()
    data["colour"] = "blue"
    data["files"][2]["records"][0]["tagg"] = "01"
    data["atr"]["tck"] = True
    with pytest.raises(ProfileError) as info:
        load_profile(write(tmp_path / "bad.json", data))
    problems = problems_of(info)
    assert problems["colour"] == "unknown key"
    assert problems["files[2].records[0].tagg"] == "unknown key"
    assert problems["atr.tck"] == "unknown key"
    assert "files[2].records[0].tagg" in str(info.value)


def test_unknown_key_in_an_extending_profile_names_its_path(tmp_path: Path) -> None:
    child = {
        "name": "city-x",
        "extends": "national-3",
        "files": [{"id": "EF06", "acess": {"read": ["free"], "write": ["never"]}}],
    }
    with pytest.raises(ProfileError) as info:
        load_profile(write(tmp_path / "city.json", child))
    assert problems_of(info) == {"files[0].acess": "unknown key"}


def test_wrong_types_and_missing_keys_name_their_path(tmp_path: Path) -> None:
    data = resolved()
    data["files"][3]["sfi"] = "six"
    del data["pin"]["try_limit"]
    data["files"][2]["access"]["read"] = ["everybody"]
    with pytest.raises(ProfileError) as info:
        load_profile(write(tmp_path / "bad.json", data))
    problems = problems_of(info)
    assert "files[3].sfi" in problems
    assert problems["pin.try_limit"] == "missing"
    assert "files[2].access.read[0]" in problems


def test_extends_merges_by_id_and_overrides(tmp_path: Path) -> None:
    child = {
        "name": "city-x",
        "description": "a city's own variant",
        "extends": "national-3",
        "production": True,
        "pin": {"try_limit": 3},
        "files": [
            {"id": "EF06", "records": [{"no": 2, "length": 28}]},
            {"id": "DF02", "keys": [{"type": "EAK", "id": 2, "version": 1}]},
            {
                "id": "DF02.EF06",
                "type": "linear-fixed",
                "parent": "DF02",
                "fid": "EF06",
                "sfi": 6,
                "record_count": 1,
                "record_length": 6,
                "access": {"read": ["ext-auth(DF02,02)"], "write": ["never"]},
                "records": [
                    {"no": 1, "tag": "60", "length": 4, "encoding": "bcd-date", "field": "x.since"}
                ],
            },
        ],
    }
    p = load_profile(write(tmp_path / "city.json", child))
    base = load_profile("national-3")
    assert (p.name, p.production, p.description) == ("city-x", True, "a city's own variant")
    assert p.pin.try_limit == 3 and p.pin.length == 6
    assert p.ef("EF06").record(2).length == 28
    assert p.ef("EF06").record(2).encoding == "gbk"  # the rest of the record is inherited
    assert p.ef("EF06").record(1) == base.ef("EF06").record(1)
    assert p.key_scheme.find("DF02", "EAK", 2).algorithm == "sm4"
    assert p.key_scheme.find("DF02", "EAK", 1) == base.key_scheme.find("DF02", "EAK", 1)
    assert p.files[-1].id == "DF02.EF06"
    assert p.ef("EF05").record(3).constant == "3.00"


def test_extends_by_relative_path_and_cycles(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    write(tmp_path / "base.json", {**resolved("national-2"), "name": "base"})
    p = load_profile(write(sub / "leaf.json", {"name": "leaf", "extends": "../base.json"}))
    assert p.algorithm == "3des" and p.name == "leaf"
    write(tmp_path / "a.json", {"name": "a", "extends": "b.json"})
    write(tmp_path / "b.json", {"name": "b", "extends": "a.json"})
    with pytest.raises(ProfileError, match="cycle"):
        load_profile(tmp_path / "a.json")


def test_cross_references_are_checked(tmp_path: Path) -> None:
    data = resolved()
    ef05 = data["files"][2]
    ef05["access"]["write"] = ["ext-auth(SSSE,07)", "sm(EF06)"]
    ef05["records"][1]["value"] = "3132"  # two bytes in a 1-byte record
    data["files"][3]["records"][1]["tag"] = "08"  # duplicate tag in EF06
    data["files"][3]["parent"] = "EF05"
    data["pin"]["df"] = "DF09"
    with pytest.raises(ProfileError) as info:
        load_profile(write(tmp_path / "bad.json", data))
    problems = problems_of(info)
    assert "no external authentication key 07 in SSSE" in problems["files[2].access.write[0]"]
    assert "STK" in problems["files[2].access.write[1]"]
    assert "files[2].records[1].value" in problems
    assert "files[3].records[1].tag" in problems
    assert "files[3].parent" in problems
    assert "pin.df" in problems


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x",\n "files": [}', encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert any(field.startswith("line 2") for field, _ in info.value.problems)


def test_missing_file_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "absent.json")
