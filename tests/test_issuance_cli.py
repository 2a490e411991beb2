"""`sscard issue` and `sscard issue batch` end to end: through pcscd + vpcd, and in-process."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from sscard.applets.cos import Latency
from sscard.applets.factory import new_card_file, new_memory_card, open_card_file
from sscard.applets.pcsc_rig import VPCD_READERS, card_in_reader
from sscard.cli.exit_codes import ExitCode
from sscard.db import open_store
from sscard.issuance.store import cards as store_cards
from sscard.layout.cardno import complete
from sscard.transport import pcsc
from tests.cardkit import PIN, SAMPLE_HOLDER, Slot
from tests.operatorkit import env_for, env_in_store

SSCARD = str(Path(sys.executable).with_name("sscard"))
HOLDER = Path(__file__).resolve().parent.parent / "examples" / "holder.json"


def run(
    *args: str, role: str = "issuer", stdin: str | None = None, store: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = env_for(role)
    if store is not None:  # the local store: operators, audit trail and issuance
        env = env_in_store(store, role)
        i = args.index("issue") + 1
        args = (*args[:i], "--store", str(store), *args[i:])
    return subprocess.run(
        [SSCARD, *args], capture_output=True, text=True, input=stdin, env=env, timeout=120
    )


def issue_random_pin(
    reader: str,
    store: Path,
    *,
    holder: Path = HOLDER,
    role: str = "issuer",
    as_json: bool = False,
    profile: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``sscard [--json] -r READER issue --holder HOLDER --keystore dev --random-pin``
    (``--profile PROFILE``: a blank card does not say its profile)."""
    flags = ("--json",) if as_json else ()
    chosen = ("--profile", profile) if profile else ()
    return run(
        *flags, "-r", reader, "issue", "--holder", str(holder), "--keystore", "dev",
        *chosen, "--random-pin", role=role, store=store,
    )  # fmt: skip


def holders(n: int) -> list[dict[str, object]]:
    """``n`` valid holders (GB 11643 check digits computed here, independently)."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    out = []
    for i in range(n):
        month = i % 12 + 1
        body = f"310101198{i % 10}{month:02d}15{101 + 2 * i:03d}"
        ssn = body + "10X98765432"[sum(int(a) * w for a, w in zip(body, weights, strict=True)) % 11]
        out.append(
            {
                **SAMPLE_HOLDER,
                "ssn": ssn,
                "birth_date": f"198{i % 10}-{month:02d}-15",
                "gender": "1",
                "birthplace": "310101",
                "card_number": complete(f"B{i:07d}"),
                "name": f"测试{i}",
            }
        )
    return out


def test_issue_through_pcscd_then_read_back(tmp_path: Path, vpcd_port: int) -> None:
    card = new_card_file(tmp_path / "blank.img", "national-3")
    reader = VPCD_READERS[vpcd_port]
    store = tmp_path / "sscard.db"
    with card_in_reader(card, vpcd_port):
        result = run(
            "--json",
            "-r",
            reader,
            "issue",
            "--holder",
            str(HOLDER),
            "--keystore",
            "dev",
            "--pin-stdin",
            stdin=f"{PIN}\n{PIN}\n",
            store=store,
        )
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["status"] == "issued" and data["serial"] == card.serial.hex().upper()
        assert "initial_pin" not in data and PIN not in result.stdout + result.stderr
        read = run("--json", "-r", reader, "read", "--keystore", "dev")  # 3.0: read key
        data = json.loads(read.stdout)
        assert data.pop("departments") and data == SAMPLE_HOLDER
        again = issue_random_pin(reader, store)
        assert again.returncode == 0 and "already issued" in again.stdout


def test_bad_holder_lists_every_field_and_touches_no_card(tmp_path: Path) -> None:
    path = tmp_path / "card.img"
    new_card_file(path)
    bad = {
        **SAMPLE_HOLDER,
        "ssn": "110105194912310021",
        "birth_date": "1949-02-30",
        "card_number": "123",
        "region": "31",
    }
    holder = tmp_path / "bad.json"
    holder.write_text(json.dumps(bad, ensure_ascii=False), encoding="utf-8")
    result = issue_random_pin(f"virtual:{path}", tmp_path / "s.db", holder=holder, as_json=True)
    assert result.returncode == ExitCode.INVALID_INPUT
    problems = {p["field"] for p in json.loads(result.stderr)["problems"]}
    assert {"ssn", "birth_date", "card_number", "region"} <= problems
    info = run("--json", "-r", f"virtual:{path}", "info")
    assert json.loads(info.stdout)["lifecycle"] == "BLANK"


def test_issue_needs_an_issuer(tmp_path: Path) -> None:
    path = tmp_path / "card.img"
    new_card_file(path)
    result = issue_random_pin(f"virtual:{path}", tmp_path / "s.db", role="service")
    assert result.returncode == ExitCode.AUTH
    assert "card.issue" in result.stderr


def test_pin_must_be_confirmed_and_pass_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "card.img"
    new_card_file(path)
    args = (
        "-r",
        f"virtual:{path}",
        "issue",
        "--holder",
        str(HOLDER),
        "--keystore",
        "dev",
        "--pin-stdin",
    )
    differ = run(*args, stdin="802461\n802462\n", store=tmp_path / "s.db")
    assert differ.returncode == ExitCode.INVALID_INPUT and "differ" in differ.stderr
    weak = run(*args, stdin="123456\n123456\n", store=tmp_path / "s.db")
    assert weak.returncode == ExitCode.INVALID_INPUT and "sequence" in weak.stderr
    assert "123456" not in weak.stderr


def test_dry_run_prints_the_plan_without_secrets() -> None:
    result = run("issue", "--holder", str(HOLDER), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "00 82 00 00 <cryptogram>" in result.stdout
    assert "84 D4 01 01 <enciphered key record + MAC>" in result.stdout
    assert "80 EA 00 00" in result.stdout


def test_batch_virtual_then_rerun_skips(tmp_path: Path) -> None:
    rows = [*holders(6), {**SAMPLE_HOLDER, "ssn": "110105194912310021"}]  # the last is invalid
    path = tmp_path / "holders.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    store = tmp_path / "s.db"
    refused = run("issue", "--keystore", "dev", "batch", str(path), "--virtual", "3", store=store)
    assert refused.returncode == ExitCode.INVALID_INPUT
    assert "line 7: ssn" in refused.stderr
    results = tmp_path / "r.csv"
    done = run(
        "issue",
        "--keystore",
        "dev",
        "batch",
        str(path),
        "--virtual",
        "3",
        "--skip-invalid",
        "--results",
        str(results),
        store=store,
    )
    assert done.returncode == 0, done.stderr
    lines = results.read_text().splitlines()
    assert lines[0] == "row,card_serial,status,error,reader"
    statuses = sorted(line.split(",")[2] for line in lines[1:])
    assert statuses == ["invalid"] + ["issued"] * 6
    assert done.stdout.count("PIN mailer") == 6
    again = run(
        "--json",
        "issue",
        "--keystore",
        "dev",
        "batch",
        str(path),
        "--virtual",
        "2",
        "--skip-invalid",
        store=store,
    )
    summary = json.loads(again.stdout.splitlines()[-1])
    assert summary["skipped"] == 6 and summary["issued"] == 0


def test_batch_through_a_pcsc_reader(tmp_path: Path, vpcd_port: int) -> None:
    reader = VPCD_READERS[vpcd_port]
    path = tmp_path / "holders.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in holders(2)) + "\n")
    slot = Slot(new_memory_card())
    with card_in_reader(slot, vpcd_port) as bridge:
        stop = threading.Event()

        def staff() -> None:  # takes each issued card out and puts a blank one in
            swapped = 0
            while not stop.is_set() and swapped < 1:
                if slot.card.state.lifecycle == "ISSUED":
                    bridge.remove()
                    pcsc.wait_for_card(reader, 10, present=False)
                    slot.card = new_memory_card()
                    bridge.insert()
                    swapped += 1
                stop.wait(0.05)

        helper = threading.Thread(target=staff)
        helper.start()
        try:
            result = run(
                "--json",
                "issue",
                "--keystore",
                "dev",
                "batch",
                str(path),
                "--readers",
                reader,
                store=tmp_path / "s.db",
            )
        finally:
            stop.set()
            helper.join()
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[-1]["issued"] == 2
    assert sorted(m["card_number"] for m in lines[:-1]) == ["B0000000X", "B0000001V"]


def test_batch_needs_readers_or_virtual(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(SAMPLE_HOLDER, ensure_ascii=False) + "\n")
    result = run("issue", "--keystore", "dev", "batch", str(path))
    assert result.returncode == ExitCode.USAGE


@pytest.mark.parametrize("profile", ["national-2"])
def test_issue_other_profile_in_process(tmp_path: Path, profile: str) -> None:
    path = tmp_path / "card.img"
    new_card_file(path, profile)
    result = issue_random_pin(f"virtual:{path}", tmp_path / "s.db", profile=profile)
    assert result.returncode == 0, result.stderr
    assert "PIN mailer" in result.stdout
    again = issue_random_pin(f"virtual:{path}", tmp_path / "s.db")  # now the card says it
    assert again.returncode == 0 and "already issued" in again.stdout
    # Without --profile a blank card is issued with the default: a 3DES card then refuses it
    other = tmp_path / "other.img"
    new_card_file(other, profile)
    refused = issue_random_pin(f"virtual:{other}", tmp_path / "s2.db")
    assert refused.returncode != 0


def test_issue_list_shows_the_store(tmp_path: Path) -> None:
    path = tmp_path / "card.img"
    new_card_file(path)
    store = tmp_path / "s.db"
    assert "No cards" in run("issue", "list", store=store).stdout
    issue_random_pin(f"virtual:{path}", store)
    rows = json.loads(run("--json", "issue", "list", store=store).stdout)
    assert [(r["card_number"], r["status"]) for r in rows] == [("A12345671", "issued")]
    assert (
        run("--json", "issue", "list", "--status", "in_progress", store=store).stdout.strip()
        == "[]"
    )


def test_batch_interrupted_finishes_cards_in_flight_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "holders.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in holders(6)) + "\n")
    store = tmp_path / "s.db"
    args = [
        SSCARD,
        "--json",
        "issue",
        "--store",
        str(store),
        "--keystore",
        "dev",
        "batch",
        str(path),
        "--virtual",
        "2",
        "--latency",
        "realistic",
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_in_store(store)
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until both readers have a card in flight
        if store.exists():
            conn = open_store(store)
            flying = [r for r in store_cards(conn) if r.status == "in_progress"]
            conn.close()
            if len(flying) == 2:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # each card takes about 3 s with the latency model
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "finishing the cards in flight" in err
    summary = json.loads(out.splitlines()[-1])
    assert summary["issued"] == 2 and summary["left"] == 4  # the two in flight were finished
    conn = open_store(store)
    statuses = sorted(r.status for r in store_cards(conn))
    assert statuses == ["issued", "issued"]  # nothing half-done is recorded as issued
    again = run(
        "--json", "issue", "--keystore", "dev", "batch", str(path), "--virtual", "3", store=store
    )
    final = json.loads(again.stdout.splitlines()[-1])
    assert (final["skipped"], final["issued"]) == (2, 4)


def _open_attempts(store: Path) -> list[tuple[object, ...]]:
    """``issuance_attempts`` rows with no outcome (read with sqlite3 directly)."""
    with closing(sqlite3.connect(store)) as db:
        return db.execute(
            "SELECT id, serial FROM issuance_attempts WHERE finished_at IS NULL OR outcome IS NULL"
        ).fetchall()


def _wait_in_progress(store: Path, n: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists():
            conn = open_store(store)
            flying = [r for r in store_cards(conn) if r.status == "in_progress"]
            conn.close()
            if len(flying) >= n:
                return
        time.sleep(0.02)
    raise AssertionError("the issuance never got under way")


def test_killed_virtual_batch_leaves_no_stale_rows(tmp_path: Path) -> None:
    path = tmp_path / "holders.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in holders(5)) + "\n")
    store = tmp_path / "s.db"
    args = [SSCARD, "--json", "issue", "--store", str(store), "--keystore", "dev", "batch"]
    args += [str(path), "--virtual", "2", "--latency", "realistic"]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_in_store(store)
    )
    try:
        _wait_in_progress(store, 2, proc)
    finally:
        proc.send_signal(signal.SIGKILL)  # as a user's kill -9: no cleanup at all
        proc.communicate(timeout=30)
    conn = open_store(store)
    killed = {r.serial for r in store_cards(conn) if r.status == "in_progress"}
    conn.close()
    assert len(killed) == 2 and len(_open_attempts(store)) >= 2  # what the kill left behind
    again = run(
        "--json", "issue", "--keystore", "dev", "batch", str(path), "--virtual", "2", store=store
    )
    assert again.returncode == 0, again.stderr
    final = json.loads(again.stdout.splitlines()[-1])
    assert final["skipped"] + final["issued"] == 5 and final["left"] == 0
    listed = run("--json", "issue", "list", "--status", "in_progress", store=store)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert _open_attempts(store) == []
    abandoned = json.loads(
        run("--json", "issue", "list", "--status", "abandoned", store=store).stdout
    )
    assert {r["serial"] for r in abandoned} == killed
    assert all("in-memory" in r["closed_reason"] for r in abandoned)
    with closing(sqlite3.connect(store)) as db:
        outcomes = db.execute(
            "SELECT outcome, error FROM issuance_attempts WHERE serial IN (?, ?)", tuple(killed)
        ).fetchall()
        audited = db.execute(
            "SELECT card_serial, action, outcome, detail FROM audit_log "
            "WHERE json_extract(detail, '$.status') = 'abandoned'"
        ).fetchall()
    assert {o for o, _ in outcomes} == {"abandoned"} and all(e for _, e in outcomes)
    assert {s for s, *_ in audited} == killed
    assert all(a == "card.issue" and o == "failed" for _, a, o, _ in audited)
    text = run("issue", "list", "--status", "abandoned", store=store).stdout
    assert "abandoned" in text and "in-memory" in text


def test_single_card_rerun_closes_the_killed_attempt(tmp_path: Path, vpcd_port: int) -> None:
    path = tmp_path / "card.img"
    new_card_file(path)
    card = open_card_file(path, latency=Latency.named("realistic"))  # about 3 s per card
    store = tmp_path / "s.db"
    reader = VPCD_READERS[vpcd_port]
    args = [SSCARD, "-r", reader, "issue", "--store", str(store), "--holder", str(HOLDER)]
    args += ["--keystore", "dev", "--random-pin"]
    with card_in_reader(card, vpcd_port):
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_in_store(store)
        )
        try:
            _wait_in_progress(store, 1, proc)
            time.sleep(0.3)  # a few APDUs into the plan
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        assert len(_open_attempts(store)) == 1  # the killed run left its attempt open
        # The physical card may come back: a batch run meanwhile must not close its row.
        other = tmp_path / "other.jsonl"
        other.write_text(json.dumps(holders(1)[0], ensure_ascii=False) + "\n")
        batch = run(
            "issue", "--keystore", "dev", "batch", str(other), "--virtual", "1", store=store
        )
        assert batch.returncode == 0, batch.stderr
        conn = open_store(store)
        assert store_cards(conn, status="in_progress")[0].serial == card.serial.hex().upper()
        conn.close()
        again = issue_random_pin(reader, store)
    assert again.returncode == 0, again.stderr
    assert _open_attempts(store) == []
    with closing(sqlite3.connect(store)) as db:
        attempts = db.execute(
            "SELECT outcome, error FROM issuance_attempts WHERE serial = ? ORDER BY id",
            (card.serial.hex().upper(),),
        ).fetchall()
    assert [o for o, _ in attempts] == ["superseded", "issued"]
    assert "superseded" in attempts[0][1]
    listed = run("--json", "issue", "list", "--status", "in_progress", store=store)
    assert json.loads(listed.stdout) == []


def test_batch_virtual_with_a_profile_file(tmp_path: Path) -> None:
    """The group's --profile reaches 'issue batch' (no parent-params lookup): a profile file
    works for the virtual readers' blank cards too."""
    from sscard.layout import load_profile

    profile = tmp_path / "my-city.json"
    profile.write_text(json.dumps({**load_profile("national-2").to_data(), "name": "my-city"}))
    path = tmp_path / "holders.jsonl"
    path.write_text(json.dumps(holders(1)[0], ensure_ascii=False) + "\n", "utf-8")
    results = tmp_path / "r.jsonl"
    done = run(
        "issue", "--keystore", "dev", "--profile", str(profile), "batch", str(path),
        "--virtual", "1", "--results", str(results), store=tmp_path / "s.db",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(results.read_text().splitlines()[0])["status"] == "issued"
