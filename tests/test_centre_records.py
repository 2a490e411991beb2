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
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sscard import audit, db
from sscard.exchange import inbox, outbox
from sscard.exchange.events import Event, new_event_id, utc_text
from sscard.exchange.platform import Platform
from sscard.layout.cardno import complete
from tests.exchange_support import Pki, blocked, client_for, issued, pki, platform
from tests.storekit import init_store, opened

__all__ = ["pki", "platform"]  # fixtures

DEV = audit.CheckpointSigner.development_signer()
STATIONS = 4
SP = "sp-labour"


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
        switches = sum(a != b for a, b in itertools.pairwise(stations))
        if conn.engine == db.POSTGRESQL:  # waiters queue on the lock; SQLite's busy wait may not
            assert switches > STATIONS, "the stations did not interleave"
        cps = audit.checkpoints(conn)
        # 20 automatic (every card.issue) + 6 explicit per station
        assert len(cps) == STATIONS * (per_station // 3 + per_station // 10)
        report = audit.verify(conn, DEV)
        assert report.ok, report.info()
        assert report.checkpoints_verified == len(cps)
    print(
        f"\n{conn.engine}: {total} records by {STATIONS} stations in {elapsed:.2f} s "
        f"({total / elapsed:.0f}/s; slowest station {max(r['seconds'] for r in results):.2f} s;"
        f" {switches} changes of station along the chain)"
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


# --- the CLI on several stations ---------------------------------------------------

SSCARD = str(Path(sys.executable).with_name("sscard"))
PASSWORD = "operator password 1"


def _login(target: str, operator_id: str, role: str, token: Path) -> dict[str, str]:
    """The environment of a station process where ``operator_id`` (made with ``role`` if
    missing) is logged in: the store by $SSCARD_STORE, the session token in ``token``."""
    from sscard.auth import OperatorStore, login

    with opened(target) as conn:
        store = OperatorStore(conn)
        if store.find(operator_id) is None:
            first = store.is_empty() and role == "issuer"
            store.add(operator_id, operator_id, role, PASSWORD, bootstrap=first, cost=10)
        login(store, operator_id, PASSWORD, path=token)
    return {**os.environ, "SSCARD_STORE": target, "SSCARD_OPERATOR_TOKEN": str(token)}


def _platform_env(platform: Platform, pki: Pki) -> dict[str, str]:
    url, cert, key, ca = _station_args(platform, pki)
    return {
        "SSCARD_PLATFORM_URL": url,
        "SSCARD_EXCHANGE_CERT": cert,
        "SSCARD_EXCHANGE_KEY": key,
        "SSCARD_EXCHANGE_CA": ca,
    }


def test_sync_run_on_two_stations(
    store_target: str, platform: Platform, pki: Pki, tmp_path: Path
) -> None:
    """Two stations run the sync loop on one store while a third enqueues: every event
    pushed once, every pulled item stored once, one cursor."""
    init_store(store_target)
    police = [
        Event(new_event_id(), "sp-police", utc_text(), "card.blocked", blocked(number))
        for number in (complete(f"P{n:07d}") for n in range(25))
    ]
    with client_for(platform, pki, "sp-police") as client:
        client.push([*police])
    env = {**_login(store_target, "sync-op", "service", tmp_path / "op.token")}
    env.update(_platform_env(platform, pki))
    runs = [
        subprocess.Popen(
            [
                SSCARD,
                "--json",
                "sync",
                "run",
                "--period",
                "0.3",
                "--cycles",
                "10",
                "--batch-size",
                "4",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _station in range(2)
    ]
    ids: list[str] = []
    with opened(store_target) as conn:
        for r in range(6):
            with db.transaction(conn):
                ids += [
                    outbox.enqueue(conn, "card.issued", issued(r * 100 + i), service_point=SP)
                    for i in range(9)
                ]
            time.sleep(0.1)
    assert all(p.poll() is None for p in runs), "a station ended before the events were queued"
    lines = []
    for p in runs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        assert "Traceback" not in stderr
        lines += [json.loads(line) for line in stdout.splitlines()]
    assert len(lines) == 20 and not [c for c in lines if c["error"]]
    assert sum(c["push"]["delivered"] for c in lines) == len(ids)
    assert sum(c["push"]["duplicate"] for c in lines) == 0
    assert sum(c["pull"]["items"] for c in lines) == len(police)  # each pulled once
    assert sorted(platform.store.event_ids()) == sorted([e.id for e in police] + ids)
    with opened(store_target) as conn:
        assert outbox.stats(conn).pending == 0
        assert len(inbox.block_list(conn)) == len(police)
        assert inbox.cursor(conn) == len(police)  # their platform seqs came first: 1..25
        assert audit.verify(conn).ok


def _sscard(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SSCARD, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
    )


def test_operators_log_in_once_for_the_centre(store_target: str, tmp_path: Path) -> None:
    """An operator added at station A logs in at station B; disabled at A, their session
    at B ends at once; every refusal is in the one trail."""
    init_store(store_target)
    a = {**os.environ, "SSCARD_OPERATOR_TOKEN": str(tmp_path / "a.token")}
    b = {**os.environ, "SSCARD_OPERATOR_TOKEN": str(tmp_path / "b.token")}
    store = ("--store", store_target)
    pw = f"{PASSWORD}\n{PASSWORD}\n"
    boot = _sscard(a, *store, "operator", "add", "--bootstrap", "admin", "--name", "Li Na",
                   "--password-fd", "0", "--kdf-cost", "10", stdin=pw)  # fmt: skip
    assert boot.returncode == 0, boot.stderr
    assert _sscard(a, *store, "operator", "login", "admin", "--password-fd", "0",
                   stdin=PASSWORD).returncode == 0  # fmt: skip
    added = _sscard(a, *store, "operator", "add", "zhang", "--name", "Zhang Wei", "--role",
                    "service", "--password-fd", "0", "--kdf-cost", "10", stdin=pw)  # fmt: skip
    assert added.returncode == 0, added.stderr
    # station B: the same operator, the same password, a session of its own
    login_b = _sscard(b, *store, "--json", "operator", "login", "zhang", "--password-fd", "0",
                      stdin=PASSWORD)  # fmt: skip
    assert login_b.returncode == 0, login_b.stderr
    assert json.loads(login_b.stdout)["id"] == "zhang"
    whoami = _sscard(b, *store, "--json", "operator", "whoami")
    assert whoami.returncode == 0 and json.loads(whoami.stdout)["id"] == "zhang"
    # station A disables zhang: B's session ends, B's next login is refused
    off = _sscard(a, *store, "operator", "disable", "zhang")
    assert off.returncode == 0, off.stderr
    after = _sscard(b, *store, "operator", "whoami")
    assert after.returncode == 6 and "Traceback" not in after.stderr
    again = _sscard(b, *store, "operator", "login", "zhang", "--password-fd", "0",
                    stdin=PASSWORD)  # fmt: skip
    assert again.returncode == 6 and "Traceback" not in again.stderr
    with opened(store_target) as conn:
        trail = [(r.action, r.operator, r.outcome) for r in audit.all_records(conn)]
        assert audit.verify(conn).ok
    assert trail == [
        ("operator.bootstrap", "admin", "ok"),
        ("operator.login", "admin", "ok"),
        ("operator.add", "admin", "ok"),
        ("operator.login", "zhang", "ok"),
        ("operator.disable", "admin", "ok"),
        ("operator.login", "zhang", "refused"),
    ]
