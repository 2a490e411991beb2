"""Client and reference platform over real mutual TLS on loopback (issue 8, art. 8-11, 15)."""

from __future__ import annotations

import http.client
import json
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from sscard import db
from sscard.errors import (
    PlatformAuthRefused,
    PlatformConfigError,
    PlatformUnavailable,
    ScopeRefused,
)
from sscard.exchange import inbox, outbox, sync
from sscard.exchange.client import PlatformClient
from sscard.exchange.events import Event, new_event_id, utc_text
from sscard.exchange.platform import Platform, PlatformConfig, load_config
from sscard.exchange.schema import message_problems
from sscard.layout.cardno import complete
from tests.exchange_support import (
    CONFIG,
    SSN,
    Pki,
    blocked,
    client_for,
    fill,
    foreign_pki,
    issued,
    open_store,
    pki,
    platform,
)

__all__ = ["foreign_pki", "pki", "platform"]  # fixtures


def _event(category: str, payload: dict[str, Any], sp: str = "sp-labour") -> Event:
    return Event(new_event_id(), sp, utc_text(), category, payload)


def _raw(platform: Platform, pki: Pki, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPSConnection("127.0.0.1", platform.port, context=pki.client("sp-labour"))
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    conn.request(method, path, body=data)
    response = conn.getresponse()
    status, answer = response.status, json.loads(response.read())
    conn.close()
    return status, answer


def test_push_stores_every_event_and_acks_each(
    platform: Platform, pki: Pki, tmp_path: Path
) -> None:
    conn = open_store(tmp_path / "sp.db")
    ids = fill(conn, 1234)
    with client_for(platform, pki, "sp-labour") as client:
        report = sync.push_pending(conn, client, batch_size=500, keep_results=True)
    assert (report.batches, report.stored, report.duplicate) == (3, 1234, 0)
    assert [r["id"] for r in report.results] == ids
    assert platform.store.event_ids() == ids
    assert outbox.stats(conn).pending == 0
    audit = [e for e in platform.store.audit_log("labour") if e["action"] == "push"]
    assert [e["detail"]["stored"] for e in audit] == [500, 500, 234]


def test_a_repeated_event_is_acknowledged_and_not_applied_twice(
    platform: Platform, pki: Pki
) -> None:
    events = [_event("card.issued", issued(i)) for i in range(3)]
    with client_for(platform, pki, "sp-labour") as client:
        first = client.push(events)
        again = client.push([events[1], _event("card.issued", issued(9)), events[1]])
    assert [r["status"] for r in first] == ["stored"] * 3
    assert [r["status"] for r in again] == ["duplicate", "stored", "duplicate"]
    assert again[0]["seq"] == first[1]["seq"]
    assert platform.store.count() == 4


def test_scope_refusal_is_403_and_stores_nothing(platform: Platform, pki: Pki) -> None:
    with client_for(platform, pki, "sp-police") as client, pytest.raises(ScopeRefused) as err:
        client.push(
            [
                _event("card.blocked", blocked("A0000001S"), "sp-police"),
                _event("card.issued", issued(1), "sp-police"),
            ]
        )
    assert err.value.problems == [
        ("/events/1/category", "department police has no agreement to push card.issued")
    ]
    assert platform.store.count() == 0
    [entry] = platform.store.audit_log("police")
    assert (entry["action"], entry["status"]) == ("push", 403)


def test_a_service_point_cannot_push_in_anothers_name(platform: Platform, pki: Pki) -> None:
    with client_for(platform, pki, "sp-police") as client, pytest.raises(ScopeRefused) as err:
        client.push([_event("card.blocked", blocked("A0000001S"), "sp-labour")])
    assert err.value.problems[0][0] == "/events/0/service_point"
    assert platform.store.count() == 0


def test_outbox_sets_refused_events_aside_and_delivers_the_rest(
    platform: Platform, pki: Pki, tmp_path: Path
) -> None:
    conn = open_store(tmp_path / "sp.db")
    with db.transaction(conn):
        ok = outbox.enqueue(conn, "card.blocked", blocked("A0000001S"), service_point="sp-police")
        refused = outbox.enqueue(conn, "card.issued", issued(1), service_point="sp-police")
        ok2 = outbox.enqueue(
            conn, "card.unblocked", {"card_number": "A0000001S"}, service_point="sp-police"
        )
    with client_for(platform, pki, "sp-police") as client:
        report = sync.push_pending(conn, client)
    assert [r["id"] for r in report.rejected] == [refused]
    assert "no agreement to push card.issued" in report.rejected[0]["reason"]
    assert platform.store.event_ids() == [ok, ok2]
    s = outbox.stats(conn)
    assert (s.pending, s.rejected, s.delivered) == (0, 1, 2)


def test_schema_errors_are_400_with_the_failing_path(platform: Platform, pki: Pki) -> None:
    good = _event("card.issued", issued(1)).to_wire()
    bad = _event("card.issued", issued(2) | {"card_serial": "xyz"}).to_wire()
    status, answer = _raw(platform, pki, "POST", "/v1/events", {"events": [good, bad]})
    assert status == 400
    assert answer["error"] == "invalid_request"
    assert answer["errors"] == [
        {
            "path": "/events/1/payload/card_serial",
            "message": "does not match the pattern ^[0-9A-F]{16}$",
            "event_id": bad["id"],
        }
    ]
    status, answer = _raw(platform, pki, "POST", "/v1/events", {"events": [], "extra": 1})
    assert status == 400
    assert {e["path"] for e in answer["errors"]} == {"/events", "/extra"}
    status, answer = _raw(platform, pki, "POST", "/v1/events", b"{not json")
    assert (status, answer["error"]) == (400, "invalid_json")
    status, answer = _raw(platform, pki, "GET", "/v1/events?after=-1")
    assert (status, answer["errors"][0]["path"]) == (400, "?after")
    assert _raw(platform, pki, "GET", "/v2/anything")[0] == 404
    assert platform.store.count() == 0


def test_pull_brings_entitled_updates_once_with_a_cursor(
    platform: Platform, pki: Pki, tmp_path: Path
) -> None:
    police = open_store(tmp_path / "police.db")
    labour = open_store(tmp_path / "labour.db")
    with db.transaction(police):
        for i in range(7):
            outbox.enqueue(
                police, "card.blocked", blocked(complete(f"B{i:07d}")), service_point="sp-police"
            )
        outbox.enqueue(
            police,
            "holder.changed",
            {
                "ssn": SSN,
                "card_number": "B0000001V",
                "changes": {"name": "王五"},
                "written_to_card": False,
            },
            service_point="sp-police",
        )
    fill(labour, 2)  # its own events are not sent back to it
    with client_for(platform, pki, "sp-police") as p, client_for(platform, pki, "sp-labour") as c:
        sync.push_pending(police, p)
        sync.push_pending(labour, c)
        first = sync.pull_updates(labour, c, limit=3)  # three pages
        with db.transaction(police):
            outbox.enqueue(
                police, "card.unblocked", {"card_number": "B0000003R"}, service_point="sp-police"
            )
        sync.push_pending(police, p)
        second = sync.pull_updates(labour, c, limit=3)
        third = sync.pull_updates(labour, c)
    assert (first.items, first.blocked, first.holder_updates) == (8, 7, 1)
    assert (second.items, second.unblocked, third.items) == (1, 1, 0)
    assert sorted(b.card_number for b in inbox.block_list(labour)) == [
        complete(f"B{i:07d}") for i in range(7) if i != 3
    ]
    [update] = inbox.pending_updates(labour, "B0000001V")
    assert update.changes == {"name": "王五"}
    with (
        pytest.raises(ScopeRefused, match="no agreement to pull"),
        client_for(platform, pki, "sp-police") as p,
    ):
        p.pull(0)


def test_agreement_names_department_and_scopes(platform: Platform, pki: Pki) -> None:
    with client_for(platform, pki, "sp-police") as client:
        assert client.agreement() == {
            "service_point": "sp-police",
            "department": "police",
            "push": ["card.blocked", "card.unblocked", "holder.changed"],
            "pull": [],
        }


def test_unknown_client_certificate_is_refused_at_the_handshake(
    platform: Platform, pki: Pki, foreign_pki: Pki
) -> None:
    ctx = foreign_pki.client("sp-labour")
    ctx.load_verify_locations(cafile=str(pki.files["ca"].cert))  # it trusts the platform
    raw = ssl.create_connection(("127.0.0.1", platform.port))
    with pytest.raises(ssl.SSLError, match=r"UNKNOWN_CA|unknown ca|CERTIFICATE"):
        tls = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        tls.sendall(b"GET /v1/agreement HTTP/1.1\r\nHost: x\r\n\r\n")
        tls.recv(100)  # TLS 1.3: the server's alert arrives after the client's Finished
    client = PlatformClient(platform.url, ctx, timeout=5)
    with pytest.raises(PlatformAuthRefused, match="refused the TLS handshake"):
        client.agreement()
    _wait_for(lambda: len(_refusals(platform)) >= 2)
    assert platform.store.count() == 0
    assert all(e["department"] is None for e in _refusals(platform))


def test_client_without_certificate_is_refused(platform: Platform, pki: Pki) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.files["ca"].cert))
    with pytest.raises(PlatformAuthRefused):
        PlatformClient(platform.url, ctx, timeout=5).agreement()


def test_certificate_of_no_department_gets_403(platform: Platform, pki: Pki) -> None:
    with (
        client_for(platform, pki, "sp-stranger") as client,
        pytest.raises(PlatformAuthRefused, match="no department"),
    ):
        client.push([_event("card.blocked", blocked("A0000001S"), "sp-stranger")])
    assert platform.store.count() == 0


def test_platform_not_trusted_by_the_client(platform: Platform, pki: Pki, foreign_pki: Pki) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(foreign_pki.files["ca"].cert))
    ctx.load_cert_chain(str(pki.files["sp-labour"].cert), str(pki.files["sp-labour"].key))
    with pytest.raises(PlatformAuthRefused, match="not trusted"):
        PlatformClient(platform.url, ctx, timeout=5).agreement()


def test_platform_down_is_unavailable_and_counted(pki: Pki, tmp_path: Path) -> None:
    conn = open_store(tmp_path / "sp.db")
    fill(conn, 3)
    client = PlatformClient("https://127.0.0.1:1", pki.client("sp-labour"), timeout=2)
    with pytest.raises(PlatformUnavailable, match="cannot reach"):
        sync.push_pending(conn, client)
    s = outbox.stats(conn)
    assert s.pending == 3 and s.last_error is not None
    assert conn.execute("SELECT min(attempts) FROM outbox_events").fetchone()[0] == 1


def test_run_backs_off_while_down_then_delivers(pki: Pki, tmp_path: Path) -> None:
    conn = open_store(tmp_path / "sp.db")
    ids = fill(conn, 10)
    store = tmp_path / "platform.db"
    up = Platform(PlatformConfig.from_data(CONFIG), store, pki.server())
    port = up.port
    up.stop()  # the port is known but nothing listens
    waits: list[float] = []
    holder: dict[str, Platform] = {}

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            holder["p"] = Platform(
                PlatformConfig.from_data(CONFIG), store, pki.server(), port=port
            ).start()

    client = PlatformClient(f"https://127.0.0.1:{port}", pki.client("sp-labour"), timeout=2)
    backoff = sync.Backoff(base=1.0, cap=3.0)
    failed = sync.run(conn, client, period=60, cycles=4, backoff=backoff, sleep=sleep)
    holder["p"].stop()
    assert failed == 3
    assert 0.5 <= waits[0] <= 1 and 1 <= waits[1] <= 2 and 1.5 <= waits[2] <= 3
    assert outbox.stats(conn).pending == 0
    from sscard.exchange.platform import PlatformStore

    assert PlatformStore(store).event_ids() == ids


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    b = sync.Backoff(base=2, cap=30)
    delays = [b.next_delay() for _ in range(8)]
    ceilings = [2, 4, 8, 16, 30, 30, 30, 30]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len({round(d, 6) for d in delays[4:]}) > 1  # jittered, not lock-step
    b.reset()
    assert b.next_delay() <= 2


def test_config_errors_name_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "platform.toml"
    bad.write_text('[departments.labour]\nclients = ["sp-1"]\npush = ["card.stolen"]\n')
    with pytest.raises(PlatformConfigError) as err:
        load_config(bad)
    assert {p for p, _ in err.value.problems} == {
        "/departments/labour/push/0",
        "/departments/labour/pull",
    }
    twice = {
        "departments": {
            "a": {"clients": ["x"], "push": [], "pull": []},
            "b": {"clients": ["x"], "push": [], "pull": []},
        }
    }
    with pytest.raises(PlatformConfigError, match="x is also in a"):
        PlatformConfig.from_data(twice)


def _refusals(platform: Platform) -> list[dict[str, Any]]:
    return [e for e in platform.store.audit_log() if e["action"] == "handshake_refused"]


def _wait_for(condition: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_malformed_bodies_are_400_never_a_closed_connection(platform: Platform, pki: Pki) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    status, answer = _raw(platform, pki, "POST", "/v1/events", deep)
    assert (status, answer["error"]) == (400, "invalid_json")
    assert "nested too deeply" in answer["message"]
    nested: Any = "x"
    for _ in range(900):
        nested = [nested]
    event = _event("card.issued", issued(1)).to_wire()
    for body in (
        {"events": [event | {"payload": nested}]},
        {"events": nested},
        {"events": [event | {"id": "\ud800"}]},
        {"events": [event | {"payload": issued(1) | {"card_number": "\udcff"}}]},
    ):
        raw = json.dumps(body).encode()
        status, answer = _raw(platform, pki, "POST", "/v1/events", raw)
        assert status == 400, (status, answer)
        assert message_problems("error", answer) == []
    for raw in (b"\xff\xfe", b'{"events": [1e999999]}', b'{"events": NaN}', b"1" * 5000):
        status, answer = _raw(platform, pki, "POST", "/v1/events", raw)
        assert status == 400, (raw[:20], status, answer)
    # the connection stays usable after each refusal
    conn = http.client.HTTPSConnection("127.0.0.1", platform.port, context=pki.client("sp-labour"))
    for _ in range(2):
        conn.request("POST", "/v1/events", body=deep)
        response = conn.getresponse()
        assert response.status == 400
        response.read()
    conn.request("GET", "/v1/agreement")
    assert conn.getresponse().status == 200
    conn.close()
    assert platform.store.count() == 0


def test_a_refusal_lists_at_most_100_problems_and_counts_the_rest(
    platform: Platform, pki: Pki
) -> None:
    bad = [_event("card.issued", issued(i) | {"card_serial": "xyz"}).to_wire() for i in range(1001)]
    status, answer = _raw(platform, pki, "POST", "/v1/events", {"events": bad})
    assert (status, answer["error"]) == (400, "invalid_request")
    assert len(answer["errors"]) == 100
    assert answer["errors_omitted"] == 1002 - 100  # 1001 bad serials + the batch size
    assert message_problems("error", answer) == []
    assert "1002 problem(s)" in answer["message"]
    assert platform.store.count() == 0


def test_a_new_id_sent_twice_in_one_batch_is_stored_once(platform: Platform, pki: Pki) -> None:
    a, b = _event("card.issued", issued(1)), _event("card.issued", issued(2))
    with client_for(platform, pki, "sp-labour") as client:
        results = client.push([a, a, b])
    assert [r["status"] for r in results] == ["stored", "duplicate", "stored"]
    assert results[0]["seq"] == results[1]["seq"] < results[2]["seq"]
    assert platform.store.event_ids() == [a.id, b.id]


def test_a_lone_surrogate_where_the_schema_allows_any_text_is_400(
    platform: Platform, pki: Pki
) -> None:
    payload = {"ssn": SSN, "card_number": "A0000001S", "written_to_card": False}
    event = _event("holder.changed", payload | {"changes": {"name": "\ud800"}}).to_wire()
    body = {"events": [event]}
    for raw in (json.dumps(body).encode(), json.dumps(body).encode("utf-16")):
        status, answer = _raw(platform, pki, "POST", "/v1/events", raw)
        assert (status, answer["error"]) == (400, "invalid_json"), answer
    assert platform.store.count() == 0
