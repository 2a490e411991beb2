"""The project's documents are its own: nothing cites a file outside the repository, and
every ``docs/NAME.md`` a file names exists (issue 13, item 10)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = re.compile(r"shared/spec|shared/ARCH|ARCHITECTURE\.md|regulation\.md|national\.md")
DOC_REF = re.compile(r"docs/([A-Za-z0-9_-]+\.md)")
SCANNED = ("sscard", "tests", "docs", "scripts", "bench", "examples")


def _files() -> list[Path]:
    out = [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml"]
    for top in SCANNED:
        out += [
            p
            for p in (ROOT / top).rglob("*")
            if p.is_file() and p.suffix in (".py", ".md", ".json", ".toml", ".sh", ".txt")
        ]
    return out


def test_no_file_cites_a_document_outside_the_project() -> None:
    me = Path(__file__).resolve()
    hits = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in _files()
        if p.resolve() != me
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert hits == []


def test_every_cited_project_document_exists() -> None:
    me = Path(__file__).resolve()
    missing = sorted(
        {
            f"{p.relative_to(ROOT)}: docs/{name}"
            for p in _files()
            if p.resolve() != me
            for name in DOC_REF.findall(p.read_text(encoding="utf-8"))
            if not (ROOT / "docs" / name).is_file()
        }
    )
    assert missing == []


def test_architecture_names_every_module_and_the_contract_names_every_layer() -> None:
    """docs/architecture.md's diagram lists every top-level module and package of sscard,
    and the import-linter layers contract (pyproject.toml) places every one of them."""
    import tomllib

    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    diagram = text.split("```")[1]
    modules = sorted(
        p.name if p.is_dir() else p.stem
        for p in (ROOT / "sscard").iterdir()
        if (p.is_dir() and (p / "__init__.py").exists())
        or (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))
    )
    shown = [m for m in modules if re.search(rf"\b{re.escape(m)}(/|\.py)", diagram)]
    assert shown == modules
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    layered = {name.strip() for layer in contract["layers"] for name in re.split("[:|]", layer)}
    assert sorted(set(modules) - layered) == []
