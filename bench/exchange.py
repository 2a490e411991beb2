"""Benchmark: card events pushed end to end to the reference platform over mutual TLS.

The platform runs as its own process (``sscard exchange-platform serve``, real
HTTPS on loopback, SQLite with ``synchronous=FULL``); this process is the
service point: outbox in its own SQLite file, ``sync.push_pending``. Measures

* events per second pushed (enqueued beforehand), for several batch sizes;
* the time to drain a backlog of 100,000 events (batch 1000), and the time it
  took to enqueue them with ``outbox.enqueue_many`` (one transaction per 1000
  events, each schema-checked);
* for comparison, ``outbox.enqueue`` one event at a time (1000 per transaction),
  on the ``--events`` events of the first push run.

Targets (issue 19): push >= 5,000 events/s (the backlog drain, batch 1000, and
every batch size from 500 up), enqueue 100,000 events <= 10 s.

Usage: ``.venv/bin/python bench/exchange.py [--events 20000] [--backlog 100000] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sscard import db
from sscard.exchange import outbox, sync, tls
from sscard.exchange.ca import init_ca
from sscard.exchange.client import PlatformClient
from sscard.layout.cardno import complete

CONFIG = {
    "departments": {
        "bench": {"clients": ["sp-bench"], "push": ["card.issued"], "pull": ["card.blocked"]}
    }
}


def payload(i: int) -> dict[str, Any]:
    return {
        "card_serial": f"{i:016X}",
        "card_number": complete(f"B{i % 10**7:07d}"),
        "ssn": "11010519491231002X",
        "profile": "national-3",
        "key_versions": {"MK_DF01": 1, "DPK": 1},
    }


TARGET_PUSH = 5000  # events/s
TARGET_ENQUEUE = 10.0  # seconds per 100,000 events


def enqueue(store: Path, n: int, offset: int = 0, *, bulk: bool = True) -> float:
    """Queue ``n`` events, 1000 per transaction: ``enqueue_many`` (bulk) or one by one."""
    conn = db.open_db(store)
    sync.ensure_schema(conn)
    start = time.perf_counter()
    for chunk in range(0, n, 1000):
        events = [("card.issued", payload(offset + i)) for i in range(chunk, min(n, chunk + 1000))]
        with db.transaction(conn):
            if bulk:
                outbox.enqueue_many(conn, events, service_point="sp-bench")
            else:
                for category, body in events:
                    outbox.enqueue(conn, category, body, service_point="sp-bench")
    conn.close()
    return time.perf_counter() - start


def push(store: Path, client: PlatformClient, batch: int) -> tuple[int, float]:
    conn = db.open_db(store)
    start = time.perf_counter()
    report = sync.push_pending(conn, client, batch_size=batch)
    elapsed = time.perf_counter() - start
    conn.close()
    return report.stored, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per batch-size run")
    parser.add_argument("--backlog", type=int, default=100_000, help="backlog to drain")
    parser.add_argument("--batches", default="100,500,1000", help="batch sizes to compare")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sscard-bench-"))
    pki = init_ca(work / "pki", ["sp-bench"])
    (work / "platform.json").write_text(json.dumps(CONFIG))
    server = subprocess.Popen(
        [sys.executable, "-m", "sscard", "exchange-platform", "serve", "--config",
         str(work / "platform.json"), "--tls-dir", str(work / "pki"), "--store",
         str(work / "platform.db"), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    url = server.stdout.readline().split()[-1]
    ctx = tls.client_context(pki["sp-bench"].cert, pki["sp-bench"].key, pki["ca"].cert)
    results: dict[str, Any] = {"throughput": []}
    offset = 0
    try:
        with PlatformClient(url, ctx) as client:
            for n, batch in enumerate(int(b) for b in args.batches.split(",")):
                store = work / f"sp-{batch}.db"
                one_s = enqueue(store, args.events, offset, bulk=n != 0)
                if n == 0:
                    results["enqueue_one_by_one"] = {
                        "events": args.events,
                        "seconds": round(one_s, 2),
                        "seconds_per_100000": round(one_s * 100_000 / args.events, 2),
                    }
                offset += args.events
                stored, elapsed = push(store, client, batch)
                results["throughput"].append(
                    {"batch": batch, "events": stored, "seconds": round(elapsed, 3),
                     "events_per_second": round(stored / elapsed)}
                )  # fmt: skip
            store = work / "sp-backlog.db"
            enqueue_s = enqueue(store, args.backlog, offset)
            stored, drain_s = push(store, client, 1000)
            results["backlog"] = {
                "events": stored,
                "enqueue_seconds": round(enqueue_s, 2),
                "drain_seconds": round(drain_s, 2),
                "events_per_second": round(stored / drain_s),
            }
    finally:
        server.terminate()
        server.wait(10)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("Push throughput, end to end over mutual TLS on loopback (platform in its own process):")
    for r in results["throughput"]:
        print(f"  batch {r['batch']:>5}: {r['events']} events in {r['seconds']:.2f} s"
              f" = {r['events_per_second']} events/s")  # fmt: skip
    b = results["backlog"]
    print(f"Backlog of {b['events']} events: enqueued in {b['enqueue_seconds']} s"
          f" (enqueue_many), drained in {b['drain_seconds']} s"
          f" ({b['events_per_second']} events/s, batch 1000)")  # fmt: skip
    one = results["enqueue_one_by_one"]
    print(f"Enqueue one by one (1000 per transaction): {one['events']} events in {one['seconds']} s"
          f" = {one['seconds_per_100000']} s per 100,000")  # fmt: skip
    per_100k = b["enqueue_seconds"] * 100_000 / b["events"]
    slowest = min([b["events_per_second"]] + [
        r["events_per_second"] for r in results["throughput"] if r["batch"] >= 500])  # fmt: skip
    print("Targets (issue 19):")
    print(f"  push >= {TARGET_PUSH} events/s (backlog drain; batches >= 500): {slowest} events/s"
          f"  {'met' if slowest >= TARGET_PUSH else 'NOT MET'}")  # fmt: skip
    print(f"  enqueue 100,000 events <= {TARGET_ENQUEUE:.0f} s: {per_100k:.2f} s"
          f"  {'met' if per_100k <= TARGET_ENQUEUE else 'NOT MET'}")  # fmt: skip


if __name__ == "__main__":
    main()
