"""``sscard keys``: the key ceremony (docs/keys.md, "Key ceremony").

Prompts and prints only; the work is in :mod:`sscard.keys.ceremony` and
:mod:`sscard.keys.software_store`. Secrets come from hidden prompts,
``SSCARD_KEYSTORE_PASSPHRASE`` or ``--passphrase-fd``, never from argv; no
command writes or prints a key value, only KCVs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from sscard.cli.auth import note, require_operator
from sscard.cli.context import CliState, json_option, pass_state
from sscard.cli.options import kdf_cost_option, passphrase_fd_option, profile_option, token_options
from sscard.cli.secrets import read_secret, read_token_pin
from sscard.errors import InvalidInput
from sscard.i18n import N_, _, columns, ljust
from sscard.keys import ceremony
from sscard.keys.algorithms import kcv
from sscard.keys.entry import KeyEntry
from sscard.keys.scheme import KeyScheme, KeySlot
from sscard.keys.software_store import ScryptParams, SoftwareKeyStore
from sscard.vocab import KeyType

_fd_option = passphrase_fd_option(N_("store passphrase"))
_cost_option = kdf_cost_option(N_("a new store file"))


def _open(store: Path, fd: int | None) -> SoftwareKeyStore:
    return SoftwareKeyStore.open(
        store, read_secret(fd, _("Passphrase for {store}").format(store=store))
    )


def _load_scheme(path: Path) -> KeyScheme:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(_("cannot read scheme"), [("--scheme", str(exc))]) from None
    if isinstance(data, dict):
        data = data.get("keys", data.get("key_scheme"))
    if not isinstance(data, list):
        raise InvalidInput(
            _("bad scheme"), [("--scheme", _("a list of key slots, or {'keys': [...]}"))]
        )
    return KeyScheme.from_data(data)


def _rows(entries: list[KeyEntry]) -> str:
    return _key_table(
        (
            e.ref,
            e.version,
            e.algorithm,
            f"{e.tier} {e.depth}/{e.levels}",
            e.city,
            e.kcv.hex().upper(),
        )
        for e in entries
    )


def _key_table(rows: Iterable[tuple[str, int, str, str, str | None, str]]) -> str:
    """Keys as a table: REF, VER, ALG, TIER, CITY, KCV (headers aligned in any language)."""
    head = [_("REF"), _("VER"), _("ALG"), _("TIER"), _("CITY"), _("KCV")]
    w = [max(n, columns(h)) for n, h in zip((14, 3, 4, 9, 6), head, strict=False)]
    ver = " " * (w[1] - columns(head[1])) + head[1]  # right-aligned like the versions
    lines = [
        f"{ljust(head[0], w[0])} {ver}  {ljust(head[2], w[2])}  {ljust(head[3], w[3])} "
        f"{ljust(head[4], w[4])}  {head[5]}"
    ]
    for ref, version, algorithm, tier, city, kcv_hex in rows:
        lines.append(
            f"{ref:<{w[0]}} {version:>{w[1]}}  {algorithm:<{w[2]}}  {tier:<{w[3]}} "
            f"{city or '-':<{w[4]}}  {kcv_hex}"
        )
    return "\n".join(lines)


@click.group()
def keys() -> None:
    """Key ceremony: key stores, root keys, dual control, zone export, rotation.

    A store file is encrypted with a passphrase (scrypt + AES-256-GCM). The
    passphrase comes from --passphrase-fd N, else $SSCARD_KEYSTORE_PASSPHRASE,
    else a hidden prompt; never from the command line. No command shows a key:
    only references, versions and key check values (KCV).

    \b
    Examples:
      sscard keys init centre.ks
      sscard keys generate centre.ks --profile national-3
      sscard keys list centre.ks
      sscard keys split centre.ks SSSE/MK/00 --parts 2 --out-dir components/
      sscard keys export-zone centre.ks pudong.ks --city 310115
      sscard keys rotate centre.ks SSSE/EAK/01
    """


@keys.command()
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--kind",
    type=click.Choice(["root", "zone"]),
    default="root",
    show_default=True,
    help="root: issuing centre; zone: a service point's city-level keys.",
)
@click.option("--city", metavar="CODE", help="6-digit city code (zone stores).")
@_fd_option
@_cost_option
@json_option
@pass_state
@require_operator("keys.init")
def init(
    state: CliState,
    store: Path,
    kind: str,
    city: str | None,
    passphrase_fd: int | None,
    kdf_cost: int,
) -> None:
    """Create a new, empty key store file (mode 0600; refuses to overwrite).

    \b
    Examples:
      sscard keys init centre.ks
      sscard keys init --kind zone --city 310115 pudong.ks
    """
    if kind == "zone" and not city:
        raise InvalidInput(_("zone store needs a city"), [("--city", _("6-digit city code"))])
    if store.exists():
        raise InvalidInput(
            _("key store exists"), [("STORE", _("{store} already exists").format(store=store))]
        )
    note(store=str(store), kind=kind, city=city)
    pw = read_secret(
        passphrase_fd, _("New passphrase for {store}").format(store=store), confirm=True
    )
    SoftwareKeyStore.create(store, pw, kind=kind, city=city, scrypt=ScryptParams(n=2**kdf_cost))
    state.emit(
        {"store": str(store), "kind": kind, "city": city, "keys": 0},
        _("Created {kind} key store {store}.").format(kind=kind, store=store),
    )


@keys.command()
@click.argument("store", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@profile_option(N_("whose key slots to use"), default=None)
@click.option(
    "--scheme",
    "scheme_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Instead of --profile: a JSON list of key slots (or {'keys': [...]}).",
)
@click.option("--ref", "refs", multiple=True, metavar="REF", help="Only these slots (repeatable).")
@click.option(
    "--version", type=click.IntRange(1, 255), help="Version to generate (default: slot's)."
)
@_fd_option
@json_option
@pass_state
@require_operator("keys.generate")
def generate(
    state: CliState,
    store: Path,
    profile: str | None,
    scheme_file: Path | None,
    refs: tuple[str, ...],
    version: int | None,
    passphrase_fd: int | None,
) -> None:
    """Generate random root keys for the key slots of a card profile.

    Nothing is written if any key already exists.

    \b
    Examples:
      sscard keys generate centre.ks --profile national-3
      sscard keys generate centre.ks --profile national-3 --ref SSSE/EAK/01 --version 2
      sscard keys generate centre.ks --scheme slots.json
    """
    if (profile is None) == (scheme_file is None):
        raise InvalidInput(
            _("which slots?"), [("--profile", _("give exactly one of --profile, --scheme"))]
        )
    if profile is not None:
        from sscard.layout.loader import load_profile

        scheme = load_profile(profile).key_scheme
    else:
        assert scheme_file is not None
        scheme = _load_scheme(scheme_file)
    slots: list[KeySlot] = [s for s in scheme.slots if not refs or s.ref in refs]
    missing = sorted(set(refs) - {s.ref for s in scheme.slots})
    if missing:
        raise InvalidInput(
            _("unknown slot"),
            [("--ref", _("not in the scheme: {refs}").format(refs=", ".join(missing)))],
        )
    note(store=str(store), slots=len(slots))
    ks = _open(store, passphrase_fd)
    _require_kind(ks, "root")
    new = [ceremony.generate_root(s, version) for s in slots]
    for e in new:
        ks.add(e)
    ks.save()
    state.emit(
        [e.info() for e in new],
        _("Generated {count} root key(s):").format(count=len(new)) + "\n" + _rows(new),
    )


@keys.command(name="list")
@click.argument("store", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_fd_option
@json_option
@pass_state
def list_(state: CliState, store: Path, passphrase_fd: int | None) -> None:
    """List references, versions, algorithms and KCVs (never key values).

    \b
    Examples:
      sscard keys list centre.ks
      SSCARD_KEYSTORE_PASSPHRASE=... sscard --json keys list centre.ks
    """
    ks = _open(store, passphrase_fd)
    entries = ks.entries()
    state.emit(
        {
            "store": str(store),
            "kind": ks.kind,
            "city": ks.city,
            "keys": [e.info() for e in entries],
        },
        (
            _("{store}: {kind} store, city {city}, {count} key(s)")
            if ks.city
            else _("{store}: {kind} store, {count} key(s)")
        ).format(store=store, kind=ks.kind, city=ks.city, count=len(entries))
        + "\n"
        + _rows(entries),
    )


@keys.command()
@click.argument("store", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("ref")
@click.option("--version", type=click.IntRange(1, 255), help="Default: the highest held.")
@click.option("--parts", type=click.IntRange(2, 9), default=2, show_default=True)
@click.option(
    "--out-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the component files (one per custodian).",
)
@_fd_option
@_cost_option
@json_option
@pass_state
@require_operator("keys.split")
def split(
    state: CliState,
    store: Path,
    ref: str,
    version: int | None,
    parts: int,
    out_dir: Path,
    passphrase_fd: int | None,
    kdf_cost: int,
) -> None:
    """Split a key into XOR components for dual control.

    Each component goes to its own encrypted file under the passphrase its
    custodian types (hidden, confirmed); each has its own KCV.

    \b
    Examples:
      sscard keys split centre.ks SSSE/MK/00 --parts 3 --out-dir /media/custodians
    """
    note(store=str(store), ref=ref, parts=parts)
    ks = _open(store, passphrase_fd)
    entry = ks.get(ref, version)
    comps = ceremony.split(entry, parts)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = entry.ref.replace("/", "-")
    paths = [out_dir / f"{name}.v{entry.version}.component{i}.ks" for i in range(1, parts + 1)]
    clash = [str(p) for p in paths if p.exists()]
    if clash:
        raise InvalidInput(_("component files exist"), [("--out-dir", ", ".join(clash))])
    written: list[dict[str, Any]] = []
    for i, (comp, path) in enumerate(zip(comps, paths, strict=True), 1):
        pw = read_secret(
            None,
            _("Custodian {i} of {parts}: new passphrase").format(i=i, parts=parts),
            confirm=True,
            env=False,
        )
        SoftwareKeyStore.create(
            path, pw, kind="component", entries=[comp], scrypt=ScryptParams(n=2**kdf_cost)
        )
        written.append({"component": i, "file": str(path), "kcv": ceremony.kcv_hex(comp)})
    result = {
        "ref": entry.ref,
        "version": entry.version,
        "kcv": ceremony.kcv_hex(entry),
        "components": written,
    }
    human = [
        _("{ref} v{version} (KCV {kcv}) split into {parts}:").format(
            ref=entry.ref, version=entry.version, kcv=result["kcv"], parts=parts
        )
    ]
    human += [
        "  "
        + _("component {i}: {file}  KCV {kcv}").format(
            i=w["component"], file=w["file"], kcv=w["kcv"]
        )
        for w in written
    ]
    state.emit(result, "\n".join(human))


@keys.command()
@click.argument("store", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument(
    "components",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@_fd_option
@json_option
@pass_state
@require_operator("keys.combine")
def combine(
    state: CliState, store: Path, components: tuple[Path, ...], passphrase_fd: int | None
) -> None:
    """Combine two or more component files into a key of STORE (dual control).

    Each custodian types the passphrase of their component file; the KCV of
    every component and of the result is shown for checking against the
    ceremony record.

    \b
    Examples:
      sscard keys combine centre.ks a/SSSE-MK-00.v1.component1.ks b/SSSE-MK-00.v1.component2.ks
    """
    if len(components) < 2:
        raise InvalidInput(_("too few components"), [("COMPONENTS", _("at least 2 files"))])
    ks = _open(store, passphrase_fd)
    parts: list[KeyEntry] = []
    for i, path in enumerate(components, 1):
        pw = read_secret(
            None, _("Custodian {i}: passphrase for {path}").format(i=i, path=path), env=False
        )
        comp_store = SoftwareKeyStore.open(path, pw)
        if comp_store.kind != "component" or len(comp_store.entries()) != 1:
            raise InvalidInput(
                _("not a component file"), [(str(path), _("kind must be 'component'"))]
            )
        parts.append(comp_store.entries()[0])
    key = ceremony.combine(parts)
    note(store=str(store), ref=key.ref, version=key.version, kcv=ceremony.kcv_hex(key))
    ks.add(key)
    ks.save()
    state.emit(
        {
            **key.info(),
            "components": [
                {"file": str(p), "kcv": ceremony.kcv_hex(c)}
                for p, c in zip(components, parts, strict=True)
            ],
        },
        _("Combined {count} components into {ref} v{version}, KCV {kcv}.").format(
            count=len(parts), ref=key.ref, version=key.version, kcv=ceremony.kcv_hex(key)
        ),
    )


@keys.command(name="import-transport")
@click.argument("store", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--kcv",
    "expected_kcv",
    required=True,
    metavar="HEX6",
    help="The transport root's KCV as the vendor stated it (6 hex digits).",
)
@profile_option(N_("whose transport key slot (MF/TK/00) this root is for"))
@click.option("--parts", type=click.IntRange(2, 9), default=2, show_default=True)
@click.option("--version", type=click.IntRange(1, 255), help="Default: the slot's version.")
@click.option(
    "--component-fd",
    "component_fds",
    type=int,
    multiple=True,
    metavar="N",
    help="Read one component from file descriptor N (repeat once per custodian; "
    "for scripted ceremonies). Else each custodian types theirs at a hidden prompt.",
)
@_fd_option
@json_option
@pass_state
@require_operator("keys.import-transport")
def import_transport(
    state: CliState,
    store: Path,
    expected_kcv: str,
    profile: str,
    parts: int,
    version: int | None,
    component_fds: tuple[int, ...],
    passphrase_fd: int | None,
) -> None:
    """Import the card vendor's transport root (MF/TK/00) under dual control.

    The vendor keys the blank cards it delivers with transport keys derived
    from a root it shares with the centre, sent as separate clear components
    (one per custodian, each with its KCV) and the KCV of the whole root. Each
    custodian types their component (32 hex digits, hidden); its KCV is shown
    for checking against the vendor's slip. The combined root is stored only if
    its KCV equals --kcv: a mistyped component changes nothing.

    \b
    Examples:
      sscard keys import-transport centre.ks --kcv 3A91C2
      sscard keys import-transport centre.ks --kcv 3A91C2 --profile national-2 --parts 3
    """
    from sscard.layout.loader import load_profile

    kcv_bytes = ceremony.parse_hex(expected_kcv, 3, field="--kcv", what="KCV")
    if component_fds and len(component_fds) != parts:
        raise InvalidInput(
            _("one component per custodian"),
            [("--component-fd", _("give it {parts} times (--parts {parts})").format(parts=parts))],
        )
    slot = load_profile(profile).key_scheme.find("MF", KeyType.TK, 0)
    ks = _open(store, passphrase_fd)
    _require_kind(ks, "root")
    components: list[bytes] = []
    shown: list[dict[str, Any]] = []
    for i in range(1, parts + 1):
        fd = component_fds[i - 1] if component_fds else None
        text = read_secret(
            fd,
            _("Custodian {i} of {parts}: transport key component").format(i=i, parts=parts),
            env=False,
        )
        comp = ceremony.parse_component(text)
        comp_kcv = kcv(comp, algorithm=slot.algorithm).hex().upper()
        shown.append({"component": i, "kcv": comp_kcv})
        if not state.json:
            click.echo("  " + _("component {i}: KCV {kcv}").format(i=i, kcv=comp_kcv), err=True)
        components.append(comp)
    entry = ceremony.transport_root(slot, components, kcv_bytes, version)
    note(store=str(store), ref=entry.ref, version=entry.version, kcv=ceremony.kcv_hex(entry))
    ks.add(entry)
    ks.save()
    state.emit(
        {**entry.info(), "components": shown},
        _(
            "Imported the vendor's transport root {ref} v{version} "
            "({algorithm}), KCV {kcv}, from {parts} components."
        ).format(
            ref=entry.ref,
            version=entry.version,
            algorithm=entry.algorithm,
            kcv=ceremony.kcv_hex(entry),
            parts=parts,
        ),
    )


@keys.command(name="export-zone")
@click.argument("store", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--city", required=True, metavar="CODE", help="6-digit city code of the service point."
)
@click.option("--ref", "refs", multiple=True, metavar="REF", help="Only these keys (repeatable).")
@click.option(
    "--transport-passphrase-fd",
    "transport_fd",
    type=int,
    metavar="N",
    help="Read OUT's transport passphrase from file descriptor N (scripted ceremonies). "
    "Else it is typed at a hidden prompt, twice.",
)
@_fd_option
@_cost_option
@json_option
@pass_state
@require_operator("keys.export-zone")
def export_zone(
    state: CliState,
    store: Path,
    out: Path,
    city: str,
    refs: tuple[str, ...],
    transport_fd: int | None,
    passphrase_fd: int | None,
    kdf_cost: int,
) -> None:
    """Derive one city's keys from the roots into a new zone store for a service point.

    OUT is encrypted under a transport passphrase typed here (hidden,
    confirmed) and handed to the service point by a separate channel. Only
    city-level keys go into OUT: roots never leave, and keys with fewer than
    two diversification levels are not exported.

    \b
    Examples:
      sscard keys export-zone centre.ks pudong.ks --city 310115
      sscard keys export-zone centre.ks pudong.ks --city 310115 --ref DF04/EAK/01
      sscard keys export-zone centre.ks pudong.ks --city 310115 --transport-passphrase-fd 3 3<tp
    """
    note(store=str(store), out=str(out), city=city)
    ks = _open(store, passphrase_fd)
    _require_kind(ks, "root")
    roots = [e for e in ks.entries() if not refs or e.ref in refs]
    missing = sorted(set(refs) - {e.ref for e in roots})
    if missing:
        raise InvalidInput(
            _("unknown key"),
            [("--ref", _("not in the store: {refs}").format(refs=", ".join(missing)))],
        )
    zone = ceremony.export_zone(roots, city)
    if not zone:
        raise InvalidInput(_("nothing to export"), [("--ref", _("no root with 2 or more levels"))])
    pw = read_secret(
        transport_fd,
        _("New transport passphrase for {out}").format(out=out),
        confirm=True,
        env=False,
    )
    SoftwareKeyStore.create(
        out, pw, kind="zone", city=city, entries=zone, scrypt=ScryptParams(n=2**kdf_cost)
    )
    state.emit(
        {"store": str(out), "city": city, "keys": [e.info() for e in zone]},
        _("Exported {count} zone key(s) for city {city} to {out}:").format(
            count=len(zone), city=city, out=out
        )
        + "\n"
        + _rows(zone),
    )


@keys.command()
@click.argument("store", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("ref")
@click.option("--version", type=click.IntRange(1, 255), help="New version (default: highest + 1).")
@_fd_option
@json_option
@pass_state
@require_operator("keys.rotate")
def rotate(
    state: CliState, store: Path, ref: str, version: int | None, passphrase_fd: int | None
) -> None:
    """Generate a new version of a root beside the old one (the old one stays).

    \b
    Examples:
      sscard keys rotate centre.ks SSSE/EAK/01
      sscard keys rotate centre.ks SSSE/EAK/01 --version 5
    """
    ks = _open(store, passphrase_fd)
    _require_kind(ks, "root")
    current = ks.get(ref)
    new = ceremony.rotate(current, version)
    note(store=str(store), ref=ref, version=new.version, kcv=ceremony.kcv_hex(new))
    ks.add(new)
    ks.save()
    state.emit(
        new.info(),
        _("{ref}: version {version} added beside version(s) {versions}, KCV {kcv}.").format(
            ref=ref,
            version=new.version,
            versions=", ".join(str(v) for v in ks.versions(ref) if v != new.version),
            kcv=ceremony.kcv_hex(new),
        ),
    )


def _require_kind(ks: SoftwareKeyStore, kind: str) -> None:
    if ks.kind != kind:
        raise InvalidInput(
            _("this needs a {kind} store").format(kind=kind),
            [("store", _("{path} is a {kind} store").format(path=ks.path, kind=ks.kind))],
        )


def _open_token(label: str, module_path: str | None, pin_fd: int | None) -> Any:
    from sscard.keys.pkcs11_module import SOFTHSM2, Pkcs11Token

    return Pkcs11Token(label, read_token_pin(pin_fd, label), module=module_path or SOFTHSM2)


@keys.command(name="token-import")
@click.argument("store", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@token_options
@click.option("--ref", "refs", multiple=True, metavar="REF", help="Only these keys (repeatable).")
@_fd_option
@json_option
@pass_state
@require_operator("keys.token-import")
def token_import(
    state: CliState,
    store: Path,
    token_label: str,
    module_path: str | None,
    pin_fd: int | None,
    refs: tuple[str, ...],
    passphrase_fd: int | None,
) -> None:
    """Import keys of STORE into a PKCS#11 token as non-extractable objects.

    The token computes each key's KCV; it must equal the store's, or nothing
    more is imported. SM4 keys are refused (no SM4 mechanism in the token).

    \b
    Examples:
      sscard keys token-import centre.ks --token issuing-hsm
      SSCARD_TOKEN_PIN=... sscard keys token-import pudong.ks --token sp-hsm --ref DF04/EAK/01
    """
    from sscard.errors import TokenError

    note(store=str(store), hsm=token_label)
    ks = _open(store, passphrase_fd)
    entries = [e for e in ks.entries() if not refs or e.ref in refs]
    missing = sorted(set(refs) - {e.ref for e in entries})
    if missing:
        raise InvalidInput(
            _("unknown key"),
            [("--ref", _("not in the store: {refs}").format(refs=", ".join(missing)))],
        )
    imported: list[dict[str, Any]] = []
    with _open_token(token_label, module_path, pin_fd) as token:
        for e in entries:
            token.require(e.algorithm)
        for e in entries:
            info = token.import_key(e)
            if info.kcv != e.kcv:
                raise TokenError(
                    _("{ref} v{version}: token KCV differs from the store's").format(
                        ref=e.ref, version=e.version
                    )
                )
            imported.append(info.info())
    state.emit(
        {"token": token_label, "imported": imported},
        _("Imported {count} key(s) into token {token}:").format(
            count=len(imported), token=token_label
        )
        + "\n"
        + "\n".join(
            "  "
            + _("{ref} v{version}  KCV {kcv}").format(
                ref=k["ref"], version=k["version"], kcv=k["kcv"]
            )
            for k in imported
        ),
    )


@keys.command(name="token-list")
@token_options
@json_option
@pass_state
def token_list(
    state: CliState, token_label: str, module_path: str | None, pin_fd: int | None
) -> None:
    """List sscard keys in a PKCS#11 token (KCVs computed inside the token).

    \b
    Examples:
      sscard keys token-list --token issuing-hsm
      sscard --json keys token-list --token sp-hsm --pin-fd 3 3<pin.txt
    """
    with _open_token(token_label, module_path, pin_fd) as token:
        rows = [k.info() for k in token.entries()]
    table = _key_table(
        (
            k["ref"],
            k["version"],
            k["algorithm"],
            f"{k['tier']} {k['depth']}/{k['levels']}",
            k["city"],
            k["kcv"],
        )
        for k in rows
    )
    state.emit({"token": token_label, "keys": rows}, table)
