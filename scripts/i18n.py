"""Manage sscard's message catalogs with Babel: extract, update, compile, check.

    python scripts/i18n.py extract    # sscard/locale/sscard.pot from the code
    python scripts/i18n.py update     # merge the template into every language's .po
    python scripts/i18n.py compile    # .po -> .mo (shipped in the package)
    python scripts/i18n.py check      # stale template, missing/fuzzy entries, stale .mo
    python scripts/i18n.py all        # extract, update, compile (``make i18n``)
    python scripts/i18n.py msgids FILE...          # the msgids of some files, as JSON
    python scripts/i18n.py fill zh_CN PART.json... # put translations {msgid: text} in a .po

What is extracted (docs/i18n.md): calls of ``_``, ``N_`` and ``ngettext``;
and, because Click takes its help from them, every ``help=``/``short_help=``/
``epilog=`` string literal and the docstring of every function decorated as a
Click command or group, cleaned as Click shows them (``inspect.cleandoc``).
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract, extract_python
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sscard"
LOCALE = PACKAGE / "locale"
DOMAIN = "sscard"
TEMPLATE = LOCALE / f"{DOMAIN}.pot"
LANGUAGES = ("zh_CN", "en")
SOURCES = (PACKAGE, ROOT / "scripts" / "demo.py")
KEYWORDS: dict[str, Any] = {"_": None, "N_": None, "ngettext": (1, 2), "N_plural": (1, 2)}
CLICK_KEYWORDS = ("help", "short_help", "epilog")
COMMAND_DECORATORS = ("command", "group")


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Name):
        return target.id
    return ""


def _click_texts(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Click help texts: help= literals, {"help": ...} option dicts, command docstrings."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                value = keyword.value
                if (
                    keyword.arg in CLICK_KEYWORDS
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                ):
                    yield value.lineno, inspect.cleandoc(value.value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value in CLICK_KEYWORDS
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                ):
                    yield value.lineno, inspect.cleandoc(value.value)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
            _decorator_name(d) in COMMAND_DECORATORS for d in node.decorator_list
        ):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield node.lineno, doc


def extract_sscard(
    fileobj: Any, keywords: Any, comment_tags: Any, options: Any
) -> Iterator[tuple[int, str | None, Any, list[str]]]:
    """Babel extraction method: gettext calls plus Click help texts."""
    source = fileobj.read()
    yield from extract_python(io.BytesIO(source), keywords, comment_tags, options)
    for lineno, text in _click_texts(ast.parse(source)):
        yield lineno, None, text, []


def _files() -> list[Path]:
    found: list[Path] = []
    for source in SOURCES:
        found.extend(sorted(source.rglob("*.py")) if source.is_dir() else [source])
    return found


def extract_catalog(files: Iterable[Path] | None = None) -> Catalog:
    """A template catalog of every message in ``files`` (default: the package and the demo)."""
    catalog = Catalog(project="sscard", version="0.1", charset="utf-8", fuzzy=False)
    for path in _files() if files is None else files:
        relative = path.resolve().relative_to(ROOT).as_posix()
        with path.open("rb") as fileobj:
            for lineno, message, comments, _context in extract(
                extract_sscard, fileobj, KEYWORDS, comment_tags=("i18n:",)
            ):
                flags = set()
                text = message[0] if isinstance(message, tuple) else message
                if "{" in text:
                    flags.add("python-brace-format")
                catalog.add(
                    message, None, [(relative, lineno)], auto_comments=comments, flags=flags
                )
    return catalog


def _write_po(path: Path, catalog: Catalog) -> None:
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=0, omit_header=False, include_lineno=False, sort_output=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def _read_po(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as fileobj:
        return read_po(fileobj, locale=locale)


def po_path(lang: str) -> Path:
    return LOCALE / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(lang: str) -> Path:
    return po_path(lang).with_suffix(".mo")


def cmd_extract() -> None:
    _write_po(TEMPLATE, extract_catalog())
    print(f"wrote {TEMPLATE.relative_to(ROOT)}")


def cmd_update() -> None:
    template = _read_po(TEMPLATE)
    for lang in LANGUAGES:
        path = po_path(lang)
        if path.exists():
            catalog = _read_po(path, lang)
        else:
            catalog = Catalog(locale=lang, project="sscard", version="0.1", charset="utf-8")
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()  # a message gone from the code leaves the catalog
        _write_po(path, catalog)
        print(f"updated {path.relative_to(ROOT)}")


def compiled(lang: str) -> bytes:
    """The .mo bytes of a language's .po (translated, non-fuzzy entries only)."""
    buffer = io.BytesIO()
    write_mo(buffer, _read_po(po_path(lang), lang), use_fuzzy=False)
    return buffer.getvalue()


def cmd_compile() -> None:
    for lang in LANGUAGES:
        mo_path(lang).write_bytes(compiled(lang))
        print(f"compiled {mo_path(lang).relative_to(ROOT)}")


def problems() -> list[str]:
    """Everything stale or missing in the catalogs; empty when they are in order."""
    found: list[str] = []
    fresh = {m.id for m in extract_catalog() if m.id}
    template = {m.id for m in _read_po(TEMPLATE) if m.id}
    for msgid in sorted(map(str, fresh - template), key=str):
        found.append(f"not in sscard.pot (run 'make i18n'): {msgid!r}")
    for msgid in sorted(map(str, template - fresh), key=str):
        found.append(f"in sscard.pot but gone from the code (run 'make i18n'): {msgid!r}")
    for lang in LANGUAGES:
        catalog = _read_po(po_path(lang), lang)
        ids = {m.id for m in catalog if m.id}
        for msgid in sorted(map(str, template - ids), key=str):
            found.append(f"{lang}: missing (run 'make i18n'): {msgid!r}")
        for msgid in sorted(map(str, ids - template), key=str):
            found.append(f"{lang}: not in the template (run 'make i18n'): {msgid!r}")
        for message in catalog:
            if not message.id:
                continue
            if message.fuzzy:
                found.append(f"{lang}: fuzzy: {message.id!r}")
            if lang != "en" and not (
                all(message.string) if isinstance(message.string, tuple) else message.string
            ):
                found.append(f"{lang}: untranslated: {message.id!r}")
        mo = mo_path(lang)
        if not mo.exists():
            found.append(f"{lang}: {mo.name} missing (run 'make i18n')")
        elif mo.read_bytes() != compiled(lang):
            found.append(f"{lang}: {mo.name} is stale against the .po (run 'make i18n')")
    return found


def cmd_check() -> int:
    found = problems()
    for line in found:
        print(line)
    print(f"{len(found)} problem(s)")
    return 1 if found else 0


def cmd_msgids(paths: list[str]) -> None:
    catalog = extract_catalog(Path(p) for p in paths)
    ids = [m.id[0] if isinstance(m.id, tuple | list) else m.id for m in catalog if m.id]
    print(json.dumps(dict.fromkeys(ids, ""), ensure_ascii=False, indent=1))


def cmd_fill(lang: str, parts: list[str]) -> int:
    path = po_path(lang)
    catalog = _read_po(path, lang)
    wanted: dict[str, str] = {}
    for part in parts:
        wanted.update(json.loads(Path(part).read_text(encoding="utf-8")))
    filled = 0
    for message in catalog:
        key = message.id[0] if isinstance(message.id, tuple | list) else message.id
        if key and wanted.get(key):
            text = wanted[key]
            message.string = (text,) * catalog.num_plurals if message.pluralizable else text
            message.flags.discard("fuzzy")
            filled += 1
    _write_po(path, catalog)
    print(f"{lang}: filled {filled} of {len(wanted)} translations")
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "extract":
        cmd_extract()
    elif command == "update":
        cmd_update()
    elif command == "compile":
        cmd_compile()
    elif command == "all":
        cmd_extract()
        cmd_update()
        cmd_compile()
    elif command == "check":
        return cmd_check()
    elif command == "msgids":
        cmd_msgids(rest)
    elif command == "fill":
        return cmd_fill(rest[0], rest[1:])
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
