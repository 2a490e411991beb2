"""Status word meanings and the 63Cx tries-left nibble."""

from __future__ import annotations

import pytest

from sscard.status import describe, tries_left


@pytest.mark.parametrize(("sw", "n"), [(0x63C0, 0), (0x63C3, 3), (0x63CA, 10), (0x63CF, 15)])
def test_tries_left_is_a_hex_nibble(sw: int, n: int) -> None:
    assert tries_left(sw) == n
    assert f"{n} tries left" in describe(sw)


@pytest.mark.parametrize("sw", [0x9000, 0x6300, 0x6983, 0x6BC3, 0x73C3])
def test_no_tries_left_outside_63cx(sw: int) -> None:
    assert tries_left(sw) is None


@pytest.mark.parametrize(
    ("sw", "words"),
    [
        (0x9000, "success"),
        (0x6982, "security status not satisfied"),
        (0x6983, "blocked"),
        (0x6984, "challenge"),
        (0x6985, "conditions of use"),
        (0x6988, "bad MAC"),
        (0x6A81, "card blocked"),
        (0x6A82, "not found"),
        (0x6A83, "record not found"),
        (0x9303, "permanently blocked"),
        (0x6D00, "instruction"),
        (0x6E00, "class"),
        (0x6114, "20 more response bytes"),
        (0x6100, "256 more response bytes"),
        (0x6C08, "exactly 8 bytes"),
        (0x1234, "unknown"),
    ],
)
def test_meanings(sw: int, words: str) -> None:
    assert words in describe(sw)


def test_out_of_range() -> None:
    with pytest.raises(ValueError):
        describe(0x10000)
