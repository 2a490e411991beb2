"""Benchmark: sscard's transmit path against raw pyscard on the same vpcd reader, same run.

One scripted card sits in a vpcd reader of a real pcscd. Four ways of sending
the same case-4 APDU (16 data bytes, echoed back) are interleaved in short rounds
(5 APDUs per path by default) so that drift in the machine affects all alike:

* ``scard``     raw pyscard, the thin ``smartcard.scard.SCardTransmit`` binding, on the
                very connection sscard uses (baseline: same handle, same pcscd path);
* ``scard-own`` the same raw call on a connection of its own (pcscd treats handles
                differently by a few percent: this shows how much);
* ``pyscard``   pyscard's high-level ``CardConnection.transmit``;
* ``sscard``    ``ApduProtocol.send`` over ``PcscTransport``: CommandApdu, encode,
                T=0 step, transmit, ResponseApdu, status check;
* ``transport`` ``PcscTransport.transmit`` alone (bytes in, bytes out);
* ``in-process`` the same pipeline over ``InProcessTransport`` (no PC/SC), and the
                card's ``process`` called directly, in microseconds.

``sscard-new`` is ``sscard`` with the ``CommandApdu`` built (and checked) on each
call, for scale: the others send one prepared command, as ``scard`` sends one
prepared list (a command object keeps its encoding once sent).

Prints medians per APDU and the ratio sscard / scard (target <= 1.05), paired:
each round's median sscard time over the same round's median scard time, and
the median of those ratios. On a shared machine a round trip can jump between
modes (110 µs for a while, then 250 µs); pooled medians of two paths may then
fall in different modes, a per-round pair cannot. The ratio of the pooled
medians is printed too.
Usage: ``.venv/bin/python bench/transmit.py [--rounds 200] [--per-round 5] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import statistics
import sys
import time
from collections.abc import Callable

from smartcard import scard
from smartcard.System import readers as pyscard_readers

from sscard.apdu import CommandApdu
from sscard.applets import ScriptedCard
from sscard.applets.pcsc_rig import VPCD_READERS, reader_lock, running_pcscd
from sscard.applets.vpcd import VpcdBridge
from sscard.protocol import ApduProtocol
from sscard.transport import InProcessTransport
from sscard.transport.pcsc import PcscTransport, wait_for_card

PAYLOAD = bytes(range(16))
COMMAND = CommandApdu(0x80, 0xEE, 0x00, 0x00, PAYLOAD, le=16)
RAW = COMMAND.encode()
EXPECTED = PAYLOAD + b"\x90\x00"
TARGET = 1.05  # sscard / raw scard (issue 19)


def _time_per_call(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_pcsc(reader: str, rounds: int, per_round: int) -> tuple[dict[str, float], float]:
    """Median seconds per APDU for each PC/SC path, interleaved; the paired ratio."""
    _, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    hresult, hcard, _ = scard.SCardConnect(
        ctx, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T1
    )
    assert hresult == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hresult)
    high = next(r for r in pyscard_readers() if str(r) == reader).createConnection()
    high.connect()
    transport = PcscTransport(reader, shared=True)
    transport.connect()
    protocol = ApduProtocol(transport)
    raw_list = list(RAW)
    same = transport.handle

    def raw_scard() -> None:
        hr, resp = scard.SCardTransmit(same, scard.SCARD_PCI_T1, raw_list)
        assert hr == 0 and bytes(resp) == EXPECTED

    def raw_scard_own() -> None:
        hr, resp = scard.SCardTransmit(hcard, scard.SCARD_PCI_T1, raw_list)
        assert hr == 0 and bytes(resp) == EXPECTED

    def raw_pyscard() -> None:
        data, sw1, sw2 = high.transmit(raw_list)
        assert bytes(data) == PAYLOAD and (sw1, sw2) == (0x90, 0)

    def sscard_send() -> None:
        assert protocol.send(COMMAND).data == PAYLOAD

    def sscard_new() -> None:
        command = CommandApdu(0x80, 0xEE, 0x00, 0x00, PAYLOAD, le=16)
        assert protocol.send(command).data == PAYLOAD

    def transport_only() -> None:
        assert transport.transmit(RAW) == EXPECTED

    paths = {
        "scard": raw_scard,
        "scard-own": raw_scard_own,
        "pyscard": raw_pyscard,
        "sscard": sscard_send,
        "sscard-new": sscard_new,
        "transport": transport_only,
    }
    for fn in paths.values():  # warm up
        _time_per_call(fn, 20)
    samples: dict[str, list[float]] = {k: [] for k in paths}
    paired: list[float] = []  # per round: median sscard / median scard
    order = list(paths)
    for _ in range(rounds):
        random.shuffle(order)  # no path always runs right after another one
        this_round = {}
        for name in order:
            this_round[name] = _time_per_call(paths[name], per_round)
            samples[name] += this_round[name]
        paired.append(
            statistics.median(this_round["sscard"]) / statistics.median(this_round["scard"])
        )
    transport.disconnect()
    high.disconnect()
    scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
    scard.SCardReleaseContext(ctx)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return medians, statistics.median(paired)


def bench_in_process(n: int) -> dict[str, float]:
    """Median seconds per APDU in process: the card alone, and the full pipeline."""
    card = ScriptedCard()
    transport = InProcessTransport(card)
    transport.connect()
    protocol = ApduProtocol(transport)
    card.received = _Discard()  # do not grow a list during the benchmark

    def card_only() -> None:
        card.process(RAW)

    def pipeline() -> None:
        protocol.send(COMMAND)

    out: dict[str, list[float]] = {"card.process": [], "ApduProtocol.send": []}
    for _ in range(5):
        out["card.process"] += _time_per_call(card_only, n // 5)
        out["ApduProtocol.send"] += _time_per_call(pipeline, n // 5)
    return {k: statistics.median(v) for k, v in out.items()}


def _serve_card(port: int) -> None:
    VpcdBridge(ScriptedCard(), port=port).serve()


class _Discard(list[bytes]):
    def append(self, item: bytes) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--per-round", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with running_pcscd(), reader_lock() as port:
        reader = VPCD_READERS[port]
        # The card runs in its own process, as a real card would: its Python
        # work must not share this process's interpreter lock.
        wait_for_card(reader, 10, present=False)  # a card left by an earlier run is gone
        card = multiprocessing.get_context("spawn").Process(target=_serve_card, args=(port,))
        card.start()
        try:
            wait_for_card(reader, 10)
            pcsc, paired = bench_pcsc(reader, args.rounds, args.per_round)
        finally:
            card.terminate()
            card.join(5)
            wait_for_card(reader, 10, present=False)
    inproc = bench_in_process(20000)
    result = {
        "reader": reader,
        "apdus_per_path": args.rounds * args.per_round,
        "median_ms": {k: round(v * 1000, 4) for k, v in pcsc.items()},
        "ratio_sscard_over_scard": round(paired, 3),
        "ratio_pooled_medians": round(pcsc["sscard"] / pcsc["scard"], 3),
        "ratio_pyscard_over_scard": round(pcsc["pyscard"] / pcsc["scard"], 3),
        "target_ratio": TARGET,
        "in_process_median_us": {k: round(v * 1e6, 2) for k, v in inproc.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"PC/SC reader {reader}, {result['apdus_per_path']} APDUs per path, interleaved")
        for name, ms in result["median_ms"].items():
            print(f"  {name:<10} {ms:8.4f} ms/APDU")
        print(f"  ratio sscard / raw scard: {paired:.3f} paired by round  (target <= {TARGET})")
        print(f"  ratio of the pooled medians: {result['ratio_pooled_medians']}")
        print(f"  ratio pyscard high-level / raw scard: {result['ratio_pyscard_over_scard']}")
        print("in-process transport (no PC/SC)")
        for name, us in result["in_process_median_us"].items():
            print(f"  {name:<18} {us:8.2f} us/APDU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
