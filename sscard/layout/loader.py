"""Load card profiles: JSON files, schema check, ``extends`` merge, typed model (docs/layout.md).

Merge rule for ``extends``: the extending profile is laid over its base.
Objects merge key by key (deeply); the lists ``files``, ``records`` and ``keys``
merge item by item by identity (``id``; ``no``; ``type`` + ``id``): a matching
item is merged deeply, a new one is appended in order; every other list (the
alternatives of an access rule) is replaced whole. ``name``, ``description`` and
``abstract`` are the extending profile's own (``production`` too when it says so).
A profile marked ``abstract`` (a shared base layout) is checked without
``required`` and cannot be loaded on its own.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from sscard.errors import InvalidInput, ProfileError
from sscard.i18n import _
from sscard.keys.scheme import KeyScheme, KeySlot
from sscard.layout.model import (
    Access,
    AccessCondition,
    CommandSet,
    FileSpec,
    PinSpec,
    Profile,
    RecordItem,
)
from sscard.vocab import Algorithm, FileType, KeyType

DEFAULT_PROFILE = "national-3"
RETIRED_PROFILES = {
    "ss3-sm4": "national-3",
    "ss2-3des": "national-2",
    "ss-generic": "national-base",
}
"""Profiles of the reference card that earlier versions shipped, and what replaced them."""
_LIST_IDENTITY: dict[str, tuple[str, ...]] = {
    "files": ("id",),
    "records": ("no",),
    "keys": ("type", "id"),
}
Problems = list[tuple[str, str]]


def _package_file(name: str) -> Any:
    return Path(__file__).with_name(
        name
    )  # a plain file beside this module (not importlib.resources: faster)


@cache
def profile_schema() -> dict[str, Any]:
    """The profile JSON Schema shipped with the package."""
    data: dict[str, Any] = json.loads(_package_file("profile.schema.json").read_text("utf-8"))
    return data


@cache
def _partial_schema() -> dict[str, Any]:
    """The profile schema with every ``required`` dropped: for profiles that extend another."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "required"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    result: dict[str, Any] = strip(copy.deepcopy(profile_schema()))
    return result


def shipped_profiles() -> list[str]:
    """Names of the profiles shipped in the package."""
    return list(_shipped_names())


@lru_cache(maxsize=1)
def _shipped_names() -> tuple[str, ...]:
    folder = _package_file("profiles")
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json")))


@lru_cache(maxsize=1)
def card_profiles() -> tuple[str, ...]:
    """Names of the shipped card profiles (the shipped ones that are not abstract bases)."""
    folder = _package_file("profiles")
    names = []
    for name in shipped_profiles():
        data = json.loads(folder.joinpath(f"{name}.json").read_text(encoding="utf-8"))
        if not data.get("abstract", False):
            names.append(name)
    return tuple(names)


def load_profile(name_or_path: str | Path | None = None) -> Profile:
    """Load a shipped profile by name (default ``national-3``) or a profile file by path.

    Raises :class:`~sscard.errors.ProfileError` listing every problem with its JSON path.
    Shipped profiles are immutable and built once per process without the JSON Schema
    check (tests/test_layout_profile.py validates every shipped profile against it, so
    a run does not load jsonschema for them); files are read and validated anew.
    """
    ref = name_or_path or DEFAULT_PROFILE
    if isinstance(ref, str) and ref in shipped_profiles():
        return _load_shipped(ref)
    return _load(ref)


@lru_cache(maxsize=16)
def _load_shipped(name: str) -> Profile:
    return _load(name, validate=False)


def _load(name_or_path: str | Path, *, validate: bool = True) -> Profile:
    """Load and build a profile; ``validate=False`` skips the JSON Schema check (shipped ones)."""
    data, source = _load_resolved(name_or_path, None, (), validate=validate)
    if data.pop("abstract", False):
        raise ProfileError(
            _("profile {source} is a base layout, not a card profile").format(source=source),
            [
                (
                    "abstract",
                    _("load a profile that extends it, e.g. {profile}").format(
                        profile=DEFAULT_PROFILE
                    ),
                )
            ],
        )
    problems = _schema_problems(data, partial=False) if validate else []
    if problems:
        raise ProfileError(
            _("invalid profile {source} (after extends)").format(source=source), problems
        )
    return build_profile(data)


def _locate(ref: str | Path, relative_to: Path | None) -> tuple[str, Any]:
    """(display name, readable file) for a profile name or path."""
    text = str(ref)
    if isinstance(ref, Path) or text.endswith(".json") or "/" in text:
        path = Path(text)
        if relative_to is not None and not path.is_absolute():
            path = relative_to / path
        return str(path), path
    if text in RETIRED_PROFILES:
        raise ProfileError(
            _("profile {name} was the reference card of earlier sscard versions").format(
                name=repr(text)
            ),
            [
                (
                    "profile",
                    _("use {successor}, its national-spec successor").format(
                        successor=repr(RETIRED_PROFILES[text])
                    ),
                )
            ],
        )
    if text not in shipped_profiles():
        raise ProfileError(
            _("no profile named {name}").format(name=repr(text)),
            [
                (
                    "profile",
                    _("shipped profiles: {profiles}; or give a path").format(
                        profiles=", ".join(shipped_profiles())
                    ),
                )
            ],
        )
    return text, _package_file("profiles").joinpath(f"{text}.json")


def _read_json(source: str, file: Any) -> dict[str, Any]:
    try:
        text = file.read_text("utf-8")
    except OSError as exc:
        problem = [(_("file"), exc.strerror or str(exc))]
        raise ProfileError(
            _("cannot read profile {source}").format(source=source), problem
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(
            _("profile {source} is not valid JSON").format(source=source),
            [(_("line {line} column {column}").format(line=exc.lineno, column=exc.colno), exc.msg)],
        ) from None
    if not isinstance(data, dict):
        raise ProfileError(
            _("invalid profile {source}").format(source=source), [("$", _("must be a JSON object"))]
        )
    return data


def _load_resolved(
    ref: str | Path, relative_to: Path | None, seen: tuple[str, ...], *, validate: bool = True
) -> tuple[dict[str, Any], str]:
    source, file = _locate(ref, relative_to)
    if source in seen:
        chain = " -> ".join((*seen, source))
        raise ProfileError(_("profiles extend each other in a cycle"), [("extends", chain)])
    data = _read_json(source, file)
    base_ref = data.get("extends")
    partial = isinstance(base_ref, str) or data.get("abstract") is True
    problems = _schema_problems(data, partial=partial) if validate else []
    if problems:
        raise ProfileError(_("invalid profile {source}").format(source=source), problems)
    if not isinstance(base_ref, str):
        return data, source
    here = Path(str(file)).parent if isinstance(file, Path) else None
    base, _source = _load_resolved(base_ref, here, (*seen, source), validate=validate)
    merged, problems = merge_profiles(base, data, owned=True)  # both freshly parsed here
    if problems:
        raise ProfileError(_("invalid profile {source}").format(source=source), problems)
    return merged, source


def merge_profiles(
    base: Mapping[str, Any], over: Mapping[str, Any], *, owned: bool = False
) -> tuple[dict[str, Any], Problems]:
    """Lay ``over`` on ``base`` by the merge rule in the module docstring.

    The result shares nothing with the arguments, unless ``owned``: then the
    caller hands both over (parsed for this merge, never used again) and their
    parts are reused instead of deep-copied.
    """
    problems: Problems = []
    take: Callable[[Any], Any] = _keep if owned else copy.deepcopy
    merged = _merge(take(dict(base)), over, "", problems, take)
    merged.pop("extends", None)
    merged.pop("abstract", None)
    if over.get("abstract"):
        merged["abstract"] = True
    merged["name"] = over.get("name", base.get("name"))
    merged["description"] = over.get("description", "")
    if "production" in over:
        merged["production"] = over["production"]
    return merged, problems


def _keep(value: Any) -> Any:
    return value


def _merge(
    out: dict[str, Any],
    over: Mapping[str, Any],
    path: str,
    problems: Problems,
    take: Callable[[Any], Any],
) -> dict[str, Any]:
    """Lay ``over`` on ``out`` (ours to change); ``take`` copies what comes from ``over``."""
    for key, value in over.items():
        where = f"{path}.{key}" if path else key
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = _merge(old, value, where, problems, take)
        elif key in _LIST_IDENTITY and isinstance(old, list) and isinstance(value, list):
            out[key] = _merge_list(old, value, _LIST_IDENTITY[key], where, problems, take)
        else:
            out[key] = take(value)
    return out


def _merge_list(
    out: list[Any],
    over: list[Any],
    ident: tuple[str, ...],
    path: str,
    problems: Problems,
    take: Callable[[Any], Any],
) -> list[Any]:
    index = {tuple(item.get(k) for k in ident): i for i, item in enumerate(out)}
    for n, item in enumerate(over):
        where = f"{path}[{n}]"
        missing = [k for k in ident if k not in item]
        if missing:
            problems.append(
                (
                    where,
                    _("needs {keys} to merge with its base").format(keys=" and ".join(missing)),
                )
            )
            continue
        key = tuple(item[k] for k in ident)
        if key in index:
            out[index[key]] = _merge(out[index[key]], item, where, problems, take)
        else:
            index[key] = len(out)
            out.append(take(item))
    return out


def _format_path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "$"


def _schema_problems(data: Any, *, partial: bool) -> Problems:
    """Every schema violation as ``(JSON path, message)``; unknown keys name their own path."""
    import jsonschema  # loaded for profile files only: shipped ones are checked by the tests

    schema = _partial_schema() if partial else profile_schema()
    validator = jsonschema.Draft202012Validator(schema)
    problems: Problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - allowed):
                problems.append((_format_path([*path, key]), _("unknown key")))
        elif error.validator == "required":
            missing = str(error.message).split("'")[1] if "'" in error.message else ""
            problems.append((_format_path([*path, missing]), _("missing")))
        else:
            problems.append((_format_path(path), error.message))
    return problems


def validate_profile_data(data: Mapping[str, Any]) -> Profile:
    """Check resolved profile data (no ``extends``) and build the model."""
    problems = _schema_problems(dict(data), partial=False)
    if problems:
        raise ProfileError(_("invalid profile"), problems)
    return build_profile(data)


def build_profile(data: Mapping[str, Any]) -> Profile:
    """The typed profile from schema-valid, resolved data; checks cross references."""
    problems: Problems = []
    algorithm = Algorithm(data["algorithm"])
    files: list[FileSpec] = []
    slots: list[KeySlot] = []
    for i, raw in enumerate(data["files"]):
        where = f"files[{i}]"
        files.append(_build_file(raw, where))
        for j, key in enumerate(raw.get("keys", [])):
            slot_data = {"df": raw["id"], "algorithm": algorithm, **key}
            try:
                slots.append(KeySlot.from_data(slot_data, f"{where}.keys[{j}]"))
            except InvalidInput as exc:
                problems.extend(exc.problems)
    try:
        scheme = KeyScheme(tuple(slots))
    except InvalidInput as exc:
        problems.extend(exc.problems)
        scheme = KeyScheme(())
    cmd = data["command_set"]
    pin_raw = data["pin"]
    profile = Profile(
        name=data["name"],
        description=data.get("description", ""),
        production=data["production"],
        key_city=data.get("key_city"),
        algorithm=algorithm,
        command_set=CommandSet(cmd["variant"], cmd["mac"], cmd["mac_length"], cmd["block_size"]),
        pin=PinSpec(pin_raw["df"], pin_raw["length"], pin_raw["encoding"], pin_raw["try_limit"]),
        files=tuple(files),
        key_scheme=scheme,
    )
    problems.extend(_consistency_problems(profile))
    if problems:
        raise ProfileError(_("invalid profile {source}").format(source=profile.name), problems)
    return profile


def _build_file(raw: Mapping[str, Any], where: str) -> FileSpec:
    access = raw.get("access")
    return FileSpec(
        id=raw["id"],
        type=FileType(raw["type"]),
        parent=raw.get("parent"),
        fid=bytes.fromhex(raw["fid"]) if "fid" in raw else None,
        df_name=bytes.fromhex(raw["df_name"]) if "df_name" in raw else None,
        sfi=raw.get("sfi"),
        record_count=raw.get("record_count"),
        record_length=raw.get("record_length"),
        size=raw.get("size"),
        description=raw.get("description", ""),
        access=Access(
            tuple(AccessCondition.parse(c) for c in access["read"]),
            tuple(AccessCondition.parse(c) for c in access["write"]),
        )
        if access is not None
        else None,
        records=tuple(
            RecordItem(
                file=raw["id"],
                no=r["no"],
                tag=int(r["tag"], 16),
                length=r["length"],
                encoding=r["encoding"],
                field=r["field"],
                value=r.get("value"),
                description=r.get("description", ""),
                read=tuple(AccessCondition.parse(c) for c in r["read"]) if "read" in r else None,
            )
            for r in raw.get("records", [])
        ),
    )


def _consistency_problems(p: Profile) -> Problems:
    """Cross references the schema cannot express."""
    out: Problems = []
    ids = [f.id for f in p.files]
    by_id = {f.id: f for f in p.files}
    fields: dict[str, str] = {}
    for i, f in enumerate(p.files):
        where = f"files[{i}]"
        if ids.count(f.id) > 1:
            out.append(
                (f"{where}.id", _("file id {id} is used more than once").format(id=repr(f.id)))
            )
        if f.type == FileType.MF:
            if f.parent is not None:
                out.append((f"{where}.parent", _("the MF has no parent")))
        elif f.parent is None:
            out.append((f"{where}.parent", _("missing")))
        elif f.parent not in by_id or not by_id[f.parent].is_df:
            out.append(
                (f"{where}.parent", _("{df} is not a DF of this profile").format(df=repr(f.parent)))
            )
        if f.is_df:
            if f.records or f.access is not None:
                out.append((where, _("a DF has no records or access rules of its own")))
            if f.fid is None and f.df_name is None:
                out.append((where, _("a DF needs a fid or a df_name")))
            continue
        if f.fid is None:
            out.append((f"{where}.fid", _("missing")))
        if f.access is None:
            out.append((f"{where}.access", _("missing")))
        else:
            out.extend(_access_problems(p, f.access, f"{where}.access"))
        if f.type == FileType.TRANSPARENT:
            if f.size is None:
                out.append((f"{where}.size", _("missing")))
            if f.records:
                out.append((f"{where}.records", _("a transparent EF has no records")))
            continue
        if f.type.is_record:
            out.extend(_record_problems(f, where, fields))
            for j, r in enumerate(f.records):
                if r.read is not None:
                    rule = Access(r.read, ())
                    out.extend(_access_problems(p, rule, f"{where}.records[{j}]"))
    mfs = [f for f in p.files if f.type == FileType.MF]
    if len(mfs) != 1:
        out.append(("files", _("there must be exactly one MF")))
    if p.pin.df not in by_id or not by_id[p.pin.df].is_df:
        out.append(("pin.df", _("{df} is not a DF of this profile").format(df=repr(p.pin.df))))
    return out


def _record_problems(f: FileSpec, where: str, fields: dict[str, str]) -> Problems:
    out: Problems = []
    nos = [r.no for r in f.records]
    tags = [r.tag for r in f.records]
    if f.record_count is not None and f.record_count < len(f.records):
        out.append(
            (
                f"{where}.record_count",
                _("smaller than the {count} records").format(count=len(f.records)),
            )
        )
    for j, r in enumerate(f.records):
        rw = f"{where}.records[{j}]"
        if nos.count(r.no) > 1:
            out.append((f"{rw}.no", _("record number {no} is used more than once").format(no=r.no)))
        if tags.count(r.tag) > 1:
            out.append(
                (
                    f"{rw}.tag",
                    _("tag {tag:02X} is used more than once in {file}").format(
                        tag=r.tag, file=f.id
                    ),
                )
            )
        if r.field in fields:
            out.append(
                (
                    f"{rw}.field",
                    _("field {field} is also {record}").format(
                        field=repr(r.field), record=fields[r.field]
                    ),
                )
            )
        fields.setdefault(r.field, r.name)
        if f.record_length is not None and r.length + 2 > f.record_length:
            out.append(
                (
                    f"{rw}.length",
                    _("record of {size} bytes exceeds record_length").format(size=r.length + 2),
                )
            )
        codec = r.codec
        reason = codec.check_length()
        if reason:
            out.append((f"{rw}.length", reason))
        elif r.value is not None:
            try:
                if r.encoding == "binary":
                    bytes.fromhex(r.value)
                codec.encode(r.constant)
            except (ValueError, InvalidInput) as exc:
                out.append((f"{rw}.value", _("does not fit the record: {error}").format(error=exc)))
    return out


def _access_problems(p: Profile, access: Access, where: str) -> Problems:
    out: Problems = []
    for op, conds in (("read", access.read), ("write", access.write)):
        for k, c in enumerate(conds):
            cw = f"{where}.{op}[{k}]"
            if c.kind == "ext-auth":
                if not any(
                    s.id == c.key_id and s.type in (KeyType.EAK, KeyType.RK)
                    for s in p.key_scheme.in_df(c.df or "")
                ):
                    out.append(
                        (
                            cw,
                            _(
                                "{condition}: no external authentication key {key:02X} in {df}"
                            ).format(condition=c, key=c.key_id, df=c.df),
                        )
                    )
            elif c.kind == "sm" and not any(
                s.type == KeyType.STK for s in p.key_scheme.in_df(c.df or "")
            ):
                out.append(
                    (
                        cw,
                        _("{condition}: no line protection key (STK) in {df}").format(
                            condition=c, df=c.df
                        ),
                    )
                )
    return out


def profile_summary(name: str) -> dict[str, Any]:
    """Name, description, base, abstract and production flags of a shipped profile file."""
    source, file = _locate(name, None)
    data = _read_json(source, file)
    return {
        "name": name,
        "description": data.get("description", ""),
        "extends": data.get("extends"),
        "abstract": bool(data.get("abstract", False)),
        "production": data.get("production"),
        "default": name == DEFAULT_PROFILE,
    }
