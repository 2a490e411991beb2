"""``sscard profile``: list, show and validate card profiles (docs/layout.md)."""

from __future__ import annotations

from pathlib import Path

import click

from sscard.cli.context import CliState, pass_state
from sscard.i18n import _
from sscard.layout import FileSpec, Profile, load_profile, shipped_profiles
from sscard.layout.loader import profile_summary


@click.group()
def profile() -> None:
    """Card profiles: the file tree, records, access rules, keys and PIN of a card.

    \b
    Examples:
      sscard profile list
      sscard profile show national-3
      sscard --json profile show national-2 > resolved.json
      sscard profile validate my-city.json
    """


@profile.command("list")
@pass_state
def list_cmd(state: CliState) -> None:
    """List the profiles shipped with sscard.

    \b
    Example:
      sscard profile list
    """
    rows = [profile_summary(name) for name in shipped_profiles()]
    lines = []
    for r in rows:
        flags = [
            _("default") if r["default"] else "",
            _("base layout") if r["abstract"] else "",
            _("production") if r["production"] else "",
            _("extends {profile}").format(profile=r["extends"]) if r["extends"] else "",
        ]
        tag = ", ".join(f for f in flags if f)
        lines.append(f"{r['name']:<10}  {r['description']}" + (f" [{tag}]" if tag else ""))
    state.emit(rows, "\n".join(lines))


@profile.command()
@click.argument("name", default="national-3")
@pass_state
def show(state: CliState, name: str) -> None:
    """Show a profile (shipped NAME or a FILE path) with its base merged in.

    With --json the output is the resolved profile, itself a valid profile file.

    \b
    Examples:
      sscard profile show              the default profile (national-3)
      sscard profile show national-2
      sscard --json profile show ./my-city.json
    """
    p = load_profile(name)
    state.emit(p.to_data(), describe(p))


@profile.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_state
def validate(state: CliState, file: Path) -> None:
    """Check a profile FILE: schema (unknown keys are errors), merge with its base,
    cross references. Problems are listed with their JSON path; exit code 7.

    \b
    Example:
      sscard profile validate my-city.json
    """
    p = load_profile(file)
    state.emit(
        {"valid": True, "file": str(file), "name": p.name, "production": p.production},
        (
            _("{file}: valid profile {name!r} (production)")
            if p.production
            else _("{file}: valid profile {name!r}")
        ).format(file=file, name=p.name),
    )


def describe(p: Profile) -> str:
    """The human form of a profile: header, then the file tree."""
    cmd = p.command_set
    title = _("Profile {name} (production)") if p.production else _("Profile {name} (development)")
    lines = [
        title.format(name=p.name),
        f"  {p.description}" if p.description else "",
        _(
            "Algorithm  {algorithm}; command set {variant}: {mac}, "
            "{mac_length}-byte MAC, {block_size}-byte blocks"
        ).format(
            algorithm=p.algorithm,
            variant=cmd.variant,
            mac=cmd.mac,
            mac_length=cmd.mac_length,
            block_size=cmd.block_size,
        ),
        _(
            "Recognised by the algorithm indicator {indicator:02X} and spec version "
            "{version}; any ATR"
        ).format(indicator=p.algorithm.indicator, version=p.spec_version or _("(any)")),
        _("PIN        in {df}: {length} digits, {encoding}, {tries} tries").format(
            df=p.pin.df, length=p.pin.length, encoding=p.pin.encoding, tries=p.pin.try_limit
        ),
        "",
    ]
    root = next(f for f in p.files if f.parent is None)
    _tree(p, root, 0, lines)
    return "\n".join(line for i, line in enumerate(lines) if line or i > 4)


def _tree(p: Profile, f: FileSpec, depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    head = f"{pad}{f.id}  {f.type}"
    if f.fid is not None:
        head += f"  FID {f.fid.hex().upper()}"
    if f.sfi is not None:
        head += f"  SFI {f.sfi:02X}"
    if f.df_name is not None:
        head += "  " + _("DF name {name}").format(name=f.df_name.hex().upper())
    if f.record_count is not None:
        head += "  " + _("{count} records ≤ {length} bytes").format(
            count=f.record_count, length=f.record_length
        )
    lines.append(head + (f"  — {f.description}" if f.description else ""))
    if f.access is not None:
        read = " | ".join(str(c) for c in f.access.read)
        write = " | ".join(str(c) for c in f.access.write)
        lines.append(
            pad + "  " + _("access  read: {read}   write: {write}").format(read=read, write=write)
        )
    slots = p.key_scheme.in_df(f.id)
    if slots:
        keys = ", ".join(f"{s.type} {s.id:02X} v{s.version}" for s in slots)
        lines.append(pad + "  " + _("keys    {keys}").format(keys=keys))
    for r in f.records:
        const = f" = {r.value}" if r.value is not None else ""
        rule = (
            "   " + _("read: {rule}").format(rule=" | ".join(str(c) for c in r.read))
            if r.read is not None
            else ""
        )
        lines.append(
            pad
            + "  "
            + _("#{no:<2} tag {tag:02X} len {length:<3} {encoding:<15} {field}").format(
                no=r.no, tag=r.tag, length=r.length, encoding=r.encoding, field=r.field
            )
            + const
            + rule
        )
    for child in p.children(f.id):
        _tree(p, child, depth + 1, lines)
