"""``sscard audit``: show, verify and checkpoint the audit trail (regulation art. 13-14).

Reading the trail needs the auditor role; verifying and signing checkpoints an
auditor or an issuer; adding the checkpoint key to a key store an issuer
(docs/operators.md, "Audit trail").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sscard import audit
from sscard.cli.auth import note, require_operator
from sscard.cli.context import CliState, json_option, pass_state
from sscard.cli.options import passphrase_fd_option, platform_options
from sscard.cli.secrets import read_secret
from sscard.errors import InvalidInput, PlatformUnavailable
from sscard.exchange.client import PlatformClient
from sscard.exchange.tls import client_context
from sscard.i18n import N_, _, columns, ljust
from sscard.keys import ENV_KEYSTORE
from sscard.keys.software_store import SoftwareKeyStore

F = TypeVar("F", bound=Callable[..., Any])


def _keystore_option(required: bool) -> Callable[[F], F]:
    return click.option(
        "--keystore",
        envvar=ENV_KEYSTORE,
        required=required,
        metavar="STORE",
        help="Key store holding the audit checkpoint key AUDIT/CPK/01 (a key store file, or "
        "'dev' for the published development key). Default: $SSCARD_KEYSTORE.",
    )


_fd_option = passphrase_fd_option()


@click.group(name="audit")
def audit_group() -> None:
    """The audit trail: every operator action, hash-chained, with signed checkpoints.

    \b
    Examples:
      sscard audit show --since 24h
      sscard audit show --card 310115199001011234 --json
      sscard audit verify --keystore centre.ks
      sscard audit checkpoint --keystore centre.ks
      sscard audit init-key centre.ks
    """


def _rjust(text: str, width: int) -> str:
    """``text`` right-aligned in ``width`` terminal columns (wide characters take two)."""
    return " " * max(0, width - columns(text)) + text


def _row(r: audit.AuditRecord) -> str:
    why = r.unreadable()
    if why is not None:
        return f"{r.seq!s:>6}  " + _("UNREADABLE: {why} (tampered?)").format(why=why)
    card = r.card_number or r.card_serial or "-"
    who = f"{r.operator or '-'}/{r.role or '-'}"
    tail = f"  {r.error}" if r.error else ""
    return (
        f"{r.seq:>6}  {r.time[:19]}Z  {ljust(who, 24)} {ljust(r.action, 20)} {ljust(card, 20)} "
        f"{r.outcome}{tail}"
    )


def _header() -> str:
    """The column titles of ``audit show`` (translated, aligned as the rows are)."""
    seq, time, who = _("SEQ"), _("TIME (UTC)"), _("OPERATOR/ROLE")
    action, card, outcome = _("ACTION"), _("CARD"), _("OUTCOME")
    return (
        f"{_rjust(seq, 6)}  {ljust(time, 20)} {ljust(who, 24)} "
        f"{ljust(action, 20)} {ljust(card, 20)} {outcome}"
    )


@audit_group.command()
@click.option("--since", metavar="WHEN", help="From this time: 2025-01-31, 2025-01-31T08:00, 24h.")
@click.option("--operator", "who", metavar="ID", help="Only this operator's records.")
@click.option("--card", metavar="NUMBER|SERIAL", help="Only records about this card.")
@click.option("--action", metavar="ACTION", help="Only this action, or area (e.g. keys).")
@click.option("--limit", type=click.IntRange(1), metavar="N", help="Only the last N records.")
@json_option
@pass_state
@require_operator("audit.read", option="--as")
def show(
    state: CliState,
    since: str | None,
    who: str | None,
    card: str | None,
    action: str | None,
    limit: int | None,
) -> None:
    """Show audit records, oldest first (auditor role).

    \b
    Examples:
      sscard audit show --since 24h
      sscard audit show --operator zhang.wei --action pin
      sscard audit show --card 310115199001011234 --json
    """
    conn = state.open_store()
    try:
        rows = audit.records(conn, since=since, operator=who, card=card, action=action, limit=limit)
    finally:
        conn.close()
    lines = [_header(), *map(_row, rows)]
    if any(r.unreadable() for r in rows):
        lines.append(_("Some rows are unreadable: run 'sscard audit verify' to check the trail."))
    state.emit([r.info() for r in rows], "\n".join(lines))


def _witnessed(
    platform: str | None, cert: Path | None, key: Path | None, ca: Path | None
) -> audit.Checkpoint | None:
    """The head the platform witnessed for this service point, signed or not (None: none yet)."""
    missing = [name for name, v in (("--cert", cert), ("--key", key), ("--ca", ca)) if not v]
    if missing:
        raise InvalidInput(
            _("incomplete platform settings"),
            [(m, _("needed with --platform ($SSCARD_PLATFORM_URL)")) for m in missing],
        )
    assert cert and key and ca
    try:
        with PlatformClient(platform or "", client_context(cert, key, ca)) as c:
            head = c.audit_head()
    except PlatformUnavailable as exc:
        raise PlatformUnavailable(
            _("{error} ('--no-platform' checks the local trail only)").format(error=exc)
        ) from None
    return None if head is None else audit.Checkpoint.from_wire(head)


@audit_group.command()
@_keystore_option(required=False)
@_fd_option
@platform_options(
    required=False,
    platform_help=N_(
        "The exchange platform, https://HOST:PORT ($SSCARD_PLATFORM_URL) whose witnessed head "
        "to check against, as for 'sscard sync'."
    ),
)
@click.option(
    "--no-platform",
    is_flag=True,
    help="Check the local trail only, even with a platform configured.",
)
@json_option
@pass_state
@require_operator("audit.verify")
def verify(
    state: CliState,
    keystore: str | None,
    passphrase_fd: int | None,
    platform: str | None,
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
    no_platform: bool,
) -> None:
    """Verify the hash chain, the checkpoint signatures and the platform's witness.

    Without --keystore (or $SSCARD_KEYSTORE) the chain is checked but not the
    checkpoint signatures, which is weaker: someone able to write the database
    could have re-computed the chain. With an exchange platform configured
    (as for 'sscard sync') the trail must still reach the record the platform
    witnessed, with the same hash: a cut tail fails. A broken trail exits 1
    and names the first broken record; an unreachable platform exits 5.

    \b
    Examples:
      sscard audit verify --keystore centre.ks
      sscard --json audit verify --keystore dev
      sscard audit verify --keystore pudong.ks --no-platform
    """
    signer = (
        audit.open_signer(keystore, lambda label: read_secret(passphrase_fd, label))
        if keystore
        else None
    )
    use_platform = bool(platform) and not no_platform
    witnessed = _witnessed(platform, cert, key, ca) if use_platform else None
    conn = state.open_store()
    try:
        report = audit.verify(conn, signer, witnessed)
    finally:
        conn.close()
    note(records=report.records, checkpoints=report.checkpoints, witnessed=report.witnessed_seq)
    lines = [
        _(
            "{records} record(s), {checkpoints} checkpoint(s), {verified} signature(s) verified."
        ).format(
            records=report.records,
            checkpoints=report.checkpoints,
            verified=report.checkpoints_verified,
        )
    ]
    if not use_platform:
        reach = _(
            "Trail verified to record {seq}; no exchange platform checked "
            "(its witness catches a cut tail)."
        )
    elif report.witnessed_seq is None:
        reach = _("Trail verified to record {seq}; the platform has witnessed no checkpoint yet.")
    else:
        reach = _("Trail verified to record {seq}; platform witnessed up to record {witnessed}.")
    lines.append(reach.format(seq=report.verified_to, witnessed=report.witnessed_seq))
    if report.ok:
        lines.insert(0, _("Audit trail intact."))
        if report.unsigned_tail:
            lines.append(
                _(
                    "{count} record(s) after the last verified checkpoint "
                    "are protected by the hash chain only."
                ).format(count=report.unsigned_tail)
            )
    lines += [_("Note: {note}").format(note=n) for n in report.notes]
    state.emit(report.info(), "\n".join(lines))
    if report.problem is not None:
        raise report.problem


@audit_group.command()
@_keystore_option(required=True)
@_fd_option
@json_option
@pass_state
@require_operator("audit.checkpoint")
def checkpoint(state: CliState, keystore: str, passphrase_fd: int | None) -> None:
    """Sign the current head of the audit trail with the checkpoint key.

    Run it at the end of every shift or day (cron with --passphrase-fd); keep
    the printed sequence number and hash in the paper ceremony log as well.

    \b
    Examples:
      sscard audit checkpoint --keystore centre.ks
      sscard audit checkpoint --keystore pudong.ks --passphrase-fd 3 3<pw
    """
    signer = audit.open_signer(keystore, lambda label: read_secret(passphrase_fd, label))
    conn = state.open_store()
    try:
        report = audit.verify(conn, None)
        if report.problem is not None:
            raise report.problem  # never sign a broken chain
        cp = audit.checkpoint(conn, signer)
    finally:
        conn.close()
    note(checkpoint=cp.id, seq=cp.seq, key_id=cp.key_id)
    state.emit(
        {"id": cp.id, "seq": cp.seq, "hash": cp.hash, "time": cp.time, "key_id": cp.key_id},
        _("Checkpoint {id}: record {seq}, hash {hash}, key {key}.").format(
            id=cp.id, seq=cp.seq, hash=cp.hash, key=cp.key_id
        ),
    )


@audit_group.command(name="init-key")
@click.argument("store", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_fd_option
@json_option
@pass_state
@require_operator("audit.init-key")
def init_key(state: CliState, store: Path, passphrase_fd: int | None) -> None:
    """Add a new audit checkpoint key (AUDIT/CPK/01) to a key store file.

    A second run adds a new version: new checkpoints use it, old ones still
    verify with the old version.

    \b
    Examples:
      sscard audit init-key centre.ks
    """
    ks = SoftwareKeyStore.open(
        store, read_secret(passphrase_fd, _("Passphrase for {store}").format(store=store))
    )
    entry = audit.init_key(ks)
    note(ref=entry.ref, version=entry.version, kcv=entry.kcv.hex().upper())
    state.emit(
        entry.info(),
        _("Added audit checkpoint key {ref} v{version}, KCV {kcv}, to {store}.").format(
            ref=entry.ref, version=entry.version, kcv=entry.kcv.hex().upper(), store=store
        ),
    )
