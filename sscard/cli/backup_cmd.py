"""``sscard backup``: encrypted backups of the local stores and key store files (art. 15).

The backup passphrase comes from ``--passphrase-fd N``, else
``$SSCARD_BACKUP_PASSPHRASE``, else a hidden prompt (typed twice when creating);
never from argv.
"""

from __future__ import annotations

from pathlib import Path

import click

from sscard import audit, backup, db
from sscard.auth import OperatorStore
from sscard.cli.auth import audited, authorize, note, operator_option, require_operator
from sscard.cli.context import CliState, json_option, pass_state
from sscard.cli.options import kdf_cost_option, passphrase_fd_option
from sscard.cli.secrets import read_secret
from sscard.errors import BackupError
from sscard.i18n import N_, _
from sscard.keys.software_store import ScryptParams

ENV_BACKUP_PASSPHRASE = "SSCARD_BACKUP_PASSPHRASE"


def _secret(fd: int | None, label: str, *, confirm: bool = False) -> str:
    return read_secret(fd, label, confirm=confirm, env_name=ENV_BACKUP_PASSPHRASE)


_fd_option = passphrase_fd_option(N_("backup passphrase"), ENV_BACKUP_PASSPHRASE)


def _refuse_a_database_server(state: CliState) -> None:
    """The archive holds SQLite files; a PostgreSQL store is backed up with its own tools."""
    if db.parse_target(state.store_target()).engine == db.POSTGRESQL:
        raise BackupError(
            _("the store is a PostgreSQL database: sscard backups hold SQLite stores only")
        ).with_hint(
            _(
                "back a PostgreSQL store up with the engine's own tools, pg_dump -Fc and "
                "pg_restore (docs/store.md, 'Backups of a PostgreSQL store')"
            )
        )


@click.group(name="backup")
def backup_group() -> None:
    """Encrypted backups: the local stores (issuance, outbox, operators, audit) and key stores.

    \b
    Examples:
      sscard backup create /media/backup --keystore centre.ks
      sscard backup restore /media/backup/sscard-backup-20250131T180000Z-1a2b.ssbk
    """


@backup_group.command()
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--keystore",
    "keystores",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An encrypted key store file to include (repeatable).",
)
@_fd_option
@kdf_cost_option(N_("the archive key"))
@json_option
@pass_state
@require_operator("backup.create")
def create(
    state: CliState,
    out_dir: Path,
    keystores: tuple[Path, ...],
    passphrase_fd: int | None,
    kdf_cost: int,
) -> None:
    """Write one encrypted, integrity-protected archive of every sscard database in the
    data directory, the directory of the local store (consistent snapshots, taken while
    others keep working) and the key store files given.

    \b
    Examples:
      sscard backup create /media/backup --keystore centre.ks
      sscard backup create /srv/backup --passphrase-fd 3 3<backup.pw
    """
    _refuse_a_database_server(state)
    pw = _secret(passphrase_fd, _("Backup passphrase"), confirm=True)
    info = backup.create(
        out_dir,
        pw,
        keystores=keystores,
        directory=state.store_path().parent,
        scrypt=ScryptParams(n=2**kdf_cost),
    )
    note(archive=info.path.name, databases=len(info.databases), keystores=len(info.keystores))
    state.emit(
        info.info(),
        _(
            "Backup written to {path}: {databases} database(s), {keystores} key store file(s)."
        ).format(path=info.path, databases=len(info.databases), keystores=len(info.keystores)),
    )


@backup_group.command()
@click.argument(
    "archive", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--keystore-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Put the key store files here instead of their original paths.",
)
@_fd_option
@operator_option
@json_option
@pass_state
def restore(
    state: CliState,
    archive: Path,
    keystore_dir: Path | None,
    passphrase_fd: int | None,
    operator_id: str | None,
) -> None:
    """Restore an archive: all of it, or nothing if it is tampered with or not ours.

    Needs an issuer; on a new installation (no operator yet) anyone at the
    machine may restore. Stop every sscard process using the data directory
    first. The restore is recorded in the restored audit trail.

    \b
    Examples:
      sscard backup restore /media/backup/sscard-backup-20250131T180000Z-1a2b.ssbk
      sscard backup restore FILE --keystore-dir /etc/sscard/keys
    """
    _refuse_a_database_server(state)
    store = OperatorStore(state.open_store())
    try:
        fresh = store.is_empty()
    finally:
        store.close()
    op = None if fresh else authorize("backup.restore", operator_id)
    pw = _secret(passphrase_fd, _("Backup passphrase"))
    directory = state.store_path().parent
    if op is None:
        info = backup.restore(archive, pw, directory=directory, keystore_dir=keystore_dir)
        conn = state.open_store()
        try:
            audit.record(
                "backup.restore", operator=None, outcome="ok",
                detail={"archive": archive.name, "new_installation": True}, conn=conn,
            )  # fmt: skip
        finally:
            conn.close()
    else:
        with audited("backup.restore", op):
            note(archive=archive.name)
            info = backup.restore(archive, pw, directory=directory, keystore_dir=keystore_dir)
    state.emit(
        info.info(),
        _(
            "Restored {databases} database(s) and {keystores} key store file(s) "
            "from {archive} (taken {created})."
        ).format(
            databases=len(info.databases),
            keystores=len(info.keystores),
            archive=archive,
            created=info.created,
        ),
    )
