"""docs/keys.md publishes the development keys: the table must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from sscard.keys.algorithms import kcv
from sscard.keys.dev import development_root

DOC = Path(__file__).resolve().parent.parent / "docs" / "keys.md"
_KEY, _KCV = r"`([0-9A-F]{32})`", r"`([0-9A-F]{6})`"
ROW = re.compile(rf"^\| `([^`]+)` \| (\d+) \| {_KEY} \| {_KCV} \| {_KEY} \| {_KCV} \|$")


def test_documented_development_keys_are_the_real_ones() -> None:
    rows = [m.groups() for line in DOC.read_text().splitlines() if (m := ROW.match(line))]
    assert len(rows) >= 8
    for ref, version, sm4, sm4_kcv, des, des_kcv in rows:
        for alg, value, check in (("sm4", sm4, sm4_kcv), ("3des", des, des_kcv)):
            key = development_root(ref, int(version), alg)
            assert key.hex().upper() == value, ref
            assert kcv(key, algorithm=alg).hex().upper() == check, ref
