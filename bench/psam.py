"""Benchmark: service-point operations with a PSAM through pcscd vs the software key store.

A 3.0 (SM4) card issued with the development keys is served in one vpcd reader,
an SM4 PSAM issued for a service counter from the same keys in the other (both
by ``sscard virtual serve`` in its own process, as real cards would be). Two
operations, each run with the PSAM (``psam:READER``) and with the software store
in the same run:

* PIN unblock (``PinManager.unblock``: GET CHALLENGE, MAC under the PUK);
* the 3.0 basic-information read (``read_basic_info``: read authentication under
  RKSSSE with the process factor, the card identification code's MAC under the IAK).

Reported: operations per second with each, the ratio, and APDUs per operation,
counted separately for the card and for the PSAM.

Usage: ``.venv/bin/python bench/psam.py [--seconds 2] [--json]``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from report import arguments

from sscard.applets.factory import new_card_file, new_psam_file
from sscard.applets.pcsc_rig import VPCD_READERS, reader_lock, running_pcscd
from sscard.card import SocialSecurityCard
from sscard.errors import TransportError
from sscard.issuance.plan import build_plan
from sscard.issuance.psam import issue_psam
from sscard.keys.dev import development_module
from sscard.keys.psam_module import Psam, PsamSecurityModule
from sscard.keys.security_module import SecurityModule
from sscard.layout import load_profile
from sscard.pin import PinManager
from sscard.transport import InProcessTransport, pcsc
from sscard.transport.base import Transport
from sscard.transport.pcsc import PcscTransport

HOLDER = json.loads(
    (Path(__file__).resolve().parent.parent / "examples" / "holder.json").read_text("utf-8")
)
PIN = "135790"
PROFILE = "national-3"
CITY, TERMINAL = "310100", "310100000001"
PORTS = (35963, 35964)


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def prepare(tmp: Path, software: SecurityModule) -> tuple[Path, Path]:
    """An issued 3.0 card and a service PSAM, both images from the development keys."""
    card_path, psam_path = tmp / "card.img", tmp / "psam.img"
    card = InProcessTransport(new_card_file(card_path, PROFILE))
    card.connect()
    session = SocialSecurityCard.open(card, load_profile(PROFILE), security=software)
    build_plan(session.profile, HOLDER, session.serial, pin=PIN, sign=session.sign_card_id).run(
        session
    )
    card.disconnect()
    psam = InProcessTransport(new_psam_file(psam_path, profile_name=PROFILE))
    issue_psam(psam, software, load_profile(PROFILE), kind="service", city=CITY, terminal=TERMINAL)
    psam.disconnect()
    return card_path, psam_path


@contextmanager
def served(card: Path, psam: Path) -> Iterator[tuple[str, str]]:
    """``sscard virtual serve card psam``: the card in reader 00, the PSAM in reader 01."""
    readers = (VPCD_READERS[PORTS[0]], VPCD_READERS[PORTS[1]])
    sscard = str(Path(sys.executable).with_name("sscard"))
    server = subprocess.Popen(
        [sscard, "virtual", "serve", str(card), str(psam), "--port", str(PORTS[0])],
        stderr=subprocess.DEVNULL,
    )
    try:
        for reader in readers:
            pcsc.wait_for_card(reader, 15)
        yield readers
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(15)
        for reader in readers:
            with suppress(TransportError):
                pcsc.wait_for_card(reader, 15, present=False)


class Counted:
    """Counts the APDUs a transport sends."""

    def __init__(self, transport: Transport) -> None:
        self.transport, self.count = transport, 0
        inner = transport.transmit

        def spy(apdu: bytes) -> bytes:
            self.count += 1
            return inner(apdu)

        transport.transmit = spy  # type: ignore[method-assign]


def unblock(card: Transport, security: SecurityModule) -> object:
    session = SocialSecurityCard.open(card, security=security)
    PinManager(session).unblock()
    return session


def read(card: Transport, security: SecurityModule) -> object:
    return SocialSecurityCard.open(card, security=security).read_basic_info().national()


OPERATIONS: dict[str, Callable[[Transport, SecurityModule], object]] = {
    "PIN unblock": unblock,
    "3.0 basic-information read": read,
}


def main() -> int:
    args = arguments(__doc__)
    out: dict[str, object] = {}
    software = development_module(load_profile(PROFILE).key_scheme.slots)
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_pcscd(),
        reader_lock(PORTS[:1]),
        reader_lock(PORTS[1:]),
    ):
        card_path, psam_path = prepare(Path(tmp), software)
        with served(card_path, psam_path) as (card_reader, psam_reader):
            card = Counted(PcscTransport(card_reader))
            card.transport.connect()
            psam_link = Counted(PcscTransport(psam_reader))
            psam = PsamSecurityModule(Psam(psam_link.transport))
            for name, op in OPERATIONS.items():
                rates = {}
                for label, security in (("software store", software), ("PSAM", psam)):
                    op(card.transport, security)  # warm: the PSAM's key directory, the card
                    card.count = psam_link.count = 0
                    op(card.transport, security)
                    out[f"{name}: card APDUs, {label}"] = card.count
                    out[f"{name}: PSAM APDUs, {label}"] = psam_link.count
                    rates[label] = rate(lambda o=op, s=security: o(card.transport, s), args.seconds)
                    out[f"{name}: ops/s through pcscd, {label}"] = round(rates[label], 1)
                out[f"{name}: PSAM / software time ratio"] = round(
                    rates["software store"] / rates["PSAM"], 2
                )
            card.transport.disconnect()
            psam_link.transport.disconnect()
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        for key, value in out.items():
            print(f"{key:<64} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
