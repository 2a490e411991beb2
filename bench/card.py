"""Benchmark: the emulated card's APDU throughput, in-process and through pcscd + vpcd.

* in-process, EEPROM in memory: READ RECORD (no write) and VERIFY (two EEPROM
  writes: the counter spent, then reset);
* in-process, EEPROM in an image file (fsync per write): VERIFY;
* through pcscd: the card served by ``sscard virtual serve`` in its own process,
  read with PcscTransport: READ RECORD;
* a whole personalization in-process (APDUs per card, cards per second).

Usage: ``.venv/bin/python bench/card.py [--seconds 2] [--json]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from report import arguments, rate, report

from sscard.applets.cos import EmulatedCard
from sscard.applets.factory import new_card_file, new_memory_card
from sscard.applets.pcsc_rig import reader_lock, running_pcscd, served_card
from sscard.card import SocialSecurityCard
from sscard.issuance.plan import build_plan
from sscard.keys.dev import development_module
from sscard.keys.security_module import SecurityModule
from sscard.layout import load_profile
from sscard.transport import InProcessTransport
from sscard.transport.pcsc import PcscTransport

SSSE = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
READ = bytes.fromhex("00B2072C00")
HOLDER = json.loads(
    (Path(__file__).resolve().parent.parent / "examples" / "holder.json").read_text("utf-8")
)
PIN = "135790"


@lru_cache(maxsize=4)
def _module(profile: str) -> SecurityModule:
    return development_module(load_profile(profile).key_scheme.slots)


def personalize(card: EmulatedCard, profile: str) -> int:
    """Issue ``card`` in-process; the number of APDUs it took."""
    transport = InProcessTransport(card)
    transport.connect()
    count = 0
    inner = transport.transmit

    def counting(apdu: bytes) -> bytes:
        nonlocal count
        count += 1
        return inner(apdu)

    transport.transmit = counting  # type: ignore[method-assign]
    # a blank card does not say its profile: issuance gives it
    session = SocialSecurityCard.open(transport, load_profile(profile), security=_module(profile))
    build_plan(session.profile, HOLDER, session.serial, pin=PIN, sign=session.sign_card_id).run(
        session
    )
    transport.disconnect()
    return count


def main() -> int:
    args = arguments(__doc__)
    out: dict[str, object] = {}

    card = new_memory_card()
    apdus_per_card = personalize(card, "national-3")
    out["apdus_per_personalization"] = apdus_per_card
    out["personalizations_per_s_inprocess_memory"] = round(
        rate(lambda: personalize(new_memory_card(), "national-3"), args.seconds, batch=50), 1
    )
    card.power_on()
    card.process(SSSE)
    out["read_record_per_s_inprocess"] = round(
        rate(lambda: card.process(READ), args.seconds, batch=50)
    )
    verify = bytes.fromhex("0020000003" + PIN)
    out["verify_per_s_inprocess_memory"] = round(
        rate(lambda: card.process(verify), args.seconds, batch=50)
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "card.img"
        file_card = new_card_file(path)
        personalize(file_card, "national-3")
        file_card.power_on()
        file_card.process(SSSE)
        out["verify_per_s_inprocess_file_fsync"] = round(
            rate(lambda: file_card.process(verify), args.seconds, batch=50)
        )
        file_card.power_off()

        with running_pcscd(), reader_lock() as port, served_card(path, port) as reader:
            transport = PcscTransport(reader)
            transport.connect()
            transport.transmit(SSSE)
            out["read_record_per_s_pcscd"] = round(
                rate(lambda: transport.transmit(READ), args.seconds, batch=50)
            )
            transport.disconnect()
    report(out, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
