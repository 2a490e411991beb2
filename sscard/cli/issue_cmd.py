"""``sscard issue``: personalize one card from holder data (``sscard issue batch`` for many)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sscard import errors
from sscard.card import SocialSecurityCard
from sscard.cli.auth import GuardedGroup, operator, require_operator
from sscard.cli.connect import connected_transport, default_service_point, service_point_option
from sscard.cli.context import CliState, pass_state, store_option
from sscard.cli.keystore import keystore_options, security_module
from sscard.cli.options import profile_option
from sscard.cli.secrets import read_pins
from sscard.i18n import N_, _, columns, ljust
from sscard.issuance.plan import Step, build_plan
from sscard.issuance.service import REPLACE_REASONS, issue_card
from sscard.issuance.store import STATUSES
from sscard.layout import load_profile, read_holders, validate_holder
from sscard.pinpolicy import PinPolicy

PHASES = {
    "open": N_("Opening the personalization session with the transport key"),
    "create": N_("Creating the file tree"),
    "keys": N_("Loading the card's keys (diversified for its serial)"),
    "records": N_("Writing the card and cardholder records"),
    "pin": N_("Setting the initial PIN"),
    "verify": N_("Verifying: reading back every record, internal and external authentication"),
    "close": N_("Ending personalization"),
}
"""The progress line of each issuance phase (translated where shown: ``_(PHASES[phase])``)."""

_RESULT_WORDS = {
    "issued": N_("Card issued and verified."),
    "resumed": N_("The interrupted issuance was finished: card verified and recorded."),
    "already-issued": N_("This card is already issued to this holder; nothing to do."),
}


_OPTIONS = "sscard.issue.options"


@dataclass(frozen=True)
class IssueOptions:
    """The options of the ``issue`` group that its subcommands use too."""

    keystore: str | None
    passphrase_fd: int | None
    profile: str | None
    service_point: str


def issue_options() -> IssueOptions:
    """The ``issue`` group's options, for a subcommand (set by the group callback)."""
    options: IssueOptions = click.get_current_context().meta[_OPTIONS]
    return options


def read_one_holder(path: str) -> dict[str, Any]:
    """The single holder record in ``path`` (JSON object, or a one-row CSV / JSON Lines)."""
    rows = read_holders(path)
    if len(rows) != 1:
        raise errors.InvalidInput(
            _("one holder expected"),
            [
                (
                    "--holder",
                    _("{path} holds {count} records; use 'sscard issue batch' for several").format(
                        path=path, count=len(rows)
                    ),
                )
            ],
        )
    return dict(rows[0].data)


def read_pin(pin_stdin: bool, random_pin: bool, birth_date: str | None) -> tuple[str, bool]:
    """The initial PIN and whether it was generated. Entered twice; never from argv."""
    policy = PinPolicy()
    if random_pin:
        return policy.random(birth_date=birth_date), True
    (first,) = read_pins(pin_stdin, [(_("Holder: enter the new PIN"), True)])
    policy.check(first, birth_date=birth_date)
    return first, False


@click.group(cls=GuardedGroup, invoke_without_command=True)
@click.option(
    "--holder",
    "holder_path",
    metavar="FILE",
    help="Holder data: a JSON object, or a one-row CSV or JSON Lines file.",
)
@click.option("--pin-stdin", is_flag=True, help="Read the PIN twice from stdin (one per line).")
@click.option(
    "--random-pin", is_flag=True, help="Generate the PIN; it is printed once (PIN mailer)."
)
@keystore_options
@store_option
@click.option("--replace", is_flag=True, help="The holder has an active card: replace it.")
@click.option(
    "--reason",
    type=click.Choice(REPLACE_REASONS),
    default="other",
    show_default=True,
    help="Why the old card is replaced (with --replace).",
)
@service_point_option
@profile_option(
    N_(
        "of the blank card to issue (default national-3; an issued card says its own), to plan "
        "for with --dry-run, and to check 'issue batch' rows against"
    ),
    default=None,
)
@click.option("--dry-run", is_flag=True, help="Print the plan (secrets redacted); touch no card.")
@require_operator("card.issue", record=False)
@pass_state
@click.pass_context
def issue(
    ctx: click.Context,
    state: CliState,
    holder_path: str | None,
    pin_stdin: bool,
    random_pin: bool,
    keystore: str | None,
    passphrase_fd: int | None,
    replace: bool,
    reason: str,
    service_point: str,
    profile: str | None,
    dry_run: bool,
) -> None:
    """Issue one card: personalize the blank card in the reader for a holder.

    The holder data is validated first: nothing touches the card when it is
    invalid (exit 7, every bad field listed). Then the plan runs: transport
    key, file tree, keys diversified for this card, records, initial PIN,
    verification (read back, internal and external authentication), end of
    personalization. Only a verified card is recorded as issued, with its
    audit record and its exchange event, in the local store.

    Pulled out, power cut, killed? Run the same command again with the same
    card: it finishes the job or starts it cleanly.

    The initial PIN is entered twice by the holder (hidden prompt, or two
    lines on stdin with --pin-stdin), or generated with --random-pin and
    printed once for the PIN mailer. It never appears in a log or file.

    The card's keys derive from the roots in --keystore for the card's serial
    and the city of the holder's region (docs/keys.md, "Which city").

    \b
    Examples:
      sscard -r virtual:card.img issue --holder holder.json --keystore dev --random-pin
      printf '802461\\n802461\\n' | sscard issue --holder h.json --pin-stdin --keystore centre.ks
      sscard issue --holder holder.json --dry-run
      sscard issue --keystore centre.ks batch holders.csv --readers "ACS"   (issue batch --help)
      sscard issue list --status in_progress      cards whose issuance did not finish
    """
    ctx.meta[_OPTIONS] = IssueOptions(keystore, passphrase_fd, profile, service_point)
    if ctx.invoked_subcommand is not None:
        return
    if holder_path is None:
        raise click.UsageError(_("give --holder FILE (or use 'sscard issue batch')"))
    if pin_stdin and random_pin:
        raise click.UsageError(_("--pin-stdin and --random-pin exclude each other"))
    holder = read_one_holder(holder_path)
    validate_holder(holder)
    if dry_run:
        _dry_run(state, holder, profile)
        return
    pin, generated = read_pin(pin_stdin, random_pin, holder.get("birth_date"))
    with connected_transport(state) as transport:
        # A blank card does not say its profile: it is issued with the given one (else the
        # default); an issued card (a re-run) is recognised and must fit a given one.
        card = SocialSecurityCard.open(transport, load_profile(profile) if profile else None)
        card.security = security_module(keystore, passphrase_fd, card.profile)
        conn = state.open_store()
        try:
            last_phase: list[str] = []

            def progress(_i: int, step: Step) -> None:
                if not state.json and step.phase not in last_phase:
                    last_phase.append(step.phase)
                    click.echo(f"  {_(PHASES[step.phase])} …", err=True)

            if not state.json:
                click.echo(
                    _(
                        "Issuing card {serial} ({profile}) to {name}, card number {card_number}"
                    ).format(
                        serial=card.serial.hex().upper(),
                        profile=card.profile.name,
                        name=holder["name"],
                        card_number=holder["card_number"],
                    ),
                    err=True,
                )
            result = issue_card(
                card,
                holder,
                pin=pin,
                conn=conn,
                operator=operator(),
                service_point=service_point,
                replace=replace,
                replace_reason=reason,
                progress=progress,
            )
        finally:
            conn.close()
    data = result.to_json()
    words = _(_RESULT_WORDS[result.status])
    if result.replaced:
        words = _("{words} It replaces card {card}, now recorded as replaced.").format(
            words=words, card=result.replaced
        )
    if generated and result.status != "already-issued":
        data["initial_pin"] = pin
    if state.json:
        state.emit(data)
        return
    click.echo(words)
    if "initial_pin" in data:
        click.echo(
            _(
                "PIN mailer — card {card_number}: initial PIN {pin} "
                "(shown once; hand it over sealed)"
            ).format(card_number=data["card_number"], pin=pin)
        )


def _dry_run(state: CliState, holder: dict[str, Any], profile_name: str | None) -> None:
    profile = load_profile(profile_name)
    serial = bytes(8)
    plan = build_plan(profile, holder, serial, pin="000000", sign=lambda _data: bytes(4))
    steps = plan.describe()
    if state.json:
        state.emit({"profile": profile.name, "serial": "(the card's)", "steps": steps})
        return
    click.echo(
        _(
            "Plan for profile {profile} ({count} steps; the serial comes from "
            "the card, secrets are shown as <...>):"
        ).format(profile=profile.name, count=len(steps))
    )
    for i, step in enumerate(steps, 1):
        click.echo(f"{i:3}. [{step['phase']}] {step['description']}\n       {step['command']}")


@issue.command("batch")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--readers",
    "pattern",
    metavar="PATTERN",
    help="Use every PC/SC reader whose name contains PATTERN (case-insensitive).",
)
@click.option(
    "--virtual",
    "virtual_n",
    type=click.IntRange(1, 64),
    metavar="N",
    help="Instead of PC/SC readers: N in-process readers with blank emulated cards.",
)
@click.option(
    "--latency",
    type=click.Choice(["none", "realistic"]),
    default="none",
    show_default=True,
    help="With --virtual: model real cards (5 ms/APDU, 20 ms/write).",
)
@click.option("--skip-invalid", is_flag=True, help="Report invalid rows and go on with the rest.")
@click.option(
    "--results",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Results file, .csv or .jsonl (default: FILE.results-TIME.jsonl beside FILE).",
)
@pass_state
@click.pass_context
def batch(
    ctx: click.Context,
    state: CliState,
    file: Path,
    pattern: str | None,
    virtual_n: int | None,
    latency: str,
    skip_invalid: bool,
    results: Path | None,
) -> None:
    """Issue a card for every row of FILE (.csv, .jsonl or .json), one worker per reader.

    Every row is validated first; bad rows are all reported (line, field,
    problem) before any card is touched, and the batch stops unless
    --skip-invalid. Each worker waits for a blank card in its reader, issues
    the next row with a random PIN (PIN mailers go to stdout, one line per
    card), verifies it, and waits for the card to be taken out. A results
    file gets one line per row: row, card serial, status, error. With
    --json, stdout is JSON Lines: one object per PIN mailer, the summary last.

    Run it again to finish an interrupted batch: rows already issued are
    skipped, a card torn mid-issue is finished for its own row. Ctrl-C lets
    the cards in flight finish; a second Ctrl-C abandons them (they stay
    in progress in the store and are finished next time; with --virtual the
    cards are gone, and the next batch closes their rows as abandoned).

    Stations sharing a store may run overlapping files: a row whose holder
    another station is issuing waits and is tried again; a row issued there
    is skipped.

    The key store, local store, profile and service point are the options of
    'sscard issue' (give them before 'batch').

    \b
    Examples:
      sscard issue --keystore centre.ks batch holders.csv --readers "ACS ACR39U"
      sscard issue --keystore dev batch holders.jsonl --virtual 4 --latency realistic
    """
    from sscard.issuance.batch import (
        BatchRun,
        ResultsWriter,
        RowResult,
        default_results_path,
        rate_and_eta,
        run_until_done,
    )
    from sscard.issuance.readers import ReaderSlot, VirtualSlot
    from sscard.transport import pcsc

    opts = issue_options()
    profile = load_profile(opts.profile)
    if (pattern is None) == (virtual_n is None):
        raise click.UsageError(_("give either --readers PATTERN or --virtual N"))
    rows = read_holders(file)
    bad: list[tuple[int, str, str]] = []  # (line, field, problem)
    good = []
    for row in rows:
        try:
            validate_holder(row.data, profile)
            good.append(row)
        except errors.InvalidInput as exc:
            bad += [(row.line, field, problem) for field, problem in exc.problems]
    if bad and not skip_invalid:
        count = len(rows) - len(good)
        raise errors.InvalidInput(
            _("{file}: {count} invalid row(s), no card touched").format(file=file, count=count),
            [
                (_("line {line}: {field}").format(line=line, field=field), problem)
                for line, field, problem in bad
            ],
        )
    security = security_module(opts.keystore, opts.passphrase_fd, profile)
    slots: list[Any]
    if virtual_n is not None:
        from sscard.applets.cos import Latency

        model = Latency.named(latency)
        blank_tk = None if security.development else security.blank_card_transport_key
        spec = opts.profile or profile.name  # a shipped name or a profile file
        slots = [VirtualSlot(f"virtual-{i}", spec, model, blank_tk) for i in range(virtual_n)]
    else:
        assert pattern is not None
        names = [r for r in pcsc.list_readers() if pattern.casefold() in r.casefold()]
        if not names:
            raise errors.ReaderNotFound(
                _("no reader matches {pattern}").format(pattern=repr(pattern)),
                pcsc.list_readers(),
            )
        slots = [ReaderSlot(n) for n in names]
    results = results or default_results_path(file)
    writer = ResultsWriter(results)
    for line, field, problem in bad:  # the results file is data: its wording stays English
        writer.write(RowResult(line, None, "invalid", f"line {line}: {field}: {problem}"))

    def mailer(row: Any, number: str, pin: str) -> None:
        if state.json:  # JSON Lines: one object per mailer, the summary last
            click.echo(json.dumps({"row": row.line, "card_number": number, "initial_pin": pin}))
        else:
            click.echo(
                _("PIN mailer — row {row}, card {card_number}: initial PIN {pin}").format(
                    row=row.line, card_number=number, pin=pin
                )
            )

    def tick(run: BatchRun) -> None:
        if state.json:
            return
        rate, eta = rate_and_eta(run)
        counts = {
            "done": run.done,
            "failed": run.failed,
            "skipped": run.skipped,
            "remaining": run.remaining,
            "rate": rate,
        }
        if eta is not None:
            status = _(
                "{done} issued, {failed} failed, {skipped} skipped, "
                "{remaining} to go, {rate:.2f} cards/s, ETA {eta} s"
            ).format(eta=int(eta), **counts)
        else:
            status = _(
                "{done} issued, {failed} failed, {skipped} skipped, "
                "{remaining} to go, {rate:.2f} cards/s, ETA —"
            ).format(**counts)
        click.echo(f"\r{status}   ", err=True, nl=False)

    run = BatchRun(
        rows=good,
        readers=slots,
        profile=profile,
        open_conn=state.open_store,
        security=security,
        operator=operator(),
        service_point=opts.service_point or default_service_point(),
        on_result=writer.write,
        on_pin=mailer,
    )
    try:
        interrupted = run_until_done(
            run,
            tick=tick,
            on_stopping=lambda: click.echo(
                "\n" + _("Stopping: finishing the cards in flight (Ctrl-C again to abandon them)"),
                err=True,
            ),
            on_abandoned=lambda: click.echo(
                "\n" + _("Abandoned: cards in flight stay in progress and are finished next run."),
                err=True,
            ),
        )
    finally:
        writer.close()
    summary = {
        "issued": run.done,
        "failed": run.failed,
        "skipped": run.skipped,
        "invalid": len(rows) - len(good),
        "deferred": run.deferred,
        "left": run.remaining,
        "results": str(results),
    }
    if state.json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            "\n"
            + _(
                "Done: {done} issued, {failed} failed, {skipped} skipped "
                "(already issued), {invalid} invalid, {left} left. "
                "Results: {results}"
            ).format(
                done=run.done,
                failed=run.failed,
                skipped=run.skipped,
                invalid=summary["invalid"],
                left=run.remaining,
                results=results,
            ),
            err=True,
        )
        if run.deferred:
            click.echo(
                _(
                    "{count} row(s) waited while another station was issuing their holder's card."
                ).format(count=run.deferred),
                err=True,
            )
    if run.failed or run.remaining or interrupted:
        ctx.exit(1)


@issue.command("list")
@click.option(
    "--status",
    type=click.Choice(STATUSES),
    help="Only cards with this status.",
)
@pass_state
def list_cards(state: CliState, status: str | None) -> None:
    """List the cards in the local issuance store (no PIN or key is ever stored).

    'in_progress' cards are those whose issuance did not finish: put the card
    back in a reader and run the same 'sscard issue' again to finish it.
    'abandoned' cards can never be finished (in-memory cards of a killed
    'issue batch --virtual', closed by the next batch), with the reason.
    """
    from sscard.issuance import store as issuance_store

    conn = state.open_store()
    try:
        rows = issuance_store.cards(conn, status=status)
    finally:
        conn.close()
    data = [r.to_json() for r in rows]
    if state.json:
        state.emit(data)
        return
    if not rows:
        click.echo(
            _("No cards in the issuance store with status {status}.").format(status=status)
            if status
            else _("No cards in the issuance store.")
        )
        return
    head = [_("SERIAL"), _("CARD NO."), _("STATUS"), _("ISSUED (UTC)")]
    w = [max(n, columns(h)) for n, h in zip((17, 10, 12, 26), head, strict=True)]
    click.echo(" ".join(ljust(h, n) for h, n in zip(head, w, strict=True)) + " " + _("LAST ERROR"))
    for r in rows:
        click.echo(
            f"{r.serial:<{w[0]}} {r.card_number:<{w[1]}} {r.status:<{w[2]}} "
            f"{r.issued_at or '-':<{w[3]}} {r.closed_reason or r.last_error or ''}"
        )
