"""``sscard virtual``: emulated cards for tests, demos and users without hardware."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from sscard.applets.cos import EmulatedCard, Latency
from sscard.applets.factory import (
    new_card_file,
    new_psam_file,
    open_image_file,
    parse_atr,
    parse_serial,
)
from sscard.applets.image import SealedImage
from sscard.applets.psam import EmulatedPsam
from sscard.applets.vpcd import DEFAULT_HOST, DEFAULT_PORT, VpcdBridge
from sscard.cli.context import CliState, pass_state
from sscard.cli.keystore import keystore_options, security_module
from sscard.cli.options import profile_option
from sscard.i18n import N_, _
from sscard.layout import load_profile


@click.group()
def virtual() -> None:
    """Emulated social security cards and PSAMs (files) and the bridge that puts them in
    PC/SC readers.

    \b
    Examples:
      sscard virtual new card.img --serial 0011223344556677
      sscard -r virtual:card.img info          use it in-process, no pcscd needed
      sscard virtual serve card.img            make it a card in reader 'Virtual PCD 00 00'
      sscard virtual new psam.img --psam       a blank PSAM (service-point security module)
      sscard virtual serve card.img psam.img   the PSAM goes into 'Virtual PCD 00 01'
    """


@virtual.command("new")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@profile_option(N_("of the new card (national-3: SM4, national-2: two-key 3DES)"))
@click.option(
    "--psam",
    is_flag=True,
    help="Make a blank PSAM (the security module of a service point) instead of a card; "
    "its transport key (PTK) follows the profile's transport key slot.",
)
@click.option(
    "--serial",
    metavar="HEX16",
    help="Chip serial, 16 hex digits (default: random); the chip reports it with GET DATA.",
)
@click.option(
    "--atr",
    metavar="HEX",
    help="The card's answer to reset (default: a vendor-like T=1 ATR). Any ATR works: "
    "cards are recognised by their own data, not by the ATR.",
)
@keystore_options
@pass_state
def new(
    state: CliState,
    path: Path,
    profile: str,
    psam: bool,
    serial: str | None,
    atr: str | None,
    keystore: str | None,
    passphrase_fd: int | None,
) -> None:
    """Create a blank card (or with --psam a blank PSAM) at PATH, ready for issuance.

    The card is blank until issued: the profile (--profile) is the one issuance
    will follow; once issued, readers recognise the card's generation from the
    card itself. The transport key (MF/TK/00) is diversified for the chip serial from the
    transport root in --keystore, as a card vendor keys the blank cards it
    delivers from the transport root it exchanged with the centre ('sscard keys
    import-transport'). Without --keystore (and $SSCARD_KEYSTORE) it comes from
    the published development keys. PATH is encrypted with this installation's
    emulator key and is never overwritten.

    A PSAM (--psam) is keyed the same way: its PTK is the transport root
    diversified by the PSAM serial; 'sscard psam issue' then loads its keys.

    \b
    Examples:
      sscard virtual new card.img --keystore centre.ks
      sscard virtual new card.img --profile national-2 --keystore pkcs11:issuing-hsm
      sscard virtual new dev.img                     development transport key
      sscard virtual new odd.img --atr 3B6D00000087CF20018649618B00930612
      sscard virtual new psam.img --psam --keystore centre.ks
    """
    card_serial = parse_serial(serial)
    card_atr = parse_atr(atr) if atr is not None else None
    module = security_module(keystore, passphrase_fd, load_profile(profile)) if keystore else None
    transport = None if module is None or module.development else module.blank_card_transport_key
    source = _("the development keys") if transport is None else keystore
    chip: EmulatedPsam | EmulatedCard
    if psam:
        chip = new_psam_file(
            path, card_serial, profile_name=profile, transport=transport, atr=card_atr
        )
        created = _(
            "Blank PSAM created: {path}\n  profile {profile}, serial {serial}, "
            "transport key from {source}\n  use it with: {use}"
        )
        use = f"sscard virtual serve CARD.img {path}"
    else:
        chip = new_card_file(path, profile, card_serial, transport=transport, atr=card_atr)
        created = _(
            "Blank card created: {path}\n  profile {profile}, serial {serial}, "
            "transport key from {source}\n  use it with: {use}"
        )
        use = f"sscard -r virtual:{path} info"
    data = {
        "path": str(path),
        "kind": "psam" if psam else "card",
        "profile": profile,
        "serial": chip.serial.hex().upper(),
        "atr": chip.atr.hex().upper(),
        "lifecycle": chip.state.lifecycle,
        "transport_keys": "development" if transport is None else "key store",
    }
    state.emit(
        data,
        created.format(path=path, profile=profile, serial=data["serial"], source=source, use=use),
    )


@virtual.command()
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Where vpcd (pcscd) listens.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="vpcd port of the first card; the next cards use the following ports.",
)
@click.option(
    "--latency",
    type=click.Choice(["none", "realistic"]),
    default="none",
    show_default=True,
    help="Model a real card's speed: realistic = 5 ms per APDU, 20 ms per EEPROM write.",
)
@pass_state
def serve(state: CliState, paths: tuple[Path, ...], host: str, port: int, latency: str) -> None:
    """Put the cards and PSAMs at PATHS into vpcd readers of pcscd until Ctrl-C or SIGTERM.

    Each image connects to vpcd on consecutive ports (35963 is reader
    'Virtual PCD 00 00', 35964 'Virtual PCD 00 01') and reconnects when pcscd
    restarts; the image's kind (made by 'virtual new' or 'virtual new --psam')
    decides whether a card or a PSAM answers. Stopping is clean: every EEPROM
    write is atomic, so the images stay consistent.

    \b
    Examples:
      sscard virtual serve card.img
      sscard virtual serve card.img psam.img     card in 00 00, PSAM in 00 01
    """
    model = Latency.named(latency)
    cards = [open_image_file(p, latency=model) for p in paths]
    storages = [c.storage for c in cards if isinstance(c.storage, SealedImage)]
    for storage in storages:  # served cards are ours until we stop, power on or off
        storage.hold()
    bridges = [VpcdBridge(card, host, port + i) for i, card in enumerate(cards)]
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for bridge, path in zip(bridges, paths, strict=True):
            bridge.start()
            serving = (
                _("serving PSAM {path} on {host}:{port}")
                if isinstance(bridge.card, EmulatedPsam)
                else _("serving card {path} on {host}:{port}")
            )
            click.echo(serving.format(path=path, host=host, port=bridge.port), err=True)
        stop.wait()
    finally:
        for bridge in bridges:
            bridge.stop()
        for storage in storages:
            storage.unhold()
        for s, handler in old.items():
            signal.signal(s, handler)
        click.echo(_("stopped; card images are consistent"), err=True)
