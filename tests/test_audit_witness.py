"""Audit truncation is caught against the exchange platform's witness (issue 12, item 8).

Automatic signed checkpoints; ``sscard sync push`` sends the newest one; the
platform keeps it per service point and refuses one that goes backwards or
forks; ``sscard audit verify`` fails when the local trail no longer reaches
the witnessed record. Tampering is done as an attacker would: in the SQLite
file, triggers dropped. The platform is the real one over mutual TLS.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from sscard import audit
from sscard.cli.main import cli
from sscard.db import open_store as connect
from sscard.exchange import sync
from sscard.exchange.platform import Platform
from sscard.layout.cardno import complete
from tests.exchange_support import Pki, blocked, client_env, client_for, pki, platform
from tests.operatorkit import Installation, record

__all__ = ["pki", "platform"]  # fixtures

DEV = audit.CheckpointSigner.development_signer()


@pytest.fixture
def armed() -> Iterator[None]:
    """Automatic checkpoints with the development key, for this test only."""
    audit.use_signer(DEV)
    yield
    audit.use_signer(None)


def _records(n: int, action: str = "card.issue", outcome: str = "ok") -> None:
    for i in range(n):
        record(action, operator=None, outcome=outcome, card_number=complete(f"A{i:07d}"))


def _checkpoint_seqs() -> list[int]:
    conn = connect()
    try:
        return [cp.seq for cp in audit.checkpoints(conn)]
    finally:
        conn.close()


def test_checkpoints_are_automatic_after_state_changes_and_every_n_records(
    installation: Installation, armed: None
) -> None:
    _records(3)
    assert _checkpoint_seqs() == [1, 2, 3]
    _records(audit.AUTO_EVERY - 1, action="card.read")  # reads change nothing
    _records(1, action="pin.reset", outcome="refused")  # neither does a refusal
    assert _checkpoint_seqs() == [1, 2, 3, 3 + audit.AUTO_EVERY]
    conn = connect()
    try:
        report = audit.verify(conn, DEV)
    finally:
        conn.close()
    assert report.ok and report.unsigned_tail == 0


def test_the_environment_arms_automatic_checkpoints(
    installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    _records(1)
    assert _checkpoint_seqs() == []  # no signer configured: nothing automatic
    monkeypatch.setenv("SSCARD_AUDIT_KEYSTORE", "dev")
    _records(1)
    assert _checkpoint_seqs() == [2]


# --- against the platform -----------------------------------------------------------


def _env(platform: Platform, pki: Pki, store: Path, name: str = "sp-labour") -> dict[str, str]:
    return client_env(platform.url, pki, name, store, role="issuer") | {
        "SSCARD_AUDIT_KEYSTORE": "dev"
    }


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def _cut_after(store: Path, seq: int) -> None:
    """Delete every audit record after ``seq`` and every checkpoint covering them."""
    raw = sqlite3.connect(store)
    raw.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    raw.execute("DROP TRIGGER IF EXISTS audit_checkpoints_no_delete")
    raw.execute("DELETE FROM audit_log WHERE seq > ?", (seq,))
    raw.execute("DELETE FROM audit_checkpoints WHERE seq > ?", (seq,))
    raw.commit()
    raw.close()


def _head(store: Path) -> int:
    """The last record's seq in ``store``."""
    conn = sqlite3.connect(store)
    try:
        return int(conn.execute("SELECT max(seq) FROM audit_log").fetchone()[0])
    finally:
        conn.close()


def test_a_cut_tail_fails_verify_against_the_platform(
    platform: Platform, pki: Pki, tmp_path: Path
) -> None:
    store = tmp_path / "sp.db"
    env = _env(platform, pki, store)
    for _ in range(3):  # audited actions: each one a checkpoint
        assert run(env, "audit", "checkpoint", "--keystore", "dev").exit_code == 0
    pushed = run(env, "--json", "sync", "push")
    assert pushed.exit_code == 0, pushed.output
    witnessed = json.loads(pushed.stdout)["audit_witnessed"]
    human = run(env, "sync", "push")
    witnessed += 1  # the first push's own audit record
    assert f"witnessed by the platform to record {witnessed}" in human.output
    assert witnessed == _head(store) - 1  # the head at push time; then the push's own record
    head = platform.store.audit_head("sp-labour")
    assert head is not None and head[0]["seq"] == witnessed

    ok = run(env, "audit", "verify", "--keystore", "dev")
    assert ok.exit_code == 0, ok.output
    assert f"platform witnessed up to record {witnessed}" in ok.output
    assert "Trail verified to record" in ok.output

    _cut_after(store, witnessed - 2)
    cut = run(env, "audit", "verify", "--keystore", "dev")
    assert cut.exit_code == 1, cut.output
    assert (
        f"audit trail truncated: the platform witnessed record {witnessed} "
        f"but the local trail ends at {witnessed - 2}"
    ) in cut.output
    as_json = run(env, "--json", "audit", "verify")
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    # the failed verify added its own record: the trail now ends one further on
    assert (report["witnessed_seq"], report["verified_to"]) == (witnessed, witnessed - 1)
    assert report["first_broken_record"] == witnessed
    local_only = run(env, "audit", "verify", "--keystore", "dev", "--no-platform")
    assert local_only.exit_code == 0  # locally the cut is invisible: that is the point
    again = run(env, "sync", "push")  # nor can the cut (and regrown) trail replace the witness
    assert again.exit_code == 1, again.output
    assert f"audit record {witnessed}: differs from the record the platform witnessed" in (
        again.output
    )
    assert platform.store.audit_head("sp-labour")[0]["seq"] == witnessed  # type: ignore[index]


def test_a_rewritten_witnessed_record_fails_verify(
    platform: Platform, pki: Pki, tmp_path: Path
) -> None:
    store = tmp_path / "sp.db"
    env = _env(platform, pki, store)
    assert run(env, "sync", "push").exit_code == 0
    witnessed = platform.store.audit_head("sp-labour")[0]["seq"]  # type: ignore[index]
    raw = sqlite3.connect(store)
    raw.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    raw.execute("UPDATE audit_log SET hash = ? WHERE seq = ?", ("ab" * 32, witnessed))
    raw.commit()
    raw.close()
    r = run(env, "audit", "verify")
    assert r.exit_code == 1 and f"audit record {witnessed}" in r.output
    _cut_after(store, witnessed - 1)
    r = run(env, "sync", "push")
    assert r.exit_code == 1 and "audit trail truncated" in r.output, r.output


def test_verify_with_an_unreachable_platform_exits_5(
    platform: Platform, pki: Pki, tmp_path: Path
) -> None:
    env = _env(platform, pki, tmp_path / "sp.db") | {"SSCARD_PLATFORM_URL": "https://127.0.0.1:9"}
    r = run(env, "audit", "verify")
    assert r.exit_code == 5 and "--no-platform" in r.output
    assert run(env, "audit", "verify", "--no-platform").exit_code == 0
    partial = env | {"SSCARD_PLATFORM_URL": platform.url, "SSCARD_EXCHANGE_CA": ""}
    r = run(partial, "audit", "verify")
    assert r.exit_code == 7 and "--ca" in r.output


# --- the platform's rules, with a raw client ----------------------------------------


def _cp(seq: int, head: str) -> dict[str, Any]:
    return DEV.sign(seq, head, "2025-01-01T00:00:00.000000Z").wire()


def _post(platform: Platform, pki: Pki, body: Any, name: str = "sp-labour") -> tuple[int, Any]:
    conn = http.client.HTTPSConnection("127.0.0.1", platform.port, context=pki.client(name))
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", "/v1/audit/checkpoint", body=data)
    response = conn.getresponse()
    answer = (response.status, json.loads(response.read()))
    conn.close()
    return answer


def test_the_platform_refuses_a_checkpoint_that_goes_backwards_or_forks(
    platform: Platform, pki: Pki
) -> None:
    h5, h7, other = "55" * 32, "77" * 32, "99" * 32
    assert _post(platform, pki, {"checkpoint": _cp(5, h5), "extends": None}) == (
        200,
        {
            "service_point": "sp-labour",
            "status": "witnessed",
            "checkpoint": _cp(5, h5),
            "received_at": platform.store.audit_head("sp-labour")[1],  # type: ignore[index]
        },
    )
    status, answer = _post(platform, pki, {"checkpoint": _cp(5, h5), "extends": None})
    assert (status, answer["status"]) == (200, "unchanged")
    for body, words in (
        ({"checkpoint": _cp(3, "33" * 32), "extends": None}, "goes backwards"),
        ({"checkpoint": _cp(5, other), "extends": None}, "forks"),
        ({"checkpoint": _cp(7, h7), "extends": None}, "does not extend record 5"),
        ({"checkpoint": _cp(7, h7), "extends": {"seq": 5, "hash": other}}, "does not extend"),
        ({"checkpoint": _cp(7, h7), "extends": {"seq": 4, "hash": h5}}, "does not extend"),
    ):
        status, answer = _post(platform, pki, body)
        assert (status, answer["error"]) == (409, "audit_conflict"), answer
        assert words in answer["message"]
    assert platform.store.audit_head("sp-labour")[0]["seq"] == 5  # type: ignore[index]
    status, answer = _post(
        platform, pki, {"checkpoint": _cp(7, h7), "extends": {"seq": 5, "hash": h5}}
    )
    assert (status, answer["status"], answer["checkpoint"]["seq"]) == (200, "witnessed", 7)
    # another service point has its own head; bad bodies are 400
    assert _post(platform, pki, {"checkpoint": _cp(2, h5), "extends": None}, "sp-police")[0] == 200
    for bad in (b"[[[[", {"checkpoint": {"seq": -1}}, b"[" * 50_000):
        status, answer = _post(platform, pki, bad)
        assert status == 400, answer
    audited = [e for e in platform.store.audit_log() if e["action"] == "audit_witness"]
    assert [e["status"] for e in audited].count(409) == 5


def test_witness_from_an_empty_trail_onwards(
    installation: Installation, platform: Platform, pki: Pki
) -> None:
    conn = connect()
    try:
        assert audit.checkpoint(conn, DEV).seq == 0
        with client_for(platform, pki, "sp-labour") as client:
            assert sync.witness_audit(conn, client) == 0
            _records(2)
            assert sync.witness_audit(conn, client) == 2  # no signer: the bare head
            head = platform.store.audit_head("sp-labour")
            assert head is not None and head[0]["mac"] is None
            assert sync.witness_audit(conn, client, DEV) == 2  # nothing newer
            _records(1)
            assert sync.witness_audit(conn, client, DEV) == 3  # signed now
            head = platform.store.audit_head("sp-labour")
            assert head is not None and head[0]["mac"] == audit.latest(conn).mac  # type: ignore[union-attr]
    finally:
        conn.close()


# --- a default installation: no checkpoint key anywhere ----------------------------


def _keyless_env(platform: Platform, pki: Pki, store: Path) -> dict[str, str]:
    """A service point as installed: no audit key store, no key store at all."""
    return _env(platform, pki, store) | {"SSCARD_AUDIT_KEYSTORE": "", "SSCARD_KEYSTORE": ""}


def _enqueue(env: dict[str, str], card_number: str) -> None:
    r = CliRunner().invoke(
        cli,
        ["sync", "enqueue", "card.blocked", "-", "--service-point", "sp-labour"],
        env=env,
        input=json.dumps(blocked(card_number)),
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output


def test_a_default_installation_catches_a_cut_tail_without_any_key(
    platform: Platform, pki: Pki, tmp_path: Path
) -> None:
    store = tmp_path / "sp.db"
    env = _keyless_env(platform, pki, store)
    for n in range(3):  # state-changing, audited commands
        _enqueue(env, complete(f"C{n:07d}"))
    pushed = run(env, "--json", "sync", "push")
    assert pushed.exit_code == 0, pushed.output
    witnessed = json.loads(pushed.stdout)["audit_witnessed"]
    assert witnessed == _head(store) - 1  # the live head at push time; then push's own record
    head = platform.store.audit_head("sp-labour")
    assert head is not None and head[0]["seq"] == witnessed
    assert (head[0]["key_id"], head[0]["mac"]) == (None, None)  # witnessed unsigned
    assert _checkpoint_rows(store) == 0  # no key: nothing signed locally

    ok = run(env, "audit", "verify")
    assert ok.exit_code == 0, ok.output
    assert f"platform witnessed up to record {witnessed}" in ok.output

    _cut_after(store, witnessed - 2)
    cut = run(env, "audit", "verify")
    assert cut.exit_code == 1, cut.output
    assert (
        f"audit trail truncated: the platform witnessed record {witnessed} "
        f"but the local trail ends at {witnessed - 2}"
    ) in cut.output
    assert run(env, "audit", "verify", "--no-platform").exit_code == 0  # invisible locally

    _cut_after(store, witnessed - 2)  # the verify's own record too: the trail ends before it
    again = run(env, "sync", "push")  # the next push notices before sending anything
    assert again.exit_code == 1, again.output
    assert (
        f"audit trail truncated: the platform witnessed record {witnessed} "
        f"but the local trail ends at {witnessed - 2}"
    ) in again.output
    head = platform.store.audit_head("sp-labour")
    assert head is not None and head[0]["seq"] == witnessed


def test_push_notices_a_cut_tail_when_every_checkpoint_went_with_it(
    platform: Platform, pki: Pki, tmp_path: Path
) -> None:
    store = tmp_path / "sp.db"
    env = _keyless_env(platform, pki, store)  # checkpoints by hand only
    _enqueue(env, "C0000001Y")
    assert run(env, "audit", "checkpoint", "--keystore", "dev").exit_code == 0
    assert run(env, "sync", "push").exit_code == 0
    witnessed = platform.store.audit_head("sp-labour")[0]["seq"]  # type: ignore[index]
    _cut_after(store, 0)  # every record, every checkpoint
    assert _checkpoint_rows(store) == 0
    r = run(env, "sync", "push")
    assert r.exit_code == 1, r.output
    assert f"the platform witnessed record {witnessed} but the local trail ends at 0" in r.output


def _checkpoint_rows(store: Path) -> int:
    conn = sqlite3.connect(store)
    try:
        return int(conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone()[0])
    finally:
        conn.close()


def test_the_platform_witnesses_unsigned_heads_by_the_same_rules(
    platform: Platform, pki: Pki
) -> None:
    def bare(seq: int, head: str) -> dict[str, Any]:
        return audit.Checkpoint.unsigned(seq, head, "2025-01-01T00:00:00.000000Z").wire()

    h4, h6 = "44" * 32, "66" * 32
    status, answer = _post(platform, pki, {"checkpoint": bare(4, h4), "extends": None})
    assert (status, answer["status"], answer["checkpoint"]["mac"]) == (200, "witnessed", None)
    for body, words in (
        ({"checkpoint": bare(3, "33" * 32), "extends": None}, "goes backwards"),
        ({"checkpoint": bare(4, h6), "extends": None}, "forks"),
        ({"checkpoint": bare(6, h6), "extends": {"seq": 4, "hash": h6}}, "does not extend"),
    ):
        status, answer = _post(platform, pki, body)
        assert (status, answer["error"]) == (409, "audit_conflict"), answer
        assert words in answer["message"]
    half = bare(6, h6) | {"key_id": "ab" * 8}  # a key id without a signature
    assert _post(platform, pki, {"checkpoint": half, "extends": None})[0] == 400
    signed = {"checkpoint": _cp(6, h6), "extends": {"seq": 4, "hash": h4}}
    assert _post(platform, pki, signed)[1]["status"] == "witnessed"
    status, answer = _post(platform, pki, {"checkpoint": bare(6, h6), "extends": None})
    assert (status, answer["status"]) == (200, "unchanged")
