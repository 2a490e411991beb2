"""Benchmark: issuance throughput (issue 6).

* APDUs per card for one issuance;
* cards per second in-process (no latency model), one reader;
* cards per second through pcscd + vpcd, the card served by ``sscard virtual
  serve`` in its own process (time of the issuance itself, not of swapping cards);
* with the realistic latency model (5 ms per APDU, 20 ms per EEPROM write),
  batch throughput with 1, 2, 4 and 8 parallel in-process readers, and the
  speed-up over one reader (target: 8 readers >= 6x);
* the software share of an issuance under the realistic latency model: host
  time / total time (target: <= 2 %).

Host time is measured, not derived: the issuance runs under the realistic
model on an emulated card behind a stopwatch, and host time is the wall time
spent outside the card (total minus the time inside the card's ``power_on``,
``process`` and ``power_off``). That is the time sscard's own Python keeps a
card waiting: building the plan, secure messaging, key diversification and
enciphering, APDU encoding, the issuance store, audit and outbox writes.
Two other definitions were rejected. "Total minus the modelled latency" would
count as host the emulator's own work and ``time.sleep`` overshoot (some
0.3 ms per sleep, about 250 sleeps a card), both of which stand in for the
chip's time that a real card spends inside its own latency; printed apart as
``realistic_card_beyond_model_ms_per_card``. A run with zero latency would
count the emulator as host too, and would miss that host code woken after
each 5-20 ms wait runs on cold caches, as it does beside a real reader (it
measures host time about 3x lower than under the model). The share is given
over several cards issued one after another on one reader (a clerk's or a
batch's steady state) and for the first card of the process alone (first-use
costs on the issuance path; the profile is already loaded, as in a service).

Usage: ``.venv/bin/python bench/issuance.py [--json] [--pcsc-cards 5] [--share-cards 5]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import report

from sscard.applets.cos import EmulatedCard, Latency
from sscard.applets.factory import new_card_file, new_memory_card
from sscard.applets.pcsc_rig import reader_lock, running_pcscd, served_card
from sscard.card import SocialSecurityCard
from sscard.db import open_store
from sscard.issuance.batch import BatchRun, RowResult
from sscard.issuance.readers import VirtualSlot
from sscard.issuance.service import issue_card
from sscard.keys.dev import development_module
from sscard.layout import load_profile
from sscard.layout.cardno import complete
from sscard.layout.holder_io import HolderRow
from sscard.transport import InProcessTransport
from sscard.transport.pcsc import PcscTransport

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = json.loads((ROOT / "examples" / "holder.json").read_text("utf-8"))
WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
PIN = "802461"


def holder(i: int) -> dict[str, Any]:
    """A valid holder number ``i`` (GB 11643 check digit computed here)."""
    month = i % 12 + 1
    body = f"31010119{80 + i % 20}{month:02d}15{(i * 2 + 1) % 1000:03d}"
    ssn = body + "10X98765432"[sum(int(a) * w for a, w in zip(body, WEIGHTS, strict=True)) % 11]
    return {
        **SAMPLE,
        "ssn": ssn,
        "birth_date": f"19{80 + i % 20}-{month:02d}-15",
        "gender": "1",
        "birthplace": "310101",
        "card_number": complete(f"Q{i:07d}"),
    }


def apdus_per_card(tmp: Path) -> int:
    count = 0
    transport = InProcessTransport(new_memory_card())
    inner = transport.transmit

    def counting(apdu: bytes) -> bytes:
        nonlocal count
        count += 1
        return inner(apdu)

    transport.transmit = counting  # type: ignore[method-assign]
    transport.connect()
    card = SocialSecurityCard.open(transport, security=MODULE)
    issue_card(
        card,
        holder(0),
        pin=PIN,
        conn=open_store(tmp / "count.db"),
        operator=None,
        service_point="bench",
    )
    return count


def batch_rate(tmp: Path, readers: int, cards: int, latency: Latency | None, tag: str) -> float:
    """Cards per second of a batch of ``cards`` over ``readers`` in-process readers."""
    rows = [HolderRow(i + 1, holder(1000 * readers + i)) for i in range(cards)]
    results: list[RowResult] = []
    store = tmp / f"batch-{tag}-{readers}.db"
    run = BatchRun(
        rows=rows,
        readers=[VirtualSlot(f"v{i}", "national-3", latency) for i in range(readers)],
        open_conn=lambda: open_store(store),
        security=MODULE,
        operator=None,
        service_point="bench",
        on_result=results.append,
        on_pin=lambda row, number, pin: None,
    )
    start = time.perf_counter()
    run.run()
    elapsed = time.perf_counter() - start
    assert run.done == cards, [r for r in results if r.status != "issued"]
    return cards / elapsed


def pcsc_rate(tmp: Path, n: int) -> float:
    """Cards per second through pcscd (issuance time only)."""
    total = 0.0
    with running_pcscd(), reader_lock() as port:
        for i in range(n):
            path = tmp / f"pcsc-{i}.img"
            new_card_file(path)
            with served_card(path, port) as reader:
                start = time.perf_counter()
                transport = PcscTransport(reader)
                transport.connect()
                card = SocialSecurityCard.open(transport, security=MODULE)
                issue_card(
                    card,
                    holder(5000 + i),
                    pin=PIN,
                    conn=open_store(tmp / "pcsc.db"),
                    operator=None,
                    service_point="bench",
                )
                transport.disconnect()
                total += time.perf_counter() - start
    return n / total


class TimedCard:
    """An emulated card behind a stopwatch: time inside it is the card's, not the host's."""

    def __init__(self, card: EmulatedCard) -> None:
        self.card = card
        self.seconds = 0.0
        self.apdus = 0
        self.writes = 0
        commit = card.storage.commit

        def counted(state: Any) -> None:
            self.writes += 1
            commit(state)

        card.storage.commit = counted  # type: ignore[method-assign]

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def power_on(self) -> bytes:
        start = time.perf_counter()
        try:
            return self.card.power_on()
        finally:
            self.seconds += time.perf_counter() - start

    def power_off(self) -> None:
        start = time.perf_counter()
        try:
            self.card.power_off()
        finally:
            self.seconds += time.perf_counter() - start

    def process(self, apdu: bytes) -> bytes:
        start = time.perf_counter()
        try:
            return self.card.process(apdu)
        finally:
            self.seconds += time.perf_counter() - start
            self.apdus += 1


def host_share(tmp: Path, cards: int) -> dict[str, float]:
    """Host time / total time of ``cards`` issuances under the realistic model, one
    reader, one after another (see the module docstring for what host time is)."""
    latency = Latency.named("realistic")
    conn = open_store(tmp / "share.db")
    totals: list[float] = []
    inside: list[float] = []
    beyond: list[float] = []
    for i in range(cards):
        timed = TimedCard(new_memory_card("national-3", latency=latency))
        start = time.perf_counter()
        transport = InProcessTransport(timed)
        transport.connect()
        card = SocialSecurityCard.open(transport, security=MODULE)
        issue_card(
            card,
            holder(9000 + i),
            pin=PIN,
            conn=conn,
            operator=None,
            service_point="bench",
        )
        transport.disconnect()
        totals.append(time.perf_counter() - start)
        inside.append(timed.seconds)
        model = timed.apdus * latency.apdu + timed.writes * latency.write
        beyond.append(timed.seconds - model)
    conn.close()
    host = [t - c for t, c in zip(totals, inside, strict=True)]
    return {
        "realistic_host_share_pct": round(100 * sum(host) / sum(totals), 2),
        "realistic_host_share_first_card_pct": round(100 * host[0] / totals[0], 2),
        "realistic_host_ms_per_card": round(1000 * sum(host) / cards, 1),
        "realistic_card_ms_per_card": round(1000 * sum(inside) / cards, 1),
        "realistic_card_beyond_model_ms_per_card": round(1000 * sum(beyond) / cards, 1),
        "target_host_share_pct": 2.0,
    }


MODULE = development_module(load_profile("national-3").key_scheme.slots)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pcsc-cards", type=int, default=5)
    parser.add_argument("--share-cards", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("sscard").setLevel(logging.ERROR)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        share = host_share(tmp, args.share_cards)  # first: its first card is the process's first
        out["apdus_per_card"] = apdus_per_card(tmp)
        out["cards_per_s_inprocess"] = round(batch_rate(tmp, 1, 30, None, "plain"), 1)
        out["cards_per_s_pcscd"] = round(pcsc_rate(tmp, args.pcsc_cards), 2)
        realistic = Latency.named("realistic")
        scaling: dict[str, float] = {}
        for readers in (1, 2, 4, 8):
            scaling[str(readers)] = round(
                batch_rate(tmp, readers, max(4, 2 * readers), realistic, "real"), 3
            )
        out["realistic_cards_per_s_by_readers"] = scaling
        out["speedup_8_over_1"] = round(scaling["8"] / scaling["1"], 2)
        out["target_speedup"] = 6.0
        out.update(share)
    report(out, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
