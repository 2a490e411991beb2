"""A centre's stations share one store: the audit trail, the outbox, the operators (issue 20).

Stations are real processes writing to one store at the same moment: four
appending audit records and signing checkpoints (one chain, no gap, no fork);
stations enqueueing and pushing to the reference platform over mutual TLS
(each event stored once, never acknowledged twice); ``sscard sync run`` on two
stations. Both engines (``store_target``).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sscard import audit, db
from sscard.exchange import outbox
from sscard.exchange.platform import Platform
from tests.exchange_support import Pki
from tests.storekit import init_store, opened

__all__ = ["pki", "platform"]  # fixtures
from tests.exchange_support import pki, platform

DEV = audit.CheckpointSigner.development_signer()
STATIONS = 4


def _start(code: str, *args: str) -> subprocess.Popen[str]:
    """A station: a Python process running ``code`` with ``args`` in ``sys.argv[1:]``."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _results(procs: list[subprocess.Popen[str]], timeout: float = 240) -> list[dict[str, Any]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _go_after(go: Path, procs: list[subprocess.Popen[str]], ready: list[Path]) -> None:
    """Release every station at once, when each has opened its store."""
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready):
        assert all(p.poll() is None for p in procs), "a station died before the start"
        assert time.monotonic() < deadline, "the stations did not get ready"
        time.sleep(0.02)
    go.touch()


_AUDIT_WRITER = """
import json, sys, time
from pathlib import Path
from sscard import audit, db, schemas
schemas.load_all()
target, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
go, ready = Path(sys.argv[4]), Path(sys.argv[5])
audit.use_signer(audit.CheckpointSigner.development_signer())
conn = db.open_store(target)
ready.touch()
while not go.exists():
    time.sleep(0.005)
start = time.monotonic()
for i in range(count):
    # a read-only action gets no checkpoint of its own, a state change one in its transaction
    action = "card.read" if i % 3 else "card.issue"
    audit.record(action, operator=None, outcome="ok", detail={"station": name, "i": i}, conn=conn)
    if i % 10 == 9:
        audit.checkpoint(conn, audit.CheckpointSigner.development_signer())
print(json.dumps({"station": name, "seconds": time.monotonic() - start}))
"""


def test_four_stations_append_to_one_audit_chain(store_target: str, tmp_path: Path) -> None:
    init_store(store_target)
    per_station = 60
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(STATIONS)]
    procs = [
        _start(_AUDIT_WRITER, store_target, f"st{i}", str(per_station), str(go), str(ready[i]))
        for i in range(STATIONS)
    ]
    _go_after(go, procs, ready)
    started = time.monotonic()
    results = _results(procs)
    elapsed = time.monotonic() - started
    total = STATIONS * per_station
    with opened(store_target) as conn:
        records = audit.all_records(conn)
        assert [r.seq for r in records] == list(range(1, total + 1))  # no gap, one chain
        for before, after in itertools.pairwise(records):
            assert after.prev_hash == before.hash  # no fork
        stations = [json.loads(r.detail or "")["station"] for r in records]
        assert {s: stations.count(s) for s in set(stations)} == {
            f"st{i}": per_station for i in range(STATIONS)
        }
        assert len(set(stations[:per_station])) > 1, "the stations did not interleave"
        cps = audit.checkpoints(conn)
        # 20 automatic (every card.issue) + 6 explicit per station
        assert len(cps) == STATIONS * (per_station // 3 + per_station // 10)
        report = audit.verify(conn, DEV)
        assert report.ok, report.info()
        assert report.checkpoints_verified == len(cps)
    print(
        f"\n{conn.engine}: {total} records by {STATIONS} stations in {elapsed:.2f} s "
        f"({total / elapsed:.0f}/s; slowest station {max(r['seconds'] for r in results):.2f} s)"
    )


_PUSHER = """
import json, sys, time
from pathlib import Path
from sscard import audit, db, schemas
from sscard.exchange import outbox, sync, tls
from sscard.exchange.client import PlatformClient
from sscard.layout.cardno import complete
schemas.load_all()
target, url, cert, key, ca, name = sys.argv[1:7]
rounds, per_round, go, ready = int(sys.argv[7]), int(sys.argv[8]), *map(Path, sys.argv[9:11])
conn = db.open_store(target)
client = PlatformClient(url, tls.client_context(Path(cert), Path(key), Path(ca)), timeout=30)
ready.touch()
while not go.exists():
    time.sleep(0.005)
ids, stored, duplicate, waited = [], 0, 0, 0.0
for r in range(rounds):
    with db.transaction(conn):
        for i in range(per_round):
            n = int(name[2:]) * 100000 + r * 1000 + i
            payload = {"card_serial": "0011223344556677", "card_number": complete(f"A{n:07d}"),
                       "ssn": "11010519491231002X", "profile": "national-3"}
            ids.append(outbox.enqueue(conn, "card.issued", payload, service_point="sp-labour"))
            audit.record("card.issue", operator=None, outcome="ok", conn=conn,
                         card_number=payload["card_number"])
    t = time.monotonic()
    report = sync.push_pending(conn, client, batch_size=7)
    waited += time.monotonic() - t
    stored += report.stored
    duplicate += report.duplicate
client.close()
print(json.dumps({"ids": ids, "stored": stored, "duplicate": duplicate, "push_seconds": waited}))
"""


def _station_args(platform: Platform, pki: Pki) -> list[str]:
    files = pki.files
    return [
        platform.url,
        str(files["sp-labour"].cert),
        str(files["sp-labour"].key),
        str(files["ca"].cert),
    ]


def test_each_event_reaches_the_platform_once_whichever_station_pushes(
    store_target: str, platform: Platform, pki: Pki, tmp_path: Path
) -> None:
    """Three stations of one centre (one service point) enqueue and push at once."""
    init_store(store_target)
    stations, rounds, per_round = 3, 6, 11
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(stations)]
    procs = [
        _start(
            _PUSHER,
            store_target,
            *_station_args(platform, pki),
            f"st{i + 1}",
            str(rounds),
            str(per_round),
            str(go),
            str(ready[i]),
        )
        for i in range(stations)
    ]
    _go_after(go, procs, ready)
    started = time.monotonic()
    results = _results(procs)
    elapsed = time.monotonic() - started
    enqueued = [i for r in results for i in r["ids"]]
    total = stations * rounds * per_round
    assert len(set(enqueued)) == total
    assert sorted(platform.store.event_ids()) == sorted(enqueued)  # every one, once
    assert sum(r["stored"] for r in results) == total
    assert sum(r["duplicate"] for r in results) == 0  # no event sent twice
    pushes = [e for e in platform.store.audit_log("labour", limit=1000) if e["action"] == "push"]
    assert sum(e["detail"]["duplicate"] for e in pushes) == 0
    assert sum(e["detail"]["stored"] for e in pushes) == total
    with opened(store_target) as conn:
        s = outbox.stats(conn)
        assert (s.pending, s.rejected, s.delivered) == (0, 0, total)
        assert audit.verify(conn).ok
        seq, _head = audit.head(conn)
        assert seq == total
    print(
        f"\n{conn.engine}: {total} events by {stations} stations in {elapsed:.2f} s, "
        f"{len(pushes)} push requests, 0 duplicates"
    )


def test_a_push_waits_for_the_station_already_pushing(store_target: str) -> None:
    with opened(store_target) as first, opened(store_target) as second:
        held = db.claim(first, "outbox.push")
        assert held is not None
        from sscard.exchange import sync

        class NoPlatform:
            """Never reached: the push stops at the claim."""

        t = time.monotonic()
        with pytest.raises(db.StoreBusy, match="pushing the outbox"):
            sync.push_pending(second, NoPlatform(), wait=0.3)  # type: ignore[arg-type]
        assert time.monotonic() - t >= 0.3
        pulling = db.claim(first, "inbox.pull")
        assert pulling is not None
        with pytest.raises(db.StoreBusy, match="pulling"):
            sync.pull_updates(second, NoPlatform(), wait=0.1)  # type: ignore[arg-type]
        pulling.release()
        held.release()
        assert db.claim(second, "outbox.push") is not None
