"""`LANG=zh_CN.UTF-8 make demo` speaks Chinese from the first line to the last (docs/i18n.md).

The demo runs as a user runs it, through the installed ``sscard`` command, under a
Chinese locale; its whole output is then searched for an English sentence. What
may stay Latin: the commands it echoes (``$ sscard …``), the holder JSON, codes
(KCV, serials, status words, key names, upper-case column codes), names, paths and
single words such as a role or a profile name.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_SENTENCE = re.compile(r"[A-Za-z]*[a-z][A-Za-z]*(?:[ ,;:']+[A-Za-z]*[a-z][A-Za-z]*){2,}")
"""Three or more English words in a row, each with a lower-case letter (codes are upper-case)."""


def english_sentences(output: str) -> list[str]:
    """The lines of ``output`` that hold an untranslated English sentence."""
    found: list[str] = []
    for line in output.splitlines():
        text = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
        if text.startswith(("$ ", "{", "}", '"')):
            continue  # an echoed command, the holder's JSON
        text = re.sub(r"'[^']*'|\S*[/.\\]\S*|--[\w-]+", " ", text)  # quoted, paths, options
        text = re.sub(r"sscard(?: [\w:-]+)*", " ", text)  # a command named in a sentence
        if _SENTENCE.search(text):
            found.append(line)
    return found


def test_the_sentence_finder() -> None:
    assert english_sentences("Card issued and verified.") == ["Card issued and verified."]
    assert english_sentences("已制卡并校验。\n$ sscard pin verify --pin-stdin") == []
    assert english_sentences("  SSSE/EAK/01  v1   sm4  KCV 973A44 tries 15/15") == []
    assert english_sentences("已添加操作员 li.na（Li Na），角色 issuer。") == []
    assert english_sentences("  使用方法：sscard virtual serve CARD.img x.img") == []


def test_demo_in_chinese_has_no_english_sentence() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SSCARD_LANG", "LC_ALL")}
    env.update(LANG="zh_CN.UTF-8", LC_MESSAGES="zh_CN.UTF-8")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "制卡" in output and "社会保障" in output
    assert english_sentences(output) == []
