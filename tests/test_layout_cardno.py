"""The card number's check character (issue 14 item 3): ISO/IEC 7064 MOD 37,36 [ours],
appended to an 8-character card number, a wrong one refused with what it should be."""

from __future__ import annotations

from typing import Any

import pytest

from sscard.errors import InvalidInput
from sscard.layout import validate_holder
from sscard.layout.cardno import ALPHABET, check_character, check_problem, complete, is_valid
from sscard.layout.holder import normalize_holder
from tests.cardkit import SAMPLE_HOLDER

# Published MOD 37,36 examples: the Global Release Identifier of Wikipedia's GRid
# article and python-stdnum's iso7064.mod_37_36 documentation (A1-2425G-ABC1234002-M),
# and the root of the ISAN of the Star Trek episode "Amok Time" (0000-0000-C36D-002B-K).
PUBLISHED = [("A12425GABC1234002", "M"), ("00000000C36D002B", "K")]


@pytest.mark.parametrize(("body", "check"), PUBLISHED)
def test_published_check_characters(body: str, check: str) -> None:
    assert check_character(body) == check
    assert is_valid(body + check)
    assert not is_valid(body + ("0" if check != "0" else "1"))


def test_every_single_character_error_and_adjacent_swap_is_caught() -> None:
    number = complete("A1234567")
    assert number == "A12345671" and is_valid(number)
    for i in range(9):
        for ch in ALPHABET:
            if ch != number[i]:
                assert not is_valid(number[:i] + ch + number[i + 1 :]), (i, ch)
    for i in range(8):
        swapped = number[:i] + number[i + 1] + number[i] + number[i + 2 :]
        if swapped != number:
            assert not is_valid(swapped), i


def test_the_check_character_is_alphanumeric_and_bodies_are_checked() -> None:
    assert {check_character(f"A{n:07d}") for n in range(400)} <= set(ALPHABET)
    for bad in ("", "a1234567", "A123-567"):
        with pytest.raises(ValueError):
            check_character(bad)
    assert not is_valid("A") and not is_valid("a12345671")


def _holder(**changes: Any) -> dict[str, Any]:
    return {**SAMPLE_HOLDER, **changes}


def test_the_sample_holder_carries_a_valid_card_number() -> None:
    assert is_valid(SAMPLE_HOLDER["card_number"])
    assert validate_holder(SAMPLE_HOLDER) is None


def test_eight_characters_get_the_check_character_appended() -> None:
    assert normalize_holder(_holder(card_number="A1234567"))["card_number"] == "A12345671"
    assert validate_holder(_holder(card_number="A1234567")) is None
    # neither a lower-case body nor another length is completed
    assert normalize_holder(_holder(card_number="a1234567"))["card_number"] == "a1234567"
    assert normalize_holder(_holder(card_number="A123456"))["card_number"] == "A123456"


def test_a_wrong_check_character_is_refused_naming_the_right_one() -> None:
    with pytest.raises(InvalidInput) as info:
        validate_holder(_holder(card_number="A12345678"))
    problems = dict(info.value.problems)
    assert set(problems) == {"card_number"}
    assert problems["card_number"] == check_problem("A12345678")
    assert "wrong check character 8" in problems["card_number"]
    assert "MOD 37,36 gives 1" in problems["card_number"]


@pytest.mark.parametrize("number", ["A123", "A1234567890", "a12345671", "A1234567-"])
def test_other_forms_are_refused_by_the_schema(number: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_holder(_holder(card_number=number))
    assert "9 characters" in dict(info.value.problems)["card_number"]
