"""``sscard sync`` and ``sscard exchange-platform`` as an operator and a monitor use them."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner, Result

from sscard import db
from sscard.cli.main import cli
from sscard.exchange import outbox
from sscard.exchange.platform import Platform
from tests.exchange_support import Pki, blocked, client_env, issued, open_store, pki, platform
from tests.operatorkit import login_in_store

__all__ = ["pki", "platform"]  # fixtures


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, input=stdin, catch_exceptions=False)


def test_status_exits_1_and_lists_events_older_than_24_hours(tmp_path: Path) -> None:
    store = tmp_path / "sscard.db"
    empty = run("sync", "status", "--store", str(store))
    assert empty.exit_code == 0 and "0 pending" in empty.output
    conn = open_store(store)
    old = datetime.now(UTC) - timedelta(hours=25)
    with db.transaction(conn):
        late = outbox.enqueue(conn, "card.issued", issued(1), service_point="sp-1", occurred_at=old)
        outbox.enqueue(conn, "card.issued", issued(2), service_point="sp-1")
    human = run("sync", "status", "--store", str(store))
    assert human.exit_code == 1
    assert "VIOLATION   1 event(s)" in human.output and late in human.output
    as_json = run("--json", "sync", "status", "--store", str(store))
    assert as_json.exit_code == 1
    data = json.loads(as_json.output)
    assert (data["pending"], data["violation_count"]) == (2, 1)
    assert data["violations"][0]["id"] == late
    assert data["oldest_age_seconds"] > 25 * 3600 - 5


def test_enqueue_push_pull_inbox_through_the_cli(
    platform: Platform, pki: Pki, tmp_path: Path
) -> None:
    police = client_env(platform.url, pki, "sp-police", tmp_path / "police.db")
    labour = client_env(platform.url, pki, "sp-labour", tmp_path / "labour.db")
    queued = run(
        "--json",
        "sync",
        "enqueue",
        "card.blocked",
        "-",
        "--service-point",
        "sp-police",
        env=police,
        stdin=json.dumps(blocked("C0000001Y", "stolen")),
    )
    assert queued.exit_code == 0
    event_id = json.loads(queued.output)["id"]
    pushed = run("--json", "sync", "push", "--details", env=police)
    assert pushed.exit_code == 0, pushed.output
    assert json.loads(pushed.output)["results"] == [{"id": event_id, "status": "stored"}]
    again = run("sync", "push", env=police)
    assert "Pushed 0 event(s)" in again.output
    pulled = run("sync", "pull", env=labour)
    assert pulled.exit_code == 0 and "1 block(s)" in pulled.output
    shown = run("--json", "sync", "inbox", env=labour)
    [entry] = json.loads(shown.output)["block_list"]
    assert (entry["card_number"], entry["reason"], entry["event_id"]) == (
        "C0000001Y",
        "stolen",
        event_id,
    )
    audit = run(
        "--json",
        "exchange-platform",
        "audit",
        "--store",
        str(platform.store.path),
        "--department",
        "police",
    )
    # each push also has the platform witness the live head of its audit trail
    assert [e["action"] for e in json.loads(audit.output)] == [
        "push",
        "audit_head",
        "audit_witness",
        "audit_head",
        "audit_witness",
    ]


def test_push_reports_rejected_events_with_exit_1(
    platform: Platform, pki: Pki, tmp_path: Path
) -> None:
    env = client_env(platform.url, pki, "sp-police", tmp_path / "police.db")
    run(
        "sync",
        "enqueue",
        "card.issued",
        "-",
        "--service-point",
        "sp-police",
        env=env,
        stdin=json.dumps(issued(1)),
    )
    result = run("sync", "push", env=env)
    assert result.exit_code == 1
    assert "1 rejected" in result.output and "no agreement to push card.issued" in result.output


def test_enqueue_refuses_bad_payload_with_exit_7_and_queues_nothing(tmp_path: Path) -> None:
    store = tmp_path / "sscard.db"
    payload = {"card_serial": "0011223344556677", "card_number": "A0000001S", "pin": "123456"}
    result = run(
        "--json",
        "sync",
        "enqueue",
        "pin.reset",
        "-",
        "--service-point",
        "sp-1",
        "--store",
        str(store),
        stdin=json.dumps(payload),
        env={"SSCARD_OPERATOR_TOKEN": str(login_in_store(store))},  # an operator of that store
    )
    assert result.exit_code == 7
    assert "123456" not in result.output
    assert run("--json", "sync", "status", "--store", str(store)).output.count('"pending": 0') == 1


def test_push_with_platform_down_exits_5_and_keeps_events(pki: Pki, tmp_path: Path) -> None:
    store = tmp_path / "sscard.db"
    conn = open_store(store)
    with db.transaction(conn):
        outbox.enqueue(conn, "card.issued", issued(1), service_point="sp-labour")
    env = {
        "SSCARD_PLATFORM_URL": "https://127.0.0.1:1",
        "SSCARD_EXCHANGE_CERT": str(pki.files["sp-labour"].cert),
        "SSCARD_EXCHANGE_KEY": str(pki.files["sp-labour"].key),
        "SSCARD_EXCHANGE_CA": str(pki.files["ca"].cert),
        "SSCARD_OPERATOR_TOKEN": str(login_in_store(store)),  # an operator of that store
    }
    result = run("sync", "push", "--store", str(store), env=env)
    assert result.exit_code == 5 and "cannot reach the platform" in result.output
    assert outbox.stats(conn).pending == 1


def test_init_ca_writes_private_keys_0600_and_adds_clients_later(tmp_path: Path) -> None:
    pki_dir = tmp_path / "pki"
    assert run("exchange-platform", "init-ca", str(pki_dir), "--client", "sp-1").exit_code == 0
    ca_before = (pki_dir / "ca.pem").read_bytes()
    assert run("exchange-platform", "init-ca", str(pki_dir), "--client", "sp-2").exit_code == 0
    assert (pki_dir / "ca.pem").read_bytes() == ca_before
    for name in ("ca-key.pem", "server-key.pem", "sp-1-key.pem", "sp-2-key.pem"):
        assert stat.S_IMODE((pki_dir / name).stat().st_mode) == 0o600, name
    bad = run("exchange-platform", "init-ca", str(pki_dir), "--client", "bad name")
    assert bad.exit_code == 7


def test_serve_refuses_a_bad_config_with_the_path(tmp_path: Path, pki: Pki) -> None:
    config = tmp_path / "platform.json"
    config.write_text(json.dumps({"departments": {"labour": {"clients": [], "push": ["x"]}}}))
    result = run(
        "exchange-platform",
        "serve",
        "--config",
        str(config),
        "--tls-dir",
        str(pki.dir),
        "--port",
        "0",
        "--store",
        str(tmp_path / "p.db"),
    )
    assert result.exit_code == 7
    assert "/departments/labour/push/0" in result.output
    assert "/departments/labour/pull" in result.output
