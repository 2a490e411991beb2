"""``sscard agent``: the local card service for business systems and the kiosk page
(docs/agent.md)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import click

from sscard.agent.app import AgentConfig, serve
from sscard.agent.guard import load_token, loopback_address, parse_origin, token_path
from sscard.agent.reader import CardReader
from sscard.agent.service import AgentSettings, CardService
from sscard.auth import OperatorStore
from sscard.cli.connect import service_point_option
from sscard.cli.context import CliState, pass_state
from sscard.cli.keystore import keystore_options
from sscard.cli.secrets import read_secret
from sscard.i18n import _
from sscard.keys.provider import (
    DEV,
    PKCS11_PREFIX,
    PSAM_PREFIX,
    keystore_spec,
    open_security_module,
)
from sscard.keys.security_module import SecurityModule
from sscard.layout.model import Profile

ENV_ORIGINS = "SSCARD_AGENT_ORIGINS"


@click.group()
def agent() -> None:
    """The local card service: business systems (Java, C#, a browser page) call the
    national interface (iReadCardBas, iVerifyPIN, iChangePIN, iReloadPIN) as JSON over
    HTTP and WebSocket on 127.0.0.1; kiosks run its page. See docs/agent.md.

    \b
    Examples:
      sscard -r "ACS ACR39U" agent serve --keystore psam:"ACS ACR39U 01"
      sscard agent token                  the API token business systems send
    """


def _origins(values: tuple[str, ...]) -> tuple[str, ...]:
    given = list(values)
    if not given and os.environ.get(ENV_ORIGINS):
        given = [v for v in os.environ[ENV_ORIGINS].split(",") if v.strip()]
    return tuple(dict.fromkeys(parse_origin(v) for v in given))


def _key_source(
    keystore: str | None, passphrase_fd: int | None
) -> Callable[[Profile], SecurityModule] | None:
    """The agent's keys: opened per card profile when first needed; a passphrase or token
    PIN is read once, now, not in the middle of a caller's request."""
    spec = keystore_spec(keystore)
    if spec is None:
        return None
    secret: str | None = None
    if spec.startswith(PKCS11_PREFIX):
        label = spec[len(PKCS11_PREFIX) :]
        secret = read_secret(passphrase_fd, _("User PIN of token {label}").format(label=label))
    elif spec != DEV and not spec.startswith(PSAM_PREFIX):
        from sscard.keys.software_store import SoftwareKeyStore

        secret = read_secret(passphrase_fd, _("Passphrase for {path}").format(path=spec))
        SoftwareKeyStore.open(spec, secret)  # a wrong passphrase fails now, not per call

    def keys(profile: Profile) -> SecurityModule:
        return open_security_module(
            spec,
            slots=profile.key_scheme.slots,
            production=profile.production,
            secret=lambda _label: secret or "",
        )

    return keys


@agent.command(name="serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Loopback address to listen on: 127.0.0.1, ::1 or localhost (never another).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=7480,
    show_default=True,
    help="TCP port; 0 picks a free one (the 'listening on' line tells which).",
)
@click.option(
    "--allow-origin",
    "origins",
    multiple=True,
    metavar="URL",
    help="A web page origin allowed to call, e.g. https://biz.example (repeatable; "
    "default $SSCARD_AGENT_ORIGINS, comma-separated). Pages from other origins are refused.",
)
@keystore_options
@service_point_option
@click.option("--kiosk", is_flag=True, help="Serve the cardholders' PIN-change page at /kiosk/.")
@click.option(
    "--pinpad",
    type=click.Choice(["auto", "required", "off"]),
    default="auto",
    show_default=True,
    help="auto: the reader's PIN pad when a call gives no PIN; required: refuse PINs "
    "sent by callers; off: never the pad.",
)
@click.option(
    "--busy-wait",
    type=click.FloatRange(0, 60),
    default=2.0,
    show_default=True,
    help="Seconds a caller waits for the card while another holds it, then 'card in use'.",
)
@click.option(
    "--pin-attempts",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    help="PIN commands (verify, change) allowed per --pin-window, for the reader.",
)
@click.option(
    "--pin-window",
    type=click.FloatRange(1, 3600),
    default=60.0,
    show_default=True,
    help="Seconds of the PIN rate-limit window.",
)
@click.option(
    "--terminal-device",
    default="",
    metavar="ID",
    help="终端设备号 put in the iReadCardBas line (default empty).",
)
@pass_state
def serve_(
    state: CliState,
    host: str,
    port: int,
    origins: tuple[str, ...],
    keystore: str | None,
    passphrase_fd: int | None,
    service_point: str,
    kiosk: bool,
    pinpad: str,
    busy_wait: float,
    pin_attempts: int,
    pin_window: float,
    terminal_device: str,
) -> None:
    """Serve the card in the reader (global --reader) on the loopback address until Ctrl-C.

    Business systems send the API token ('sscard agent token') as 'Authorization:
    Bearer TOKEN'; staff calls (iReloadPIN, iUnblockPIN) also need an operator
    session (POST /api/operator/login). Prints 'listening on URL' once ready.
    The access log (method, path, status, time; never a PIN) is at --log-level info.

    \b
    Examples:
      sscard -r "ACS ACR39U" agent serve --keystore psam:"ACS ACR39U 01"
      sscard -r virtual:card.img agent serve --port 0 --keystore dev
      sscard --log-level info -r "ACS ACR39U" agent serve \\
          --allow-origin https://biz.example --keystore sp.ks --passphrase-fd 3 3<pass
      sscard operator login kiosk-07 && sscard -r "ACS ACR39U" agent serve --kiosk
    """
    loopback_address(host)
    allowed = _origins(origins)
    if kiosk:
        from sscard.cli.auth import authorize

        authorize("pin.change")  # the kiosk operator, as for 'sscard kiosk'
    keys = _key_source(keystore, passphrase_fd)
    token = load_token(create=True)
    reader = CardReader.open(state.reader)
    settings = AgentSettings(
        service_point=service_point,
        busy_wait=busy_wait,
        pinpad=pinpad,
        terminal_device=terminal_device,
    )
    service = CardService(reader, settings, keys=keys, store=state.open_store)
    config = AgentConfig(
        host=host,
        port=port,
        allowed_origins=allowed,
        token=token,
        kiosk=kiosk,
        pin_attempts=pin_attempts,
        pin_window=pin_window,
    )

    def ready(url: str) -> None:
        click.echo(_("listening on {url}").format(url=url))
        if kiosk:
            click.echo(_("kiosk page: {url}").format(url=f"{url}/kiosk/"))

    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C during shutdown
        serve(config, service, lambda: OperatorStore(state.open_store()), ready=ready)
    click.echo(_("Agent stopped."), err=True)


@agent.command(name="token")
@click.option(
    "--rotate", is_flag=True, help="Make a new token; callers holding the old one are refused."
)
@pass_state
def token_(state: CliState, rotate: bool) -> None:
    """Print the installation's API token (made on first use; file agent.token, mode 0600).

    Give it to the business systems of this service point; they send it as
    'Authorization: Bearer TOKEN' (or in the WebSocket 'auth' message).

    \b
    Examples:
      sscard agent token
      sscard agent token --rotate         after a leak; restart the agent
    """
    value = load_token(create=True, rotate=rotate)
    state.emit({"token": value, "path": str(token_path())}, value)
