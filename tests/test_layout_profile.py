"""Card profiles: shipped profiles match the spec, extends/merge, schema errors name the path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sscard.errors import ProfileError
from sscard.keys.scheme import KeyScheme
from sscard.layout import AccessCondition, load_profile, loader, shipped_profiles
from sscard.layout.loader import validate_profile_data
from sscard.vocab import Algorithm

SERIAL = bytes.fromhex("0102030405060708")


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def resolved(name: str = "national-3") -> dict[str, Any]:
    return load_profile(name).to_data()


def problems_of(exc: pytest.ExceptionInfo[ProfileError]) -> dict[str, str]:
    return dict(exc.value.problems)


def test_default_profile_is_national_3() -> None:
    assert load_profile().name == "national-3"
    assert load_profile(None) == load_profile("national-3")


@pytest.mark.parametrize(
    ("name", "algorithm", "indicator", "spec_version", "block"),
    [("national-3", "sm4", 0x03, "3.00", 16), ("national-2", "3des", 0x01, "2.00", 8)],
)
def test_shipped_profiles_follow_the_spec_table(
    name: str, algorithm: str, indicator: int, spec_version: str, block: int
) -> None:
    p = load_profile(name)
    assert p.algorithm == algorithm
    assert p.production is False
    assert {s.algorithm for s in p.key_scheme.slots} == {algorithm}
    assert p.ef("EF05").record(3).constant == spec_version
    assert p.spec_version == spec_version and p.generation == spec_version[0]
    assert p.command_set.block_size == block and p.command_set.mac_length == 4
    # what recognition reads from the card: the FCI's 9F0C indicator and EF05 item 03
    assert p.algorithm.indicator == indicator
    assert p.record_by_tag("EF05", 0x03) == p.ef("EF05").record(3)
    # every DF carries its AID, D156000005 + DF number, beside its FID
    for i in range(1, 6):
        df = p.df(f"DF0{i}")
        assert df.fid == bytes.fromhex(f"DF0{i}")
        assert df.df_name == bytes.fromhex("D156000005") + bytes([i])


def test_algorithm_indicator_of_the_ssse_fci() -> None:
    """9F0C 03 86 01 xx: 01 DES/3DES, 02 SSF33, 03 SM4; absent means 01 (docs/card.md)."""
    assert (Algorithm.TDES.indicator, Algorithm.SM4.indicator) == (0x01, 0x03)
    assert Algorithm.from_indicator(None) is Algorithm.TDES
    assert Algorithm.from_indicator(0x01) is Algorithm.TDES
    assert Algorithm.from_indicator(0x03) is Algorithm.SM4
    assert Algorithm.from_indicator(0x02) is None  # SSF33: no such cards in sscard
    assert Algorithm.from_indicator(0x00) is None and Algorithm.from_indicator(0xFF) is None
    for a in Algorithm:
        assert Algorithm.from_indicator(a.indicator) is a


def test_profiles_have_no_atr_and_an_atr_block_is_refused(tmp_path: Path) -> None:
    """A card is recognised by what it answers, not by its ATR: profiles carry none."""
    for name in ("national-3", "national-2"):
        p = load_profile(name)
        assert "atr" not in p.to_data()
        assert not hasattr(p, "atr") and not hasattr(p, "atr_template")
    data = resolved()
    data["atr"] = {"prefix": "3B8C8001", "historical_prefix": "535343", "serial_length": 8}
    with pytest.raises(ProfileError) as info:
        load_profile(write(tmp_path / "old.json", data))
    assert problems_of(info) == {"atr": "unknown key"}


def test_both_profiles_share_one_layout() -> None:
    """national-3 is national-2's layout plus the 3.0 read protection, nothing else."""

    def layout(name: str) -> list[Any]:
        data = resolved(name)
        for f in data["files"]:
            for k in f.get("keys", []):
                k.pop("algorithm")
            for r in f.get("records", []):
                r.pop("value", None)
        return data["files"]

    three, two = layout("national-3"), layout("national-2")
    ssse = next(f for f in three if f["id"] == "SSSE")
    rk = [k for k in ssse["keys"] if k["type"] == "RK"]
    assert [k["id"] for k in rk] == [0x0A]
    ssse["keys"] = [k for k in ssse["keys"] if k["type"] != "RK"]
    protected = ["ext-auth(SSSE,0A)", "ext-auth(SSSE,01)"]
    ef05 = next(f for f in three if f["id"] == "EF05")
    assert [r["no"] for r in ef05["records"] if "read" in r] == [5, 6]
    for r in ef05["records"]:
        assert r.pop("read", protected) == protected
    ef06 = next(f for f in three if f["id"] == "EF06")
    assert ef06["access"]["read"] == protected
    ef06["access"]["read"] = ["free"]
    assert three == two


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
    rk = load_profile("national-3").key_scheme.find("SSSE", "RK", 0x0A)  # RKSSSE, the read key
    assert (rk.algorithm, rk.levels, rk.type.code) == ("sm4", 3, 0x08)
    assert {s.type for s in p.key_scheme.in_df("MF")} == {"MK", "TK"}
    for df in ("DF01", "DF02", "DF03", "DF04", "DF05"):
        assert p.key_scheme.find(df, "EAK", 1).levels == 3


@pytest.mark.parametrize("name", ["national-3", "national-2"])
def test_resolved_profile_json_validates_and_loads_back_equal(name: str, tmp_path: Path) -> None:
    p = load_profile(name)
    assert validate_profile_data(p.to_data()) == p
    assert load_profile(write(tmp_path / "copy.json", p.to_data())) == p


@pytest.mark.parametrize("name", shipped_profiles())
def test_every_shipped_profile_validates_against_the_schema(name: str) -> None:
    """Shipped profiles are built at run time without the schema check (no jsonschema
    import to read a card): this is where they are checked, each file and its extends chain."""
    data, _source = loader._load_resolved(name, None, (), validate=True)
    if not data.pop("abstract", False):
        assert loader._schema_problems(data, partial=False) == []
        assert loader._load(name, validate=True) == load_profile(name)


def test_base_layout_cannot_be_loaded_on_its_own() -> None:
    assert "national-base" in shipped_profiles()
    with pytest.raises(ProfileError, match="base layout"):
        load_profile("national-base")


def test_unknown_profile_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ProfileError, match="national-3"):
        load_profile("no-such-profile")


@pytest.mark.parametrize(
    ("retired", "successor"),
    [("ss3-sm4", "national-3"), ("ss2-3des", "national-2"), ("ss-generic", "national-base")],
)
def test_retired_profile_names_are_refused_naming_the_successor(
    retired: str, successor: str, tmp_path: Path
) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(retired)
    assert retired in str(info.value)
    assert problems_of(info) == {"profile": f"use {successor!r}, its national-spec successor"}
    assert retired not in shipped_profiles()
    # a city profile that still extends the reference card is refused the same way
    child = write(tmp_path / "city.json", {"name": "city-x", "extends": retired})
    with pytest.raises(ProfileError, match=successor):
        load_profile(child)


def test_national_3_protects_issue_expiry_and_ef06_per_record() -> None:
    p = load_profile("national-3")
    read_key = AccessCondition("ext-auth", "SSSE", 0x0A)
    staff = AccessCondition("ext-auth", "SSSE", 0x01)
    readers = {
        (r.file, r.tag): p.record_readers(r) for r in p.records() if r.file in ("EF05", "EF06")
    }
    for tag in (0x05, 0x06):
        assert readers[("EF05", tag)] == (read_key, staff)
    for tag in (0x01, 0x02, 0x03, 0x04, 0x07):  # recognition and the card number stay free
        assert readers[("EF05", tag)] == (AccessCondition("free"),)
    assert all(readers[k] == (read_key, staff) for k in readers if k[0] == "EF06")
    assert p.ef("EF05").access is not None and p.ef("EF05").access.read_is_free
    # a record without its own rule follows its EF
    assert p.ef("EF05").record(7).read is None
    # national-2 reads everything freely
    two = load_profile("national-2")
    assert all(
        two.record_readers(r) == (AccessCondition("free"),)
        for r in two.records()
        if r.file in ("EF05", "EF06")
    )


def test_a_record_read_rule_naming_a_missing_key_is_refused(tmp_path: Path) -> None:
    data = resolved("national-3")
    ef05 = data["files"][2]
    assert ef05["id"] == "EF05" and ef05["records"][4]["no"] == 5
    ef05["records"][4]["read"] = ["ext-auth(SSSE,0B)"]
    ef05["records"][5]["read"] = ["ext-auth(DF09,0A)"]
    with pytest.raises(ProfileError) as info:
        load_profile(write(tmp_path / "bad.json", data))
    rule = "files[2].records[{}].read[0]"
    assert problems_of(info) == {
        rule.format(4): "ext-auth(SSSE,0B): no external authentication key 0B in SSSE",
        rule.format(5): "ext-auth(DF09,0A): no external authentication key 0A in DF09",
    }
    ef05["records"][4]["read"] = ["anybody"]
    with pytest.raises(ProfileError) as info:
        load_profile(write(tmp_path / "bad.json", data))
    assert "files[2].records[4].read[0]" in problems_of(info)


def test_unknown_keys_are_errors_naming_their_path(tmp_path: Path) -> None:
    data = resolved()
    data["colour"] = "blue"
    data["files"][2]["records"][0]["tagg"] = "01"
    data["command_set"]["tck"] = True
    with pytest.raises(ProfileError) as info:
        load_profile(write(tmp_path / "bad.json", data))
    problems = problems_of(info)
    assert problems["colour"] == "unknown key"
    assert problems["files[2].records[0].tagg"] == "unknown key"
    assert problems["command_set.tck"] == "unknown key"
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
