"""``sscard exchange-platform``: run the reference exchange platform (docs/exchange.md).

For development and tests: a real HTTPS server with mutual TLS, its SQLite
store and per-department audit, and a throw-away test CA.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from sscard.cli.context import CliState, pass_state
from sscard.exchange.ca import DEFAULT_HOSTS, init_ca
from sscard.exchange.platform import Platform, PlatformStore, load_config
from sscard.exchange.tls import server_context
from sscard.i18n import _


@click.group("exchange-platform")
def platform_group() -> None:
    """The reference exchange platform: serve it, make test certificates, read its audit.

    \b
    Examples:
      sscard exchange-platform init-ca pki --client sp-labour-01 --client sp-police-01
      sscard exchange-platform serve --config platform.toml --tls-dir pki --port 8443
      sscard exchange-platform audit --department labour
    """


@platform_group.command("init-ca")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--client",
    "clients",
    multiple=True,
    metavar="SERVICE_POINT",
    help="Make a client certificate with this CN (repeatable).",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="NAME",
    # a literal, so that it is translated: keep it in step with DEFAULT_HOSTS
    help="Server certificate name or IP (repeatable; default: localhost, 127.0.0.1, ::1).",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=365,
    show_default=True,
    help="Validity of server and client certificates (the CA: 5 times as long).",
)
@pass_state
def init_ca_cmd(
    state: CliState, directory: Path, clients: tuple[str, ...], hosts: tuple[str, ...], days: int
) -> None:
    """Make a TEST CA in DIRECTORY with a server certificate and client certificates.

    Writes ca.pem, server.pem and SERVICE_POINT.pem, each with its -key.pem
    (mode 0600, unencrypted: for tests only). Run again with more --client to
    add service points; existing files are kept. The client CN is the service
    point id the platform config maps to a department.

    \b
    Example:
      sscard exchange-platform init-ca pki --client sp-labour-01 --client sp-police-01
    """
    issued = init_ca(directory, list(clients), hosts=hosts or DEFAULT_HOSTS, days=days)
    data = {name: {"cert": str(i.cert), "key": str(i.key)} for name, i in issued.items()}
    lines = [
        f"{name:<16} " + _("{cert}  (key {key})").format(cert=i.cert, key=i.key)
        for name, i in issued.items()
    ]
    state.emit(data, "\n".join(lines))


@platform_group.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Departments and sharing agreements (JSON, or TOML by suffix).",
)
@click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("platform.db"),
    show_default=True,
    help="The platform's SQLite file.",
)
@click.option(
    "--tls-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory made by init-ca: server.pem, server-key.pem, ca.pem.",
)
@click.option(
    "--cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Server certificate (default: TLS_DIR/server.pem).",
)
@click.option(
    "--key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Server private key (default: TLS_DIR/server-key.pem).",
)
@click.option(
    "--ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CA that issued the client certificates (default: TLS_DIR/ca.pem).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8443,
    show_default=True,
    help="TCP port; 0 picks a free one (printed).",
)
def serve(
    config_path: Path,
    store: Path,
    tls_dir: Path | None,
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
    host: str,
    port: int,
) -> None:
    """Serve the platform over HTTPS with mutual TLS until SIGINT or SIGTERM.

    Prints 'listening on https://HOST:PORT' once it accepts connections.

    \b
    Example:
      sscard exchange-platform serve --config platform.toml --tls-dir pki --port 8443
    """
    base = tls_dir or Path(".")
    ctx = server_context(
        cert or base / "server.pem", key or base / "server-key.pem", ca or base / "ca.pem"
    )
    platform = Platform(load_config(config_path), store, ctx, host, port)
    logging.getLogger("sscard.exchange.platform").setLevel(logging.INFO)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    platform.start()
    # A machine interface, not translated: scripts and tests read the URL (the port
    # picked by --port 0) from this line (docs/exchange.md, "serve").
    listening = f"listening on {platform.url}"
    click.echo(listening)
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    platform.stop()
    click.echo(_("stopped"))


@platform_group.command()
@click.option(
    "--store",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=Path("platform.db"),
    show_default=True,
    help="The platform's SQLite file.",
)
@click.option("--department", help="Only this department's entries.")
@click.option(
    "--limit", type=click.IntRange(1), default=100, show_default=True, help="The latest N entries."
)
@click.option("--json", "json_output", is_flag=True, help="Machine-readable JSON on stdout.")
@pass_state
def audit(
    state: CliState, store: Path, department: str | None, limit: int, json_output: bool
) -> None:
    """Show what each department pushed and pulled, and refused connections (art. 13-14).

    \b
    Example:
      sscard exchange-platform audit --department labour --limit 20
    """
    state.json = state.json or json_output
    entries = PlatformStore(store).audit_log(department, limit)
    lines = []
    for e in entries:
        d = e["detail"]
        what = ", ".join(f"{k} {v}" for k, v in d.items() if k not in ("ids", "problems"))
        lines.append(
            f"{e['at']}  {e['department'] or '-':<10} {e['client'] or '-':<14} "
            f"{e['action']:<18} {e['status']}  {what}"
        )
    state.emit(entries, "\n".join(lines) or _("no audit entries"))
