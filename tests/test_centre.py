"""An issuing centre: several stations on one store (issue 20, docs/store.md "Several stations").

Claims keep two stations off the same holder and the same card; the store's unique index
keeps one active card per holder; four real ``sscard issue batch`` processes with
overlapping holder files issue every holder exactly once; a station killed mid-card is
finished on another.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import sscard.schemas
from sscard import audit, db
from sscard.applets.cos import Latency
from sscard.applets.factory import new_card_file, new_memory_card, open_card_file
from sscard.applets.pcsc_rig import VPCD_READERS, card_in_reader
from sscard.auth import OperatorStore, login
from sscard.issuance import store
from sscard.issuance.plan import Step
from sscard.issuance.service import (
    HolderHasActiveCard,
    HolderInProgressElsewhere,
    issue_card,
)
from sscard.layout.cardno import complete
from sscard.transport import InProcessTransport
from tests.cardkit import PIN, SAMPLE_HOLDER, Slot, session
from tests.operatorkit import PASSWORD

SSCARD = str(Path(sys.executable).with_name("sscard"))
WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def init_store(target: str) -> None:
    """Every table of this sscard in ``target`` (a PostgreSQL store is not made on open)."""
    sscard.schemas.load_all()
    with db.connect(target) as conn:
        db.migrate(conn)


def holders(n: int) -> list[dict[str, Any]]:
    """``n`` valid, distinct holders (GB 11643 check digits computed here)."""
    out = []
    for i in range(n):
        month = i % 12 + 1
        body = f"320102197{i % 10}{month:02d}21{301 + 2 * i:03d}"
        check = "10X98765432"[sum(int(a) * w for a, w in zip(body, WEIGHTS, strict=True)) % 11]
        out.append(
            {
                **SAMPLE_HOLDER,
                "ssn": body + check,
                "birth_date": f"197{i % 10}-{month:02d}-21",
                "gender": "1",
                "birthplace": "320102",
                "card_number": complete(f"C{i:07d}"),
                "name": f"中心{i}",
            }
        )
    return out


def operator_env(target: str, tmp_path: Path, name: str = "centre-issuer") -> dict[str, str]:
    """An issuer of the centre's store, logged in; the environment of its ``sscard``."""
    token = tmp_path / f"{name}.token"
    operators = OperatorStore.open(target)
    try:
        if operators.find(name) is None:
            first = operators.is_empty()
            operators.add(name, name, "issuer", PASSWORD, bootstrap=first, cost=10)
        login(operators, name, PASSWORD, path=token)
    finally:
        operators.close()
    return {**os.environ, "SSCARD_OPERATOR_TOKEN": str(token)}  # PGPASSFILE: pg_server


CLAIMER = """
import sys, time
from sscard import db
conn = db.connect(sys.argv[1])
held = db.claim(conn, sys.argv[2])
print("held" if held else "refused", flush=True)
time.sleep(60)
"""


# --- claims -----------------------------------------------------------------------------


def test_a_claim_excludes_a_second_connection_until_released(store_target: str) -> None:
    init_store(store_target)
    with db.connect(store_target) as one, db.connect(store_target) as two:
        got = db.claim(one, "holder:320102197001213015")
        assert got is not None
        assert db.claim(one, "holder:320102197001213015") is got  # held already: the same
        assert db.claim(two, "holder:320102197001213015") is None
        assert db.claim(two, "holder:320102197001213015", wait=0.2) is None
        assert db.claim(two, "holder:other") is not None  # names are independent
        got.release()
        again = db.claim(two, "holder:320102197001213015")
        assert again is not None
        again.release()


def test_a_claim_dies_with_a_killed_process(store_target: str) -> None:
    init_store(store_target)
    name = "card:00112233445566FF"
    proc = subprocess.Popen(
        [sys.executable, "-c", CLAIMER, store_target, name],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        with db.connect(store_target) as conn:
            assert db.claim(conn, name) is None
            proc.send_signal(signal.SIGKILL)  # no cleanup: the engine must free it
            proc.wait(timeout=30)
            got = db.claim(conn, name, wait=10)
            assert got is not None
            got.release()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


# --- issue_card on two connections --------------------------------------------------------


class Counting(InProcessTransport):
    """Counts the APDUs sent (from zero once the card's serial is known)."""

    sent = 0

    def transmit(self, apdu: bytes) -> bytes:
        self.sent += 1
        return super().transmit(apdu)


def _card() -> tuple[Any, Counting]:
    transport = Counting(new_memory_card())
    transport.connect()
    card = session(transport, "national-3")
    assert card.serial  # read once: what the claim on the card is named after
    transport.sent = 0
    return card, transport


def test_two_stations_racing_for_one_holder_issue_one_card(store_target: str) -> None:
    init_store(store_target)
    holder = holders(1)[0]
    first, _ = _card()
    second, untouched = _card()
    started, tried = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def progress(_i: int, _step: Step) -> None:
        started.set()  # the first station is personalizing: the second tries now
        tried.wait(30)

    def station_one() -> None:
        with db.connect(store_target) as conn:
            try:
                outcome["one"] = issue_card(
                    first, holder, pin=PIN, conn=conn, operator=None,
                    service_point="station-1", progress=progress,
                )  # fmt: skip
            except BaseException as exc:  # reported below
                outcome["one"] = exc

    worker = threading.Thread(target=station_one)
    worker.start()
    try:
        assert started.wait(30)
        with db.connect(store_target) as conn:
            with pytest.raises(HolderInProgressElsewhere, match="another station"):
                issue_card(second, holder, pin=PIN, conn=conn, operator=None, service_point="s2")
            assert untouched.sent == 0  # refused before a single command to the card
            tried.set()
            worker.join(60)
            assert getattr(outcome["one"], "status", outcome["one"]) == "issued"
            # Once the first station is done, the second sees its result under the claims.
            with pytest.raises(HolderHasActiveCard, match="already has an active card"):
                issue_card(second, holder, pin=PIN, conn=conn, operator=None, service_point="s2")
            assert untouched.sent == 0
            serial_two = second.serial.hex().upper()
            assert store.card(conn, serial_two) is None
            assert [r.serial for r in store.cards(conn)] == [first.serial.hex().upper()]
            assert not [r for r in audit.all_records(conn) if r.card_serial == serial_two]
            assert not conn.claims  # the refusals left no claim behind
    finally:
        tried.set()
        worker.join(60)


def test_the_unique_index_refuses_a_second_issued_card(store_target: str) -> None:
    init_store(store_target)
    row = (
        "INSERT INTO issuance_cards (serial, card_number, ssn, profile, key_versions, status,"
        " started_at, updated_at) VALUES (?, ?, '320102197001213015', 'national-3', '{}',"
        " 'issued', '2025-01-01', '2025-01-01')"
    )
    with db.connect(store_target) as conn:
        conn.execute(row, ("0000000000000001", "C0000001"))
        with pytest.raises(db.IntegrityError) as refused:
            conn.execute(row, ("0000000000000002", "C0000002"))
        assert store.is_one_active_card_violation(refused.value)
        if conn.engine == db.POSTGRESQL:
            assert store.ONE_ACTIVE_CARD in str(refused.value)
        conn.execute(row.replace("'issued'", "'replaced'"), ("0000000000000003", "C0000003"))
        (count,) = conn.execute("SELECT COUNT(*) FROM issuance_cards").fetchone()
        assert count == 2


def test_the_index_biting_at_commit_is_holder_has_active_card(store_target: str) -> None:
    """A writer that skipped the claims (raw SQL here) issues the holder meanwhile: the
    store refuses the second card at commit, and the attempt is recorded as failed."""
    init_store(store_target)
    holder = holders(1)[0]
    card, _ = _card()
    sneaked: list[bool] = []

    def progress(_i: int, _step: Step) -> None:
        if sneaked:
            return
        sneaked.append(True)
        with db.connect(store_target) as other:
            other.execute(
                "INSERT INTO issuance_cards (serial, card_number, ssn, profile, key_versions,"
                " status, started_at, updated_at) VALUES ('FFFFFFFFFFFFFFFF', ?, ?,"
                " 'national-3', '{}', 'issued', '2025-01-01', '2025-01-01')",
                (holder["card_number"], holder["ssn"]),
            )

    with db.connect(store_target) as conn:
        with pytest.raises(HolderHasActiveCard, match="store refused"):
            issue_card(
                card, holder, pin=PIN, conn=conn, operator=None, service_point="s1",
                progress=progress,
            )  # fmt: skip
        serial = card.serial.hex().upper()
        row = store.card(conn, serial)
        assert row is not None and row.status == "in_progress"
        assert row.last_error == "HolderHasActiveCard"
        failed = [r for r in audit.all_records(conn) if r.card_serial == serial]
        assert [(r.outcome, r.error) for r in failed] == [("failed", "HolderHasActiveCard")]
        (events,) = conn.execute("SELECT COUNT(*) FROM outbox_events").fetchone()
        assert events == 0
        assert not conn.claims


def batch_args(target: str, station: str, holders: Path, results: Path) -> list[str]:
    """``sscard issue batch`` of one station on the store ``target`` (readers: the caller's)."""
    group = ["--store", target, "--keystore", "dev", "--service-point", station]
    return [SSCARD, "--json", "issue", *group, "batch", str(holders), "--results", str(results)]


# --- four stations ------------------------------------------------------------------------


def station_files(
    tmp_path: Path, rows: list[dict[str, Any]], stations: int, seed: int = 20
) -> list[Path]:
    """Holder files, one per station, every holder in 2 or 3 of them, each file shuffled."""
    rng = random.Random(seed)
    files: list[list[dict[str, Any]]] = [[] for _ in range(stations)]
    for i, row in enumerate(rows):
        count = 3 if i % 2 == 0 else 2
        least = sorted(range(stations), key=lambda s: (len(files[s]), rng.random()))[:count]
        for s in least:
            files[s].append(row)
    paths = []
    for s, chosen in enumerate(files):
        rng.shuffle(chosen)
        path = tmp_path / f"station-{s + 1}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chosen))
        paths.append(path)
    return paths


def test_four_stations_with_overlapping_files_issue_every_holder_once(
    pg_url: str, tmp_path: Path
) -> None:
    init_store(pg_url)
    env = operator_env(pg_url, tmp_path)
    people = holders(40)
    files = station_files(tmp_path, people, 4)
    sizes = [len(p.read_text().splitlines()) for p in files]
    assert sum(sizes) == 100 and all(20 <= n <= 25 for n in sizes)
    began = time.monotonic()
    procs = [
        subprocess.Popen(
            [*batch_args(pg_url, f"station-{i + 1}", path, tmp_path / f"results-{i + 1}.jsonl"),
             "--virtual", "2", "--latency", "realistic"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for i, path in enumerate(files)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in procs]
    elapsed = time.monotonic() - began
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    summaries = [json.loads(out.splitlines()[-1]) for out, _err in outputs]
    mailers = [json.loads(line) for out, _err in outputs for line in out.splitlines()[:-1]]

    total = Counter[str]()
    for summary in summaries:
        total.update({k: v for k, v in summary.items() if isinstance(v, int)})
    assert total["issued"] == 40 and total["issued"] + total["skipped"] == 100
    assert (total["failed"], total["left"], total["invalid"]) == (0, 0, 0)
    assert sorted(m["card_number"] for m in mailers) == sorted(p["card_number"] for p in people)
    results = [
        json.loads(line)
        for i in range(4)
        for line in (tmp_path / f"results-{i + 1}.jsonl").read_text().splitlines()
    ]
    assert Counter(r["status"] for r in results) == {"issued": 40, "skipped": 60}

    with db.open_store(pg_url) as conn:
        issued = store.cards(conn, status="issued")
        assert sorted(r.ssn for r in issued) == sorted(p["ssn"] for p in people)  # once each
        assert store.cards(conn, status="in_progress") == []
        by_serial = {r.serial: r for r in issued}
        skipped = {r["card_serial"] for r in results if r["status"] == "skipped"}
        assert skipped <= set(by_serial)  # a skipped row names the card that was issued
        events = conn.execute(
            "SELECT category, payload, state FROM outbox_events ORDER BY seq"
        ).fetchall()
        assert {c for c, _p, _s in events} == {"card.issued"}
        payloads = [json.loads(p) for _c, p, _s in events]
        assert sorted(p["ssn"] for p in payloads) == sorted(p["ssn"] for p in people)
        assert {p["card_serial"] for p in payloads} == set(by_serial)
        assert {s for _c, _p, s in events} == {"pending"}  # complete, waiting for a push
        oks = [r for r in audit.all_records(conn) if r.action == "card.issue"]
        assert all(r.outcome == "ok" for r in oks)
        audited = Counter(by_serial[str(r.card_serial)].ssn for r in oks)
        assert len(audited) == 40 and set(audited.values()) == {1}
        report = audit.verify(conn)
        assert report.ok, report.problem
    print(
        f"\nfour stations: {len(people)} holders, {sum(sizes)} rows, {elapsed:.1f} s, "
        f"{total['issued']} issued, {total['skipped']} skipped, {total['deferred']} rows deferred, "
        f"per station {[(s['issued'], s['skipped'], s['deferred']) for s in summaries]}"
    )


# --- a station killed mid-card, finished on another ------------------------------------------


def _wait_in_progress(target: str, proc: subprocess.Popen[str]) -> store.CardRecord:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        with db.connect(target) as conn:
            flying = store.cards(conn, status="in_progress")
        if flying:
            return flying[0]
        time.sleep(0.05)
    raise AssertionError("the issuance never got under way")


def test_a_card_killed_mid_issue_is_finished_on_another_station(
    pg_url: str, tmp_path: Path, vpcd_port: int
) -> None:
    init_store(pg_url)
    env = operator_env(pg_url, tmp_path)
    people = holders(1)
    path = tmp_path / "holders.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in people))
    image = tmp_path / "card.img"
    new_card_file(image)
    reader = VPCD_READERS[vpcd_port]

    def station(name: str) -> list[str]:
        return [*batch_args(pg_url, name, path, tmp_path / f"{name}.jsonl"), "--readers", reader]

    slot = Slot(open_card_file(image, latency=Latency.named("realistic")))
    with card_in_reader(slot, vpcd_port):
        proc = subprocess.Popen(
            station("station-a"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env,
        )  # fmt: skip
        try:
            flying = _wait_in_progress(pg_url, proc)
            time.sleep(0.5)  # some APDUs into the plan
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        ssn = flying.ssn
        with db.connect(pg_url) as conn:
            row = store.card(conn, flying.serial)
            assert row is not None and row.status == "in_progress" and row.held_by is None
            for name in (f"holder:{ssn}", f"card:{flying.serial}"):  # died with the station
                got = db.claim(conn, name, wait=10)
                assert got is not None
                got.release()

        # The card moves to another station: out of this reader's power, its image file
        # opened afresh (a cold reset, as in another reader). No reinsertion through vpcd.
        slot.card.power_off()
        moved = open_card_file(image, latency=Latency.named("realistic"))
        assert moved.serial.hex().upper() == flying.serial
        slot.card = moved
        done = subprocess.run(
            station("station-b"), capture_output=True, text=True, env=env, timeout=180
        )
    results = [json.loads(line) for line in (tmp_path / "station-b.jsonl").read_text().splitlines()]
    assert done.returncode == 0, (done.stdout, results)
    summary = json.loads(done.stdout.splitlines()[-1])
    assert (summary["issued"], summary["failed"], summary["left"]) == (1, 0, 0)
    mine = [r for r in results if r["card_serial"] == flying.serial]
    assert [r["status"] for r in mine] in (["issued"], ["resumed"])
    with db.connect(pg_url) as conn:
        row = store.card(conn, flying.serial)
        assert row is not None and row.status == "issued" and row.ssn == ssn
        assert sorted(r.ssn for r in store.cards(conn, status="issued")) == sorted(
            p["ssn"] for p in people
        )
        attempts = conn.execute(
            "SELECT outcome FROM issuance_attempts WHERE serial = ? ORDER BY id",
            (flying.serial,),
        ).fetchall()
        if mine[0]["status"] == "issued":  # personalized again from where it was
            assert [a for (a,) in attempts] == ["superseded", "issued"]
        else:  # it had ended personalization: verified and recorded
            assert [a for (a,) in attempts] == ["issued"]
        (events,) = conn.execute(
            "SELECT COUNT(*) FROM outbox_events WHERE category = 'card.issued'"
        ).fetchone()
        assert events == 1
        assert audit.verify(conn).ok
