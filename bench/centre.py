"""Benchmark: an issuing centre, many stations on one PostgreSQL store (issue 20).

* cards per second of 1, 2, 4 and 8 stations issuing together into one
  PostgreSQL store, and the speed-up of N stations over one (target: 8
  stations >= 7x one);
* the store's share of an issuance's time at each station count;
* the same single-station figures on an SQLite store, for comparison.

A station is a process of its own (multiprocessing, spawn) running a batch
(:class:`sscard.issuance.batch.BatchRun`) over ``--readers`` in-process
readers, each holding fresh in-memory emulated cards under the realistic
latency model (5 ms per APDU, 20 ms per EEPROM write), as ``issue batch
--virtual`` does; each station has holders of its own. The server is a
durable one (``tests/pgrig.py``, ``PgServer.start(durable=True)``: fsync on,
synchronous commits, on the disk), with a fresh database per run initialized
by :func:`sscard.db.migrate`. Every station first issues one card without
latency (the process's first-use costs, as in a station that is already
running), then waits at a barrier; all start together and each issues
``--cards`` cards. Cards per second = all cards / (last station's end - first
station's start).

The store's share: every call a station makes on its store connections
(``execute``, ``executemany``, ``begin``, ``commit``, ``rollback``) runs
behind a stopwatch; the share is the time inside them over the lifetime of
the batch's connections (the readers' working time). ``begin`` of a write
transaction is where a station waits for the store's write lock (SQLite
``BEGIN IMMEDIATE``, PostgreSQL's advisory lock), so it is printed apart
(``lock wait``), as is ``commit`` (the durable commit: WAL flush).

The stations start together and every card takes the same time under the
model, so the readers stay in step and their write transactions arrive at the
write lock together: the lock wait printed is the worst case (stations started
a fraction of a card's time apart wait some 15 times less).

After each run the store must be consistent: as many issued cards as were
issued, one ``card.issued`` event per card in the outbox, and an audit trail
that verifies. The machine's core count is printed: stations only scale
beyond the cores because a card spends most of its time in its own latency;
``cpu_busy_pct`` (the whole machine, from ``/proc/stat``) and the stations'
own CPU seconds per card tell when the host, not the store, is the limit.

Usage: ``.venv/bin/python bench/centre.py [--json] [--cards 6] [--readers 2]
[--rounds 1] [--stations 1,2,4,8]``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing as mp
import os
import queue
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from report import report

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PIN = "802461"
TARGET_SPEEDUP = 7.0
KINDS = ("statement", "begin", "commit", "rollback")


# -- holders ------------------------------------------------------------------

WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def holder(sample: dict[str, Any], station: int, k: int) -> dict[str, Any]:
    """Holder ``k`` of station ``station``: a valid SSN and card number of its own
    (unique for 500 stations x 100 cards)."""
    from sscard.layout.cardno import complete

    i = station * 100 + k
    year, month, day = 1950 + (i // 500) % 50, i % 12 + 1, i % 28 + 1
    body = f"310101{year}{month:02d}{day:02d}{(2 * (i % 500) + 1) % 1000:03d}"
    check = "10X98765432"[sum(int(a) * w for a, w in zip(body, WEIGHTS, strict=True)) % 11]
    return {
        **sample,
        "ssn": body + check,
        "birth_date": f"{year}-{month:02d}-{day:02d}",
        "gender": "1",
        "birthplace": "310101",
        "card_number": complete(f"C{i:07d}"),
    }


# -- the stopwatch on store connections ----------------------------------------

_lock = threading.Lock()
_conns: list[Any] = []
"""Every timed connection of this process (a station)."""


class Timed:
    """Mixed into a store connection's class: times each call on it (outermost only,
    so ``begin`` calling ``execute`` counts once, as ``begin``)."""

    bench_opened: float
    bench_closed: float | None
    bench_depth: int
    bench_seconds: dict[str, float]
    bench_calls: dict[str, int]
    bench_write_since: float | None
    bench_write_held: float
    bench_writes: int

    def _timed(self, kind: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        if self.bench_depth:
            return call(*args, **kwargs)
        self.bench_depth = 1
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            self.bench_depth = 0
            self.bench_seconds[kind] += time.perf_counter() - start
            self.bench_calls[kind] += 1

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self._timed("statement", super().execute, sql, params)  # type: ignore[misc]

    def executemany(self, sql: str, rows: Any) -> Any:
        return self._timed("statement", super().executemany, sql, rows)  # type: ignore[misc]

    def begin(self, *, write: bool) -> None:
        self._timed("begin", super().begin, write=write)  # type: ignore[misc]
        if write:
            self.bench_write_since = time.perf_counter()

    def _end(self) -> None:
        """A write transaction ended: how long this station held the store's write lock."""
        if self.bench_write_since is not None:
            self.bench_write_held += time.perf_counter() - self.bench_write_since
            self.bench_writes += 1
            self.bench_write_since = None

    def commit(self) -> None:
        try:
            self._timed("commit", super().commit)  # type: ignore[misc]
        finally:
            self._end()

    def rollback(self) -> None:
        try:
            self._timed("rollback", super().rollback)  # type: ignore[misc]
        finally:
            self._end()

    def close(self) -> None:
        if self.bench_closed is None:
            self.bench_closed = time.perf_counter()
        super().close()  # type: ignore[misc]


_classes: dict[type, type] = {}


def timed(conn: Any) -> Any:
    """``conn`` with its calls timed from now on (its class swapped for a timed subclass)."""
    cls = type(conn)
    if cls not in _classes:
        _classes[cls] = type(f"Timed{cls.__name__}", (Timed, cls), {})
    conn.__class__ = _classes[cls]
    conn.bench_opened = time.perf_counter()
    conn.bench_closed = None
    conn.bench_depth = 0
    conn.bench_seconds = dict.fromkeys(KINDS, 0.0)
    conn.bench_calls = dict.fromkeys(KINDS, 0)
    conn.bench_write_since = None
    conn.bench_write_held = 0.0
    conn.bench_writes = 0
    with _lock:
        _conns.append(conn)
    return conn


# -- a station (its own process) ----------------------------------------------


def station(
    index: int,
    target: str,
    cards: int,
    readers: int,
    barrier: Any,
    results: Any,
) -> None:
    """Warm up, wait for the others, run a batch of ``cards`` holders; put its figures."""
    import json

    logging.getLogger("sscard").setLevel(logging.ERROR)
    from sscard.applets.cos import Latency
    from sscard.applets.factory import new_memory_card
    from sscard.card import SocialSecurityCard
    from sscard.db import open_store
    from sscard.issuance.batch import BatchRun, RowResult
    from sscard.issuance.readers import VirtualSlot
    from sscard.issuance.service import issue_card
    from sscard.keys.dev import development_module
    from sscard.layout import load_profile
    from sscard.layout.holder_io import HolderRow
    from sscard.transport import InProcessTransport

    try:
        sample = json.loads((ROOT / "examples" / "holder.json").read_text("utf-8"))
        module = development_module(load_profile("national-3").key_scheme.slots)
        # Warm-up: one card without latency (imports, caches, the store's first queries).
        with open_store(target) as conn:
            transport = InProcessTransport(new_memory_card("national-3"))
            transport.connect()
            card = SocialSecurityCard.open(transport, security=module)
            issue_card(
                card,
                holder(sample, index, 99),
                pin=PIN,
                conn=conn,
                operator=None,
                service_point="bench",
            )
            transport.disconnect()
        realistic = Latency.named("realistic")
        done: list[RowResult] = []
        run = BatchRun(
            rows=[HolderRow(k + 1, holder(sample, index, k)) for k in range(cards)],
            readers=[VirtualSlot(f"s{index}r{r}", "national-3", realistic) for r in range(readers)],
            open_conn=lambda: timed(open_store(target)),
            security=module,
            operator=None,
            service_point="bench",
            on_result=done.append,
            on_pin=lambda row, number, pin: None,
        )
        barrier.wait(timeout=300)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.monotonic()
        run.run()
        end = time.monotonic()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    except BaseException as exc:  # the parent reports it; never hang the barrier
        barrier.abort()
        results.put({"station": index, "error": f"{type(exc).__name__}: {exc}"})
        return
    statuses: dict[str, int] = {}
    for r in done:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    closed = [c.bench_closed or end for c in _conns]
    results.put(
        {
            "station": index,
            "start": start,
            "end": end,
            "issued": statuses.get("issued", 0),
            "statuses": statuses,
            "errors": sorted({r.error or "" for r in done if r.status != "issued"}),
            "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
            "conn_s": sum(c - o.bench_opened for c, o in zip(closed, _conns, strict=True)),
            "seconds": {k: sum(c.bench_seconds[k] for c in _conns) for k in KINDS},
            "calls": {k: sum(c.bench_calls[k] for c in _conns) for k in KINDS},
            "write_held_s": sum(c.bench_write_held for c in _conns),
            "writes": sum(c.bench_writes for c in _conns),
        }
    )


# -- the centre (this process) -----------------------------------------------


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def server_cpu(pid: int | None) -> float:
    """CPU seconds of the PostgreSQL server's ended children (its backends, reaped by the
    postmaster: a station's backend ends when the station closes its connections)."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime + cstime


def check_store(target: str, expected: int) -> dict[str, Any]:
    """The store after a run: issued cards, outbox events, audit verified."""
    from sscard.audit.integrity import verify
    from sscard.db import open_store

    with open_store(target) as conn:
        issued = conn.execute(
            "SELECT count(*) FROM issuance_cards WHERE status = 'issued'"
        ).fetchone()[0]
        events = conn.execute(
            "SELECT count(*) FROM outbox_events WHERE category = 'card.issued'"
        ).fetchone()[0]
        holders = conn.execute(
            "SELECT count(DISTINCT ssn) FROM issuance_cards WHERE status = 'issued'"
        ).fetchone()[0]
        audit = verify(conn)
    problems = []
    if issued != expected or holders != expected:
        problems.append(f"issued {issued} cards to {holders} holders, expected {expected}")
    if events != expected:
        problems.append(f"{events} card.issued events, expected {expected}")
    if not audit.ok:
        problems.append(f"audit trail broken: {audit.problem}")
    return {
        "issued": issued,
        "events": events,
        "audit_records": audit.records,
        "problems": problems,
    }


def run_centre(
    target: str, stations: int, cards: int, readers: int, server_pid: int | None
) -> dict[str, Any]:
    """``stations`` station processes issuing ``cards`` each into ``target``, together;
    ``server_pid``: the PostgreSQL server's, to measure its CPU time."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(stations + 1)  # and this process
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=station,
            args=(i, target, cards, readers, barrier, results),
            name=f"station-{i}",
        )
        for i in range(stations)
    ]
    for p in procs:
        p.start()
    got: list[dict[str, Any]] = []
    # Every station warmed up: they start now. A station that failed before the start
    # breaks the barrier; its error comes through the queue.
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(timeout=600)
    busy0, total0 = cpu_ticks()
    server0 = server_cpu(server_pid)
    while len(got) < stations:
        try:
            got.append(results.get(timeout=1.0))
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"station process {dead[0].name} died") from None
    busy1, total1 = cpu_ticks()
    for p in procs:
        p.join(30)
    time.sleep(0.3)  # the stations' backends end (and are reaped) after they disconnect
    server1 = server_cpu(server_pid)
    failed = [g["error"] for g in got if "error" in g]
    if failed:
        raise RuntimeError(f"a station failed: {failed[0]}")
    issued = sum(g["issued"] for g in got)
    wall = max(g["end"] for g in got) - min(g["start"] for g in got)
    seconds = {k: sum(g["seconds"][k] for g in got) for k in KINDS}
    calls = {k: sum(g["calls"][k] for g in got) for k in KINDS}
    store_s = sum(seconds.values())
    conn_s = sum(g["conn_s"] for g in got)
    out = {
        "stations": stations,
        "cards": issued,
        "expected": stations * cards,
        "wall_s": wall,
        "cards_per_s": issued / wall,
        "store_share_pct": 100 * store_s / conn_s,
        "store_ms_per_card": 1000 * store_s / issued,
        "lock_wait_ms_per_card": 1000 * seconds["begin"] / issued,
        "commit_ms_per_card": 1000 * seconds["commit"] / issued,
        "statement_ms_per_card": 1000 * (seconds["statement"] + seconds["rollback"]) / issued,
        "statements_per_card": calls["statement"] / issued,
        "transactions_per_card": calls["begin"] / issued,
        "write_transactions_per_card": sum(g["writes"] for g in got) / issued,
        "write_lock_held_ms": 1000
        * sum(g["write_held_s"] for g in got)
        / max(1, sum(g["writes"] for g in got)),
        "reader_ms_per_card": 1000 * conn_s / issued,
        "station_cpu_ms_per_card": 1000 * sum(g["cpu_s"] for g in got) / issued,
        "server_cpu_ms_per_card": 1000 * (server1 - server0) / issued,
        "machine_cpu_busy_pct": 100 * (busy1 - busy0) / max(1, total1 - total0),
        "not_issued": sorted({e for g in got for e in g["errors"]}),
    }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cards", type=int, default=6, help="cards per station")
    parser.add_argument("--readers", type=int, default=2, help="readers per station")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each station count")
    parser.add_argument("--stations", default="1,2,4,8")
    parser.add_argument("--sqlite-stations", default="1", help="station counts on SQLite")
    args = parser.parse_args()
    counts = [int(n) for n in args.stations.split(",") if n]
    sqlite_counts = [int(n) for n in args.sqlite_stations.split(",") if n]

    import sscard.schemas
    from sscard import db
    from tests.pgrig import PgServer

    sscard.schemas.load_all()
    out: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "readers_per_station": args.readers,
        "cards_per_station": args.cards,
    }
    runs: dict[str, list[dict[str, Any]]] = {}
    problems: list[str] = []

    def record(engine: str, n: int, target: str, server_pid: int | None = None) -> None:
        res = run_centre(target, n, args.cards, args.readers, server_pid)
        check = check_store(target, n * (args.cards + 1))  # + the warm-up card
        problems.extend(f"{engine} {n} stations: {p}" for p in check["problems"])
        if res["cards"] != res["expected"]:
            problems.append(
                f"{engine} {n} stations: {res['cards']} of {res['expected']} issued "
                f"({'; '.join(res['not_issued'])})"
            )
        runs.setdefault(f"{engine}:{n}", []).append(res)

    with PgServer.start(durable=True) as server, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(server.env())  # the stations log in through the pgpass file
        for rnd in range(args.rounds):
            for n in counts:
                url = server.create_database()
                with db.connect(url) as conn:
                    db.migrate(conn)
                record("postgresql", n, url, server.pid)
                server.drop_database(url)
            for n in sqlite_counts:
                record("sqlite", n, str(Path(tmp) / f"centre-{rnd}-{n}.db"))

    def median(key: str, engine: str, n: int) -> float:
        return float(statistics.median(r[key] for r in runs[f"{engine}:{n}"]))

    def spread(key: str, engine: str, n: int, digits: int) -> str:
        values = [r[key] for r in runs[f"{engine}:{n}"]]
        low, high = round(min(values), digits), round(max(values), digits)
        mid = round(statistics.median(values), digits)
        return f"{mid}" if len(values) == 1 else f"{mid} ({low}-{high})"

    for engine, ns in (("postgresql", counts), ("sqlite", sqlite_counts)):
        for n in ns:
            key = f"{engine}_{n}_station{'s' if n > 1 else ''}"
            out[f"{key}_cards_per_s"] = spread("cards_per_s", engine, n, 2)
            out[f"{key}_store_share_pct"] = spread("store_share_pct", engine, n, 2)
            out[f"{key}_store_ms_per_card"] = spread("store_ms_per_card", engine, n, 1)
            out[f"{key}_lock_wait_ms_per_card"] = spread("lock_wait_ms_per_card", engine, n, 1)
            out[f"{key}_commit_ms_per_card"] = spread("commit_ms_per_card", engine, n, 1)
            out[f"{key}_statement_ms_per_card"] = spread("statement_ms_per_card", engine, n, 1)
            out[f"{key}_write_lock_held_ms"] = spread("write_lock_held_ms", engine, n, 2)
            out[f"{key}_reader_ms_per_card"] = spread("reader_ms_per_card", engine, n, 0)
            out[f"{key}_station_cpu_ms_per_card"] = spread("station_cpu_ms_per_card", engine, n, 0)
            if engine == "postgresql":
                out[f"{key}_server_cpu_ms_per_card"] = spread(
                    "server_cpu_ms_per_card", engine, n, 1
                )
            out[f"{key}_machine_cpu_busy_pct"] = spread("machine_cpu_busy_pct", engine, n, 0)
    first = runs[f"postgresql:{counts[0]}"]
    out["statements_per_card"] = round(first[0]["statements_per_card"], 1)
    out["transactions_per_card"] = round(first[0]["transactions_per_card"], 1)
    out["write_transactions_per_card"] = round(first[0]["write_transactions_per_card"], 1)
    if counts and counts[0] == 1:
        ones = runs["postgresql:1"]
        for n in counts[1:]:  # each round's N stations over the same round's one
            ratios = [
                r["cards_per_s"] / one["cards_per_s"]
                for r, one in zip(runs[f"postgresql:{n}"], ones, strict=True)
            ]
            mid, low, high = (round(f(ratios), 2) for f in (statistics.median, min, max))
            out[f"speedup_{n}_over_1"] = f"{mid}" if len(ratios) == 1 else f"{mid} ({low}-{high})"
        out["target_speedup_8_over_1"] = TARGET_SPEEDUP
    if "postgresql:1" in runs and "sqlite:1" in runs:
        out["postgresql_over_sqlite_1_station"] = round(
            median("cards_per_s", "postgresql", 1) / median("cards_per_s", "sqlite", 1), 3
        )
    out["consistent"] = not problems
    if problems:
        out["problems"] = problems
    report(out, as_json=args.json)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
