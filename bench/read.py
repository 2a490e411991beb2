"""Benchmark: the national basic-information read (``iReadCardBas``) on 2.0 and 3.0 cards.

For each generation, on an emulated card issued with the development keys:

* the APDUs one ``SocialSecurityCard.open(...).read_basic_info()`` sends, listed
  (recognition, reads by record identifier, on 3.0 the read authentication; with a
  security module also GET DATA of the chip serial, to check the card
  identification code's MAC) — the national flow is the floor a terminal needs;
* reads per second in-process and through pcscd + vpcd (the card served by
  ``sscard virtual serve`` in its own process);
* through pcscd, a raw pyscard script that replays the same APDUs of a 2.0 read
  without keys (baseline, same run): the ratio sscard / raw shows the session's cost.

Usage: ``.venv/bin/python bench/read.py [--seconds 2] [--json]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from report import arguments, rate, report
from smartcard import scard

from sscard.applets.factory import new_card_file, open_card_file
from sscard.applets.pcsc_rig import reader_lock, running_pcscd, served_card
from sscard.card import SocialSecurityCard
from sscard.issuance.plan import build_plan
from sscard.keys.dev import development_module
from sscard.keys.security_module import SecurityModule
from sscard.layout import load_profile
from sscard.transport import InProcessTransport
from sscard.transport.base import Transport
from sscard.transport.pcsc import PcscTransport

HOLDER = json.loads(
    (Path(__file__).resolve().parent.parent / "examples" / "holder.json").read_text("utf-8")
)
PIN = "135790"
PROFILES = ("national-2", "national-3")


def module(profile: str) -> SecurityModule:
    return development_module(load_profile(profile).key_scheme.slots)


def issue(path: Path, profile: str) -> None:
    card = new_card_file(path, profile)
    transport = InProcessTransport(card)
    transport.connect()
    session = SocialSecurityCard.open(transport, load_profile(profile), security=module(profile))
    build_plan(session.profile, HOLDER, session.serial, pin=PIN, sign=session.sign_card_id).run(
        session
    )
    transport.disconnect()


def read(transport: Transport, security: SecurityModule | None) -> str:
    return SocialSecurityCard.open(transport, security=security).read_basic_info().national()


def recorded(transport: Transport, security: SecurityModule | None) -> list[bytes]:
    """The command APDUs of one read."""
    sent: list[bytes] = []
    inner = transport.transmit

    def spy(apdu: bytes) -> bytes:
        sent.append(bytes(apdu))
        return inner(apdu)

    transport.transmit = spy  # type: ignore[method-assign]
    try:
        read(transport, security)
    finally:
        transport.transmit = inner  # type: ignore[method-assign]
    return sent


def replay(handle: int, apdus: list[list[int]]) -> None:
    """The same APDUs with raw pyscard on the same handle (the baseline)."""
    for apdu in apdus:
        hresult, _ = scard.SCardTransmit(handle, scard.SCARD_PCI_T1, apdu)
        assert hresult == 0


def main() -> int:
    args = arguments(__doc__)
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {p: Path(tmp) / f"{p}.img" for p in PROFILES}
        for profile, path in paths.items():
            issue(path, profile)
        for profile, path in paths.items():
            card = open_card_file(path)
            transport = InProcessTransport(card)
            transport.connect()
            keys = module(profile)
            apdus = recorded(transport, keys)
            out[f"{profile}: APDUs per read, with keys"] = len(apdus)
            out[f"{profile}: the APDUs"] = " ".join(a[:4].hex().upper() for a in apdus)
            if profile == "national-2":
                out[f"{profile}: APDUs per read, no keys"] = len(recorded(transport, None))
            out[f"{profile}: reads/s in-process"] = round(
                rate(lambda t=transport, k=keys: read(t, k), args.seconds), 1
            )
            transport.disconnect()
            card.power_off()
        with running_pcscd(), reader_lock() as port:
            for profile, path in paths.items():
                with served_card(path, port) as reader:
                    transport = PcscTransport(reader)
                    transport.connect()
                    keys = module(profile)
                    out[f"{profile}: reads/s through pcscd"] = round(
                        rate(lambda t=transport, k=keys: read(t, k), args.seconds), 1
                    )
                    if profile == "national-2":
                        apdus = recorded(transport, None)
                        sscard_rate = rate(lambda t=transport: read(t, None), args.seconds)
                        handle = transport.handle
                        lists = [list(a) for a in apdus]

                        raw_rate = rate(lambda h=handle, a=lists: replay(h, a), args.seconds)
                        out[f"{profile}: reads/s no keys, sscard"] = round(sscard_rate, 1)
                        out[f"{profile}: reads/s no keys, raw pyscard same APDUs"] = round(
                            raw_rate, 1
                        )
                        out[f"{profile}: sscard / raw time ratio"] = round(
                            raw_rate / sscard_rate, 2
                        )
                    transport.disconnect()
    report(out, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
