"""``sscard apdu``: send raw APDUs and show the responses with status-word meanings.

Raw APDUs bypass every check the other commands make (PIN policy, staff
records), so the command needs the ``card.apdu`` permission (issuers only) and
each session is audited: the record lists every command's header, its Lc/Le
lengths and the status word answered, never command or response data.
"""

from __future__ import annotations

import re
import sys

import click

from sscard.apdu import REDACTED, CommandApdu, ResponseApdu
from sscard.cli.auth import note, require_operator
from sscard.cli.connect import connected_protocol
from sscard.cli.context import CliState, pass_state
from sscard.cli.exit_codes import ExitCode
from sscard.errors import InvalidInput
from sscard.i18n import _

_SW_PATTERN = re.compile(r"^[0-9A-F]{2}[0-9A-FX]{2}$")


def _parse_hex(text: str, where: str) -> CommandApdu:
    cleaned = re.sub(r"[\s:]", "", text)
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        raise InvalidInput(
            _("not an APDU"),
            [(where, _("must be hexadecimal digits, e.g. 00A4040007A0000000031010"))],
        ) from None
    try:
        return CommandApdu.parse(raw)
    except ValueError as exc:
        raise InvalidInput(_("not an APDU"), [(where, str(exc))]) from None


def _sw_matches(sw: int, pattern: str) -> bool:
    text = f"{sw:04X}"
    return all(p in ("X", c) for p, c in zip(pattern, text, strict=True))


@click.command()
@click.argument("apdus", nargs=-1, metavar="HEX...")
@click.option(
    "--stdin",
    "from_stdin",
    is_flag=True,
    help="Read APDUs from stdin, one per line (needed for commands carrying a PIN or key).",
)
@click.option(
    "--expect-sw",
    metavar="SW",
    help="Status word every response must have (hex, X as wildcard, e.g. 9000 or 61XX); "
    "exit 1 at the first that differs.",
)
@click.option("--raw", is_flag=True, help="Send exactly what is given: no 61xx/6Cxx handling.")
@pass_state
@require_operator("card.apdu")
def apdu(
    state: CliState, apdus: tuple[str, ...], from_stdin: bool, expect_sw: str | None, raw: bool
) -> None:
    """Send raw command APDUs to the card and print each response.

    Each HEX is one command APDU (spaces and colons allowed inside quotes).
    61xx is followed by GET RESPONSE and 6Cxx resent with the right Le unless
    --raw. Commands whose data is a PIN, key or cryptogram (VERIFY, CHANGE PIN,
    PIN RELOAD/UNBLOCK, WRITE KEY, EXTERNAL/INTERNAL AUTHENTICATE) are refused
    on the command line, where other users can see them: pass them with --stdin.
    Their data is redacted in the output.

    Needs a logged-in issuer (permission card.apdu). The session is audited:
    each command's header (CLA INS P1 P2), Lc/Le and status word, never data.

    \b
    Examples:
      sscard -r "Virtual PCD 00 00" apdu 00A4040007A0000000031010
      sscard apdu --expect-sw 9000 "00 A4 00 00 02 3F 00" 0084000008
      printf '0020000003123456\\n' | sscard apdu --stdin
    """
    if expect_sw is not None:
        expect_sw = expect_sw.upper()
        if not _SW_PATTERN.match(expect_sw):
            raise click.BadParameter(
                _("4 hex digits, X as wildcard (e.g. 9000, 61XX)"), param_hint="--expect-sw"
            )
    commands: list[CommandApdu] = []
    for i, text in enumerate(apdus, 1):
        where = _("APDU {n}").format(n=i)
        cmd = _parse_hex(text, where)
        if cmd.sensitive and cmd.data:
            raise InvalidInput(
                _("refusing a secret on the command line"),
                [
                    (
                        where,
                        _(
                            "{command} carries a PIN, key or cryptogram; pass it with --stdin"
                        ).format(command=cmd.name),
                    )
                ],
            )
        commands.append(cmd)
    if from_stdin:
        for n, line in enumerate(sys.stdin, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(_parse_hex(line, _("stdin line {n}").format(n=n)))
    if not commands:
        raise click.UsageError(_("give at least one APDU (as HEX arguments or with --stdin)"))

    results: list[dict[str, str]] = []
    sent: list[str] = []  # audit: headers, lengths, status words; never data
    failed = False
    try:
        with connected_protocol(state) as protocol:
            for cmd in commands:
                sent.append(audit_header(cmd))
                if raw:
                    response = ResponseApdu.parse(protocol.transport.transmit(cmd.encode()))
                else:
                    response = protocol.send(cmd, check=False)
                sent[-1] += f" SW={response.sw:04X}"
                if not _show(state, cmd, response, results, expect_sw):
                    failed = True
                    break
    finally:
        note(apdus="; ".join(sent), count=len(sent))
    if state.json:
        state.emit(results)
    if failed:
        last = results[-1]
        state.error(
            "UnexpectedStatusWord",
            _("{command}: expected SW {expected}, got {sw} ({meaning})").format(
                command=last["command"], expected=expect_sw, sw=last["sw"], meaning=last["meaning"]
            ),
            int(ExitCode.FAILED),
        )
        click.get_current_context().exit(int(ExitCode.FAILED))


def audit_header(cmd: CommandApdu) -> str:
    """What the audit trail keeps of a command: header and lengths, e.g. ``00A40400 Lc=7``."""
    text = cmd.header().hex().upper()
    if cmd.data:
        text += f" Lc={len(cmd.data)}"
    if cmd.le is not None:
        text += f" Le={cmd.le}"
    return text


def _show(
    state: CliState,
    cmd: CommandApdu,
    response: ResponseApdu,
    results: list[dict[str, str]],
    expect_sw: str | None,
) -> bool:
    """Print (or collect for --json) one exchange; whether its SW is the expected one."""
    shown = _shown(cmd)
    data = REDACTED if cmd.ins == 0x88 and response.data else response.data.hex().upper()
    results.append(
        {"command": shown, "data": data, "sw": f"{response.sw:04X}", "meaning": response.meaning}
    )
    if not state.json:
        click.echo(f"> {shown}")
        click.echo(f"< {data + ' ' if data else ''}{response.sw:04X}  ({response.meaning})")
    return expect_sw is None or _sw_matches(response.sw, expect_sw)


def _shown(cmd: CommandApdu) -> str:
    if cmd.sensitive and cmd.data:
        return f"{cmd.header().hex().upper()} {REDACTED}"
    return cmd.encode().hex().upper()
