"""Holder data: validation (GB 11643 and more), holder files, round trip through card records."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sscard.errors import InvalidInput, RecordDecodeError, RecordEncodeError
from sscard.layout import (
    HOLDER_FIELDS,
    decode_records,
    encode_holder,
    load_profile,
    read_holders,
    validate_holder,
    validate_rows,
)
from sscard.layout.cardno import complete
from sscard.layout.codecs import CARD_ID_RID, CardId
from sscard.layout.gb11643 import PROVINCES, check_digit

SERIAL = bytes.fromhex("0011223344556677")
PROFILES = {name: load_profile(name) for name in ("national-3", "national-2")}

# GB 11643-1999, Appendix A: a woman born 1949-12-31 in Chaoyang district,
# Beijing (address code 110105) has the citizen ID number 11010519491231002X.
PUBLISHED_ID = "11010519491231002X"


def sign(data: bytes) -> bytes:
    """A stand-in for the security module's card-id MAC: depends on every input byte."""
    return hashlib.sha256(data).digest()[:4]


def good_holder(**changes: Any) -> dict[str, Any]:
    holder: dict[str, Any] = {
        "ssn": PUBLISHED_ID,
        "name": "张三",
        "gender": "2",
        "ethnicity": 1,
        "birthplace": "110105",
        "birth_date": "1949-12-31",
        "card_number": "A12345671",
        "issue_date": "2024-01-31",
        "expiry_date": "2034-01-31",
        "region": "310000",
        "issuer_org": "310000000000000000000001",
    }
    holder.update(changes)
    return holder


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as info:
        validate_holder(data)
    return dict(info.value.problems)


def test_check_digit_of_the_published_example() -> None:
    assert check_digit(PUBLISHED_ID[:17]) == "X"


def test_check_digit_catches_every_single_digit_error() -> None:
    body = PUBLISHED_ID[:17]
    for i in range(17):
        for d in "0123456789":
            if d != body[i]:
                assert check_digit(body[:i] + d + body[i + 1 :]) != "X"


def test_valid_holder_passes() -> None:
    assert validate_holder(good_holder()) is None
    assert validate_holder(good_holder(name_ext="\U00020000", ethnicity=97)) is None


def test_every_problem_is_reported_at_once() -> None:
    bad = good_holder(
        ssn="110105194912310021",
        name="张" * 16,
        ethnicity=60,
        birthplace="99",
        card_number="A1",
        issue_date="2024-02-30",
        colour="blue",
    )
    del bad["region"]
    found = problems(bad)
    assert set(found) == {
        "ssn",
        "name",
        "ethnicity",
        "birthplace",
        "card_number",
        "issue_date",
        "region",
        "colour",
    }
    assert "check digit" in found["ssn"] and "X" in found["ssn"]
    assert "32 bytes" in found["name"]
    assert found["region"] == "missing"
    assert found["colour"] == "unknown field"
    assert "real date" in found["issue_date"]


def test_id_must_agree_with_birth_date_and_gender() -> None:
    found = problems(good_holder(birth_date="1949-12-30", gender="1"))
    assert "1949-12-31" in found["birth_date"]
    assert "female" in found["gender"]
    assert validate_holder(good_holder(gender="9")) is None  # unspecified: no parity to check


def test_id_with_an_impossible_birth_date_or_province() -> None:
    body = "11010519490231002"  # 31 February
    assert "birth date" in problems(good_holder(ssn=body + check_digit(body)))["ssn"]
    body = "99010519491231002"
    assert "province" in problems(good_holder(ssn=body + check_digit(body)))["ssn"]


def test_dates_must_be_real_and_in_order() -> None:
    assert "after the issue date" in problems(good_holder(expiry_date="2024-01-31"))["expiry_date"]
    assert "birth date" in problems(good_holder(issue_date="1940-01-01"))["issue_date"]
    assert "YYYY-MM-DD" in problems(good_holder(expiry_date="31.01.2034"))["expiry_date"]


def test_division_codes_are_six_digits_of_a_real_province() -> None:
    assert "province" in problems(good_holder(region="990000"))["region"]
    assert "6 digits" in problems(good_holder(birthplace="1101050"))["birthplace"]


def test_rare_character_in_name_points_to_name_ext() -> None:
    found = problems(good_holder(name="王\U00020000"))
    assert "U+20000" in found["name"] and "name_ext" in found["name"]


def test_types_are_checked() -> None:
    found = problems(good_holder(ethnicity="Han", gender=1, name=""))
    assert set(found) == {"ethnicity", "gender", "name"}
    assert problems({"ssn": PUBLISHED_ID}).keys() == set(HOLDER_FIELDS) - {"ssn", "name_ext"}


# --- round trip through card records -----------------------------------------

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)  # GB 11643-1999, 2^(18-i) mod 11


def _check(body: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True)) % 11]


division = st.builds(
    lambda p, rest: p + rest,
    st.sampled_from(sorted(PROVINCES)),
    st.text("0123456789", min_size=4, max_size=4),
)
gbk_name = st.text(
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5) | st.sampled_from("·"),
    min_size=1,
    max_size=15,
)
rare = st.text(st.characters(min_codepoint=0x20000, max_codepoint=0x2A6D6), min_size=1, max_size=5)


@st.composite
def holders(draw: st.DrawFn) -> dict[str, Any]:
    born = draw(st.dates(dt.date(1900, 1, 1), dt.date(2020, 12, 31)))
    sequence = draw(st.text("0123456789", min_size=3, max_size=3))
    body = draw(division) + born.strftime("%Y%m%d") + sequence
    issued = draw(st.dates(born, dt.date(2030, 12, 31)))
    holder: dict[str, Any] = {
        "ssn": body + _check(body),
        "name": draw(gbk_name),
        "gender": draw(st.sampled_from(["1" if int(sequence[2]) % 2 else "2", "9"])),
        "ethnicity": draw(st.integers(1, 56) | st.just(97)),
        "birthplace": draw(division),
        "birth_date": born.isoformat(),
        "card_number": complete(
            draw(st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=8, max_size=8))
        ),
        "issue_date": issued.isoformat(),
        "expiry_date": (issued + dt.timedelta(days=draw(st.integers(1, 7300)))).isoformat(),
        "region": draw(division),
        "issuer_org": draw(st.text("0123456789", min_size=24, max_size=24)),
    }
    if draw(st.booleans()):
        holder["name_ext"] = draw(rare)
    return holder


@settings(max_examples=150, deadline=None)
@given(
    holder=holders(),
    profile=st.sampled_from(sorted(PROFILES)),
    serial=st.binary(min_size=8, max_size=8),
)
def test_valid_holders_round_trip_through_card_records(
    holder: dict[str, Any], profile: str, serial: bytes
) -> None:
    validate_holder(holder)
    p = PROFILES[profile]
    records = encode_holder(p, holder, serial, sign)
    for (file_id, no), raw in records.items():
        item = p.ef(file_id).record(no)
        assert raw[:2] == bytes([item.tag, item.length]) and len(raw) == item.length + 2
    assert decode_records(p, records) == holder
    card = decode_records(p, records, holder_only=False)
    sequence = serial[-4:]  # the card sequence: last 4 bytes of the chip serial
    mac_input = bytes.fromhex(holder["region"]) + CARD_ID_RID + sequence + serial
    expected = CardId(holder["region"], sequence, sign(mac_input))
    assert card["card_id"] == expected.hex
    assert card["spec_version"] == p.ef("EF05").record(3).constant


def test_encoded_records_follow_the_spec_layout() -> None:
    signed: list[bytes] = []

    def recording_sign(data: bytes) -> bytes:
        signed.append(data)
        return bytes.fromhex("A1B2C3D4")

    records = encode_holder(PROFILES["national-3"], good_holder(), SERIAL, recording_sign)
    # region || RID || card sequence (last 4 bytes of the chip serial) || MAC
    assert records[("EF05", 1)] == bytes.fromhex("0110310000D15600000544556677A1B2C3D4")
    # the MAC covers region || RID || card sequence || chip serial
    assert signed == [bytes.fromhex("310000D15600000544556677") + SERIAL]
    assert records[("EF05", 2)] == bytes.fromhex("020131")
    assert records[("EF05", 3)] == b"\x03\x04" + b"3.00"
    assert records[("EF05", 5)] == bytes.fromhex("050420240131")
    assert records[("EF06", 1)] == b"\x08\x12" + PUBLISHED_ID.encode()
    assert records[("EF06", 2)] == b"\x09\x1e" + "张三".encode("gbk") + b"\x00" * 26
    assert records[("EF06", 5)] == bytes.fromhex("0B0101")
    assert records[("EF06", 6)] == bytes.fromhex("0C03110105")
    assert ("EF06", 3) not in records  # no name_ext: the record stays never-written
    assert (
        PROFILES["national-2"]
        .ef("EF05")
        .record(3)
        .codec.decode(
            encode_holder(PROFILES["national-2"], good_holder(), SERIAL, sign)[("EF05", 3)]
        )
        == "2.00"
    )


def test_encode_refuses_invalid_holder_and_bad_serial() -> None:
    with pytest.raises(InvalidInput) as info:
        encode_holder(PROFILES["national-3"], good_holder(ssn="110105194912310021"), SERIAL, sign)
    assert dict(info.value.problems).keys() == {"ssn"}
    with pytest.raises(InvalidInput, match="serial"):
        encode_holder(PROFILES["national-3"], good_holder(), b"\x01", sign)


def test_profile_with_shorter_name_record_limits_the_name(tmp_path: Path) -> None:
    data = PROFILES["national-3"].to_data()
    data["files"][3]["records"][1]["length"] = 4
    path = tmp_path / "short.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    profile = load_profile(path)
    with pytest.raises(InvalidInput, match="holds 4"):
        encode_holder(profile, good_holder(name="张三丰"), SERIAL, sign)
    with pytest.raises(RecordEncodeError):
        profile.ef("EF06").record(2).codec.encode("张三丰")


def test_decoding_a_malformed_card_record_names_it() -> None:
    p = PROFILES["national-3"]
    records = encode_holder(p, good_holder(), SERIAL, sign)
    records[("EF06", 2)] = records[("EF06", 2)][:-3]
    with pytest.raises(RecordDecodeError) as info:
        decode_records(p, records)
    assert info.value.record == "EF06 record 2 (name)"
    with pytest.raises(InvalidInput, match="EF06 record 9"):
        decode_records(p, {("EF06", 9): b"\x00"})


def test_never_written_records_are_absent_from_the_result() -> None:
    p = PROFILES["national-3"]
    records = encode_holder(p, good_holder(name_ext="\U00020000"), SERIAL, sign)
    records[("EF06", 3)] = p.ef("EF06").record(3).codec.encode(None)
    assert "name_ext" not in decode_records(p, records)


# --- holder files ------------------------------------------------------------

CSV_HEADER = ",".join(f for f in HOLDER_FIELDS)


def _csv_line(h: dict[str, Any]) -> str:
    return ",".join(str(h.get(f, "")) for f in HOLDER_FIELDS)


def test_csv_rows_are_holders_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "batch.csv"
    lines = [CSV_HEADER, _csv_line(good_holder()), _csv_line(good_holder(name_ext="\U00020000"))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    rows = read_holders(path)
    assert [r.line for r in rows] == [2, 3]
    assert rows[0].data == good_holder()
    assert rows[1].data == good_holder(name_ext="\U00020000")
    validate_rows(rows)


def test_gb18030_csv_is_read(tmp_path: Path) -> None:
    path = tmp_path / "batch.csv"
    path.write_bytes((CSV_HEADER + "\n" + _csv_line(good_holder()) + "\n").encode("gb18030"))
    assert read_holders(path)[0].data == good_holder()


def test_bad_rows_are_all_listed_with_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(h, ensure_ascii=False)
            for h in (
                good_holder(),
                good_holder(gender="1"),
                good_holder(card_number="x", region="1"),
            )
        ),
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput) as info:
        validate_rows(read_holders(path))
    assert [f for f, _ in info.value.problems] == [
        "line 2: gender",
        "line 3: card_number",
        "line 3: region",
    ]
    assert "2 of 3" in str(info.value)


def test_unknown_csv_column_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "batch.csv"
    path.write_text(CSV_HEADER + ",colour\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="colour"):
        read_holders(path)


# --- control characters (issue 12, item 3) ----------------------------------

HOSTILE = [
    "\x00",
    "\x1b",  # ESC: starts terminal escape sequences
    "\t",
    "\n",
    "\r",
    "\x7f",
    "\x85",  # NEL
    "\x9b",  # CSI
    "\u2028",
    "\u2029",
    "\u202a",
    "\u202e",  # right-to-left override
    "\u2066",
    "\u2069",
    "\u200e",
    "\u200f",
    "\u061c",
]


@pytest.mark.parametrize("char", HOSTILE, ids=lambda c: f"U+{ord(c):04X}")
def test_control_characters_are_refused_in_every_text_field(char: str) -> None:
    found = problems(good_holder(name="张" + char + "三", name_ext="\U00020000" + char))
    assert set(found) == {"name", "name_ext"}
    assert f"U+{ord(char):04X}" in found["name"] and "control character" in found["name"]
    for field, value in (
        ("ssn", PUBLISHED_ID[:17] + char),
        ("card_number", "A1234567" + char),
        ("gender", char),
        ("issuer_org", char + "31000000000000000000001"),
    ):
        assert "control character" in problems(good_holder(**{field: value}))[field], field


def test_a_control_character_in_an_unknown_field_name_is_printed_escaped() -> None:
    found = problems(good_holder(**{"col\u202eour": "x"}))
    assert found == {"col\\u202eour": "unknown field"}


def test_escape_controls_makes_every_control_character_visible() -> None:
    from sscard.layout import escape_controls, escape_json_controls

    for char in HOSTILE:
        escaped = escape_controls(f"a{char}b")
        assert escaped.isprintable() and char not in escaped
        assert escaped == f"a\\u{ord(char):04x}b" or escaped == f"a\\x{ord(char):02x}b"
    assert escape_controls("张三 \U00020000·") == "张三 \U00020000·"
    assert escape_controls("a\\u202eb") == "a\\\\u202eb"  # a literal backslash stays unambiguous
    text = json.dumps({"n": "".join(HOSTILE) + "张"}, ensure_ascii=False)
    safe = escape_json_controls(text)
    assert not any(c in safe for c in HOSTILE)
    assert json.loads(safe) == json.loads(text)


def test_printable_text_never_holds_a_refused_character() -> None:
    """The escapers skip text that str.isprintable() passes (their patterns then never
    compile): that is only right if no character of the set is printable."""
    import sys

    from sscard.layout.controls import _pattern

    control = _pattern("control")
    refused = [c for c in map(chr, range(sys.maxunicode + 1)) if control.fullmatch(c)]
    assert set(HOSTILE) <= set(refused)
    assert not [c for c in refused if c.isprintable()]


# --- exact rules (issue 12, item 4) -----------------------------------------


@pytest.mark.parametrize(
    "field", ["ssn", "birthplace", "birth_date", "card_number", "issue_date", "region"]
)
def test_a_trailing_newline_does_not_pass_the_pattern(field: str) -> None:
    assert field in problems(good_holder(**{field: good_holder()[field] + "\n"}))


def test_fields_have_their_exact_lengths() -> None:
    from sscard.layout import holder_schema

    schema = holder_schema()
    for field in ("ssn", "birthplace", "birth_date", "region", "issuer_org"):
        spec = schema["properties"][field]
        assert spec["minLength"] == spec["maxLength"], field
    # 9, or the 8 before the check character (which validation appends)
    card_number = schema["properties"]["card_number"]
    assert (card_number["minLength"], card_number["maxLength"]) == (8, 9)


def _born(day: str) -> dict[str, Any]:
    body = "110105" + day.replace("-", "") + "002"
    return good_holder(ssn=body + check_digit(body), birth_date=day)


@pytest.mark.parametrize("day", ["0060-01-01", "1899-12-31", "2268-01-01"])
def test_birth_dates_outside_1900_to_issue_date_are_refused(day: str) -> None:
    found = problems(_born(day))
    assert "birth_date" in found or "issue_date" in found
    assert validate_holder(_born("1900-01-01")) is None


def test_a_birth_date_after_today_is_refused_without_an_issue_date() -> None:
    later = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    holder = _born(later)
    holder["issue_date"] = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    holder["expiry_date"] = "2299-01-01"
    assert "today" in problems(holder)["birth_date"]


def test_birth_date_just_after_the_issue_date_names_the_dates() -> None:
    found = problems(_born("2024-02-01"))  # issue_date is 2024-01-31
    assert "birth date" in found["issue_date"]


@pytest.mark.parametrize(
    ("written", "stored"),
    [("01", 1), ("09", 9), ("56", 56), ("97", 97), ("98", 98), (98, 98), (1, 1), (97.0, 97)],
)
def test_gb3304_codes_are_accepted_as_strings_and_numbers(written: Any, stored: int) -> None:
    from sscard.layout import normalize_holder

    holder = good_holder(ethnicity=written)
    assert validate_holder(holder) is None
    assert normalize_holder(holder)["ethnicity"] == stored
    p = PROFILES["national-3"]
    records = encode_holder(p, holder, SERIAL, sign)
    assert records[("EF06", 5)] == bytes([0x0B, 0x01, stored])
    assert decode_records(p, records)["ethnicity"] == stored


@pytest.mark.parametrize("bad", ["1", "00", "57", "96", "99", "001", " 01", 0, 57, 99, 1.5, True])
def test_other_ethnicity_codes_are_refused(bad: Any) -> None:
    assert "ethnicity" in problems(good_holder(ethnicity=bad))


@pytest.mark.parametrize("prefix", ["81", "82", "83"])
def test_residence_permit_numbers_of_hk_macao_and_taiwan_residents_pass(prefix: str) -> None:
    body = prefix + "000019800101003"
    holder = good_holder(ssn=body + check_digit(body), birth_date="1980-01-01", gender="1")
    assert validate_holder(holder) is None


def test_a_lower_case_check_digit_is_accepted_and_stored_upper_case() -> None:
    from sscard.layout import normalize_holder

    holder = good_holder(ssn=PUBLISHED_ID.lower())
    assert validate_holder(holder) is None
    assert normalize_holder(holder)["ssn"] == PUBLISHED_ID
    p = PROFILES["national-3"]
    records = encode_holder(p, holder, SERIAL, sign)
    assert records[("EF06", 1)] == b"\x08\x12" + PUBLISHED_ID.encode()


def test_holder_files_store_the_normalized_values(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text(
        json.dumps(good_holder(ssn=PUBLISHED_ID.lower(), ethnicity="98")), encoding="utf-8"
    )
    assert read_holders(path)[0].data == good_holder(ethnicity=98)
    path = tmp_path / "h.csv"
    path.write_text(CSV_HEADER + "\n" + _csv_line(good_holder(ethnicity="01")) + "\n", "utf-8")
    assert read_holders(path)[0].data == good_holder()


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_duplicate_keys_are_refused_naming_the_field(tmp_path: Path, suffix: str) -> None:
    text = json.dumps(good_holder(), ensure_ascii=False)
    path = tmp_path / f"h{suffix}"
    path.write_text(text[:-1] + ', "name": "李四"}\n', encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        read_holders(path)
    assert info.value.problems == [("line 1: name", "given more than once")]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"ethnicity": ' + "9" * 5000 + "}", "too many digits"),
        ('{"ethnicity": NaN}', "NaN"),
    ],
)
def test_hostile_json_is_invalid_input(tmp_path: Path, suffix: str, body: str, words: str) -> None:
    path = tmp_path / f"h{suffix}"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(InvalidInput, match=words):
        read_holders(path)


@pytest.mark.parametrize(
    ("cell", "words"),
    [
        ("x" * 200_000, "larger than"),
        ("9" * 5000, "ethnicity"),
        ("²", "ethnicity"),
        ("١", "ethnicity"),
    ],
)
def test_hostile_csv_is_invalid_input(tmp_path: Path, cell: str, words: str) -> None:
    path = tmp_path / "h.csv"
    row = _csv_line(good_holder()).replace(",1,", f",{cell},")
    path.write_text(CSV_HEADER + "\n" + row + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=words):
        validate_rows(read_holders(path))


def test_csv_with_nul_or_a_quoted_line_break_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    row = _csv_line(good_holder()).replace("张三", '"张\n三"')
    path.write_text(CSV_HEADER + "\n" + row + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="line 2: name"):
        validate_rows(read_holders(path))
    path.write_text(CSV_HEADER + "\n" + _csv_line(good_holder(name="张\x00三")) + "\n", "utf-8")
    with pytest.raises(InvalidInput, match="line 2: name"):
        validate_rows(read_holders(path))
