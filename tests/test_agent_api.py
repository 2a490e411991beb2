"""The agent's API as a business system sees it (docs/agent.md).

The agent runs in real uvicorn on a real loopback socket (a thread of this process,
so the test can use the emulated PIN pad: press keys, pull the card); the clients
are ones we did not write: httpx for HTTP, the ``websockets`` library for the
WebSocket. Staff actions use an emulated PSAM (``psam:virtual:PATH``) as the key
store, never the development key store. Covered: every endpoint, Host / Origin /
token checks (WebSocket too), operator login / logout / refusals and their audit
records, the PIN rate limit, concurrent callers, no PIN in any log, a card pulled
mid-call.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from sscard import audit
from sscard.agent.guard import RateLimiter, load_token, parse_origin
from sscard.agent.service import CardService
from sscard.applets.cos import EmulatedCard
from sscard.applets.factory import new_psam_file
from sscard.applets.pinpad import EmulatedPinPad, PullAt
from sscard.auth import OperatorStore
from sscard.errors import InvalidInput, TooManyPinAttempts
from sscard.issuance.psam import issue_psam
from sscard.keys.provider import open_security_module
from sscard.layout import load_profile
from sscard.layout.model import Profile
from sscard.transport import InProcessTransport
from tests.agentkit import TOKEN, pad_reader, running_agent, service
from tests.cardkit import PIN, SAMPLE_HOLDER, dev_module, issued_card, pin_works
from tests.operatorkit import PASSWORD

NEW_PIN = "246801"
ORIGIN = "https://biz.example"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _psam(path: Path) -> str:
    """An emulated PSAM issued for the sample holder's city: the agent's key store."""
    psam = new_psam_file(path, bytes.fromhex("5053414D00000018"), profile_name="national-3")
    transport = InProcessTransport(psam)
    city = str(SAMPLE_HOLDER["region"])
    issue_psam(
        transport,
        dev_module("national-3"),
        load_profile("national-3"),
        kind="service",
        city=city,
        terminal=city + "000001",
    )
    transport.disconnect()
    return f"psam:virtual:{path}"


@dataclass
class Rig:
    card: EmulatedCard
    pad: EmulatedPinPad
    store: Path
    service: CardService
    url: str
    http: httpx.Client

    def post(self, path: str, body: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        return self.http.post(path, json=body if body is not None else {}, **kw)

    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/api/ws"


def _operators(store: Path) -> None:
    operators = OperatorStore.open(store)
    try:
        operators.add("desk-1", "Service desk 1", "service", PASSWORD, cost=10)
        operators.add("kiosk-1", "Kiosk 1", "kiosk", PASSWORD, cost=10)
    finally:
        operators.close()


@pytest.fixture
def rig(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Rig]:
    """An issued card in the emulated PIN pad; the agent with the PSAM's keys."""
    options: dict[str, Any] = getattr(request, "param", {})
    card = issued_card()
    pad = EmulatedPinPad(card, "emulated PIN pad")
    store = tmp_path / "sscard.db"
    _operators(store)
    spec = _psam(tmp_path / "psam.img")

    def keys(profile: Profile) -> Any:
        return open_security_module(
            spec, slots=profile.key_scheme.slots, production=False, secret=lambda _l: ""
        )

    svc = service(pad_reader(pad), store, keys=keys, busy_wait=options.get("busy_wait", 0.5))
    with (
        running_agent(
            svc, store, origins=(ORIGIN,), pin_attempts=options.get("pin_attempts", 50)
        ) as url,
        httpx.Client(base_url=url, headers=AUTH, timeout=30) as http,
    ):
        yield Rig(card, pad, store, svc, url, http)


def _records(store: Path, action: str) -> list[audit.AuditRecord]:
    operators = OperatorStore.open(store)
    try:
        return audit.records(operators.conn, action=action)
    finally:
        operators.close()


# --- every endpoint ------------------------------------------------------------------------


def test_health_needs_no_token_and_touches_no_card(rig: Rig) -> None:
    answer = httpx.get(rig.url + "/api/health").json()
    assert answer["code"] == 0 and answer["data"]["version"]
    assert rig.http.get("/api/status").json()["data"]["card_present"] is True


def test_read_basic_information_fields_and_the_pipe_line(rig: Rig) -> None:
    for kind in (None, 1, 3, 4):
        answer = rig.post("/api/iReadCardBas", None if kind is None else {"type": kind})
        assert answer.status_code == 200
        data = answer.json()["data"]
        assert data["name"] == SAMPLE_HOLDER["name"]
        fields = data["line"].split("|")
        assert fields[0] == data["region"] and fields[1] == data["ssn"]
        assert fields[4] == data["name"] and len(fields) == 12
    wrong = rig.post("/api/iReadCardBas", {"type": 2}).json()
    assert wrong["code"] == -1 and wrong["error"] == "WrongCardType"
    for bad in ({"type": 5}, {"type": "1"}, {"type": True}, {"kind": 1}):
        refused = rig.post("/api/iReadCardBas", bad)
        assert refused.status_code == 400, bad
        assert refused.json()["code"] == -23 and refused.json()["error"] == "BadRequest"


def test_pin_status_verify_and_change_with_host_pins(rig: Rig) -> None:
    status = rig.http.get("/api/pin/status").json()["data"]
    assert status["tries_left"] == status["try_limit"] and status["pin_pad"] is True
    assert rig.post("/api/iVerifyPIN", {"pin": PIN}).json()["data"]["verified"] is True
    wrong = rig.post("/api/iVerifyPIN", {"pin": "000000"}).json()
    assert (wrong["code"], wrong["error"], wrong["tries_left"]) == (-51, "PinIncorrect", 5)
    assert wrong["national_message"]
    changed = rig.post("/api/iChangePIN", {"old": PIN, "new": NEW_PIN}).json()
    assert changed["data"]["changed"] is True and changed["data"]["tries_left"] == 6
    assert pin_works(rig.card, NEW_PIN)
    weak = rig.post("/api/iChangePIN", {"old": NEW_PIN, "new": "111111"}).json()
    assert weak["code"] == -23 and weak["problems"]
    half = rig.post("/api/iChangePIN", {"old": NEW_PIN})
    assert half.status_code == 400 and "'new'" in half.json()["message"]
    assert rig.post("/api/iVerifyPIN", {"pin": 135790}).status_code == 400


def test_verify_and_change_on_the_pin_pad(rig: Rig) -> None:
    rig.pad.press(PIN)
    answer = rig.post("/api/iVerifyPIN").json()
    assert answer["data"] == {"verified": True, "pin_pad": True, "tries_left": 6, "try_limit": 6}
    rig.pad.press(PIN, NEW_PIN, NEW_PIN)
    assert rig.post("/api/iChangePIN").json()["data"]["changed"] is True
    assert pin_works(rig.card, NEW_PIN)


def test_answers_in_the_callers_language(rig: Rig) -> None:
    zh = rig.post("/api/iVerifyPIN", {"pin": "000000"}, params={"lang": "zh_CN"}).json()
    assert "密码" in zh["message"] and zh["national_message"] == "PIN校验失败"
    header = {"Accept-Language": "fr;q=1, zh-CN;q=0.8, en;q=0.5"}
    assert (
        "密码" in rig.post("/api/iVerifyPIN", {"pin": "000000"}, headers=header).json()["message"]
    )
    en = rig.post("/api/iVerifyPIN", {"pin": "000000"}, headers={"Accept-Language": "en"}).json()
    assert "PIN" in en["message"] and "密码" not in en["message"]


def test_malformed_requests_are_400_and_unknown_paths_404(rig: Rig) -> None:
    for content in (b"{", b"[1]", b'"x"', json.dumps({"pin": PIN, "x": 1}).encode()):
        answer = rig.http.post("/api/iVerifyPIN", content=content)
        assert answer.status_code == 400, content
        assert answer.json()["error"] == "BadRequest" and PIN not in answer.text
    assert rig.http.post("/api/iVerifyPIN", content=b"x" * 20000).status_code == 400
    missing = rig.http.get("/api/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "NotFound"
    assert rig.http.get("/api/iVerifyPIN").status_code == 405
    assert rig.http.get("/kiosk/").status_code == 404  # the kiosk is off
    assert rig.http.get("/api/status").json()["data"]["pin_pad"] in (True, None)
    assert pin_works(rig.card, PIN)


def test_an_unexpected_error_is_500_without_its_text(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, Any]:
        raise ValueError(f"secret {PIN}")

    monkeypatch.setattr(rig.service, "status", broken)
    with caplog.at_level(logging.DEBUG):
        answer = rig.http.get("/api/status")
    assert answer.status_code == 500
    assert answer.json()["error"] == "InternalError" and answer.json()["code"] == -28416
    assert PIN not in answer.text and PIN not in caplog.text
    assert "ValueError" in caplog.text


# --- the guard ------------------------------------------------------------------------------


PROTECTED = [
    ("GET", "/api/status"),
    ("POST", "/api/iReadCardBas"),
    ("GET", "/api/pin/status"),
    ("POST", "/api/iVerifyPIN"),
    ("POST", "/api/iChangePIN"),
    ("POST", "/api/iReloadPIN"),
    ("POST", "/api/iUnblockPIN"),
    ("POST", "/api/operator/login"),
    ("POST", "/api/operator/logout"),
]


def test_every_card_endpoint_needs_the_api_token(rig: Rig) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        for method, path in PROTECTED:
            answer = httpx.request(method, rig.url + path, headers=headers, json={"pin": "000000"})
            assert answer.status_code == 401, (method, path, headers)
            assert answer.json()["error"] == "Unauthorized" and answer.json()["code"] == -27010
    lower = {"Authorization": f"bearer {TOKEN}"}
    assert httpx.get(rig.url + "/api/status", headers=lower).status_code == 200
    assert rig.http.get("/api/pin/status").json()["data"]["tries_left"] == 6  # no try spent


def test_host_header_must_be_the_agents_loopback_address(rig: Rig) -> None:
    port = rig.url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1:1", f"10.0.0.1:{port}"):
        answer = rig.http.get("/api/status", headers={"Host": host})
        assert answer.status_code == 403, host
        assert answer.json()["error"] == "Forbidden"
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert rig.http.get("/api/status", headers={"Host": host}).status_code == 200


def test_origins_cors_and_a_simple_post_from_a_foreign_page(rig: Rig) -> None:
    port = rig.url.rsplit(":", 1)[1]
    allowed = rig.http.get("/api/status", headers={"Origin": ORIGIN})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    foreign = rig.post(
        "/api/iVerifyPIN", {"pin": "000000"}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403 and "access-control-allow-origin" not in foreign.headers
    assert "null" not in ORIGIN
    assert rig.post("/api/iVerifyPIN", {"pin": PIN}, headers={"Origin": "null"}).status_code == 403
    assert rig.http.get("/api/pin/status").json()["data"]["tries_left"] == 6  # never ran
    own = rig.http.get("/api/status", headers={"Origin": f"http://127.0.0.1:{port}"})
    assert own.status_code == 200
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
        "Access-Control-Request-Private-Network": "true",
    }
    ok = httpx.options(rig.url + "/api/iReadCardBas", headers=preflight)
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    assert ok.headers["access-control-allow-private-network"] == "true"
    refused = httpx.options(
        rig.url + "/api/iReadCardBas", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers


def test_token_file_is_private_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "agent.token"
    token = load_token(path)
    assert len(token) >= 43 and path.stat().st_mode & 0o777 == 0o600
    assert load_token(path) == token
    rotated = load_token(path, rotate=True)
    assert rotated != token and load_token(path) == rotated
    path.chmod(0o644)
    with pytest.raises(InvalidInput, match="readable by others"):
        load_token(path)
    with pytest.raises(InvalidInput):
        load_token(tmp_path / "none", create=False)
    assert parse_origin("HTTPS://Biz.Example/") == "https://biz.example"
    for bad in ("biz.example", "https://biz.example/page", "ftp://x", "https://a:b@x"):
        with pytest.raises(InvalidInput):
            parse_origin(bad)


def test_rate_limiter_window() -> None:
    now = [100.0]
    limiter = RateLimiter(2, 10.0, clock=lambda: now[0])
    limiter.acquire()
    stamp = limiter.acquire()
    with pytest.raises(TooManyPinAttempts) as refused:
        limiter.acquire()
    assert 9.9 <= refused.value.retry_after <= 10.0
    limiter.release(stamp)
    limiter.acquire()
    now[0] += 10.0
    limiter.acquire()


# --- the PIN rate limit -----------------------------------------------------------------------


@pytest.mark.parametrize("rig", [{"pin_attempts": 3}], indirect=True)
def test_pin_attempts_are_rate_limited(rig: Rig) -> None:
    for _ in range(3):
        assert rig.post("/api/iVerifyPIN", {"pin": PIN}).json()["code"] == 0
    refused = rig.post("/api/iVerifyPIN", {"pin": "000000"})
    assert refused.status_code == 429
    body = refused.json()
    assert (body["code"], body["error"]) == (-28416, "TooManyPinAttempts")
    assert 0 < body["retry_after"] <= 60 and int(refused.headers["retry-after"]) >= 1
    assert rig.post("/api/iChangePIN", {"old": "000000", "new": NEW_PIN}).status_code == 429
    assert rig.http.get("/api/pin/status").json()["data"]["tries_left"] == 6  # card untouched
    assert rig.post("/api/iReadCardBas").json()["code"] == 0  # reads are not limited


# --- concurrent callers, a pulled card --------------------------------------------------------


@pytest.mark.parametrize("rig", [{"busy_wait": 0.05}], indirect=True)
def test_concurrent_callers_get_the_card_or_a_clear_busy_answer(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    transmit = rig.pad.transmit

    def slow(apdu: bytes) -> bytes:  # a card that takes its time: callers overlap for sure
        time.sleep(0.01)
        return transmit(apdu)

    monkeypatch.setattr(rig.pad, "transmit", slow)
    barrier = threading.Barrier(8)
    seen: set[int] = set()

    def call(_i: int) -> httpx.Response:
        with httpx.Client(base_url=rig.url, headers=AUTH, timeout=30) as client:
            barrier.wait()
            return client.post("/api/iReadCardBas", json={})

    for _round in range(3):
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(call, range(8)))
        codes = [a.json()["code"] for a in answers]
        assert set(codes) <= {0, -12}, codes
        assert 0 in codes
        seen.update(codes)
        for answer in answers:
            body = answer.json()
            if body["code"] == 0:
                assert answer.status_code == 200 and body["data"]["name"] == SAMPLE_HOLDER["name"]
            else:
                assert answer.status_code == 409 and body["error"] == "CardInUse"
                assert body["retry_after"] > 0 and int(answer.headers["retry-after"]) >= 1
    assert seen == {0, -12}
    # the card is as it was: readable, the PIN and its counter untouched
    assert rig.post("/api/iReadCardBas").json()["code"] == 0
    assert rig.http.get("/api/pin/status").json()["data"]["tries_left"] == 6
    assert pin_works(rig.card, PIN)


def test_a_card_pulled_mid_verify_answers_no_card_and_stays_consistent(rig: Rig) -> None:
    rig.pad.press(PIN)
    rig.pad.pull_card(PullAt.APDU)
    pulled = rig.post("/api/iVerifyPIN").json()
    assert pulled["code"] == -2, pulled
    absent = rig.post("/api/iReadCardBas").json()
    assert absent["code"] == -2
    rig.pad.insert(rig.card)
    assert rig.post("/api/iVerifyPIN", {"pin": PIN}).json()["code"] == 0
    assert rig.http.get("/api/pin/status").json()["data"]["tries_left"] == 6


def test_a_card_pulled_mid_change_answers_no_card_and_one_pin_works(rig: Rig) -> None:
    rig.pad.press(PIN, NEW_PIN, NEW_PIN)
    rig.pad.pull_card(PullAt.APDU)
    assert rig.post("/api/iChangePIN").json()["code"] == -2
    rig.pad.insert(rig.card)
    status = rig.http.get("/api/pin/status").json()["data"]
    assert not status["blocked"]
    assert pin_works(rig.card, PIN) != pin_works(rig.card, NEW_PIN)


# --- no PIN in any log -------------------------------------------------------------------------


def test_no_pin_in_any_log(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        rig.post("/api/iVerifyPIN", {"pin": PIN})
        rig.post("/api/iVerifyPIN", {"pin": "000000"})
        rig.post("/api/iChangePIN", {"old": PIN, "new": NEW_PIN})
        rig.post("/api/iChangePIN", {"old": "975310"})
        rig.post("/api/iVerifyPIN", {"pin": NEW_PIN, "x": 1})
    text = caplog.text
    assert "POST /api/iVerifyPIN 200" in text and "POST /api/iChangePIN 400" in text
    for secret in (PIN, NEW_PIN, "975310", TOKEN):
        assert secret not in text


# --- operators -----------------------------------------------------------------------------------


def _login(rig: Rig, operator: str, password: str = PASSWORD) -> httpx.Response:
    return rig.post("/api/operator/login", {"operator": operator, "password": password})


def test_operator_login_logout_and_refusals_are_audited(rig: Rig) -> None:
    refused = _login(rig, "desk-1", "hunter2-not-it")
    assert refused.status_code == 401 and refused.json()["error"] == "LoginFailed"
    assert "hunter2" not in refused.text
    records = _records(rig.store, "operator.login")
    assert [(r.operator, r.outcome) for r in records] == [("desk-1", "refused")]
    assert _login(rig, "desk-1").status_code == 200
    answer = _login(rig, "desk-1").json()["data"]
    assert answer["operator"]["id"] == "desk-1" and answer["operator"]["role"] == "service"
    assert len(answer["session"]) == 64 and answer["expires"]
    session = answer["session"]
    assert _records(rig.store, "operator.login")[-1].outcome == "ok"
    assert rig.post("/api/operator/login", {"operator": "desk-1"}).status_code == 400
    out = rig.post("/api/operator/logout", headers={"X-Sscard-Operator": session})
    assert out.json()["data"]["logged_out"] == "desk-1"
    assert [r.outcome for r in _records(rig.store, "operator.logout")] == ["ok"]
    after = rig.post("/api/iUnblockPIN", headers={"X-Sscard-Operator": session})
    assert after.status_code == 401 and after.json()["error"] == "NotLoggedIn"


def test_staff_reload_and_unblock_with_the_psam(rig: Rig) -> None:
    nobody = rig.post("/api/iReloadPIN", {"new": NEW_PIN})
    assert nobody.status_code == 401 and nobody.json()["error"] == "NotLoggedIn"
    kiosk = _login(rig, "kiosk-1").json()["data"]["session"]
    refused = rig.post("/api/iReloadPIN", {"new": NEW_PIN}, headers={"X-Sscard-Operator": kiosk})
    assert refused.status_code == 403 and refused.json()["error"] == "NotAuthorized"
    assert [(r.operator, r.outcome) for r in _records(rig.store, "pin.reset")] == [
        (None, "refused"),
        ("kiosk-1", "refused"),
    ]
    assert pin_works(rig.card, PIN)

    desk = {"X-Sscard-Operator": _login(rig, "desk-1").json()["data"]["session"]}
    assert rig.post("/api/iReloadPIN", {}, headers=desk).status_code == 400
    reloaded = rig.post("/api/iReloadPIN", {"new": NEW_PIN}, headers=desk).json()
    assert reloaded["code"] == 0 and reloaded["data"]["tries_left"] == 6
    assert NEW_PIN not in json.dumps(reloaded)
    assert pin_works(rig.card, NEW_PIN)
    last = _records(rig.store, "pin.reset")[-1]
    assert (last.operator, last.outcome) == ("desk-1", "ok")

    for _ in range(6):
        rig.post("/api/iVerifyPIN", {"pin": "000000"})
    blocked = rig.post("/api/iVerifyPIN", {"pin": NEW_PIN}).json()
    assert blocked["code"] == -52 and blocked["error"] == "PinBlocked"
    unblocked = rig.post("/api/iUnblockPIN", headers=desk).json()
    assert unblocked["code"] == 0 and unblocked["data"]["tries_left"] == 6
    assert rig.post("/api/iVerifyPIN", {"pin": NEW_PIN}).json()["code"] == 0
    assert _records(rig.store, "pin.unblock")[-1].outcome == "ok"


# --- WebSocket ---------------------------------------------------------------------------


def _ws(rig: Rig, **kw: Any) -> ClientConnection:
    return connect(rig.ws_url(), open_timeout=10, **kw)


def _next(ws: ClientConnection, kind: str, timeout: float = 10) -> dict[str, Any]:
    while True:
        message = json.loads(ws.recv(timeout))
        if message["type"] == kind:
            return dict(message)


def test_websocket_origin_is_checked_at_the_handshake(rig: Rig) -> None:
    with pytest.raises(InvalidStatus) as refused:
        _ws(rig, origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    with _ws(rig, origin=ORIGIN) as ws:  # type: ignore[arg-type]
        ws.send(json.dumps({"type": "auth", "token": TOKEN}))
        assert _next(ws, "ready")["reader"] == "emulated PIN pad"


def test_websocket_needs_the_token_first(rig: Rig) -> None:
    for first in ({"type": "auth", "token": "wrong"}, {"id": 1, "method": "status"}, "junk"):
        with _ws(rig) as ws:
            ws.send(json.dumps(first) if isinstance(first, dict) else first)
            error = json.loads(ws.recv(10))
            assert error["type"] == "error" and error["error"] == "Unauthorized"
            with pytest.raises(ConnectionClosed):
                ws.recv(10)
            assert ws.close_code == 1008


def test_websocket_calls_overlap_and_card_events_arrive(rig: Rig) -> None:
    with _ws(rig) as ws:
        ws.send(json.dumps({"type": "auth", "token": TOKEN}))
        assert _next(ws, "ready")["methods"]
        assert _next(ws, "event")["event"] == "card.inserted"
        for i, method in enumerate(("iReadCardBas", "pin.status", "status", "iReadCardBas")):
            ws.send(json.dumps({"id": i, "method": method, "params": {}, "lang": "zh_CN"}))
        results = {}
        while len(results) < 4:
            message = _next(ws, "result")
            results[message["id"]] = message
        assert {r["code"] for r in results.values()} <= {0, -12}
        assert "|" in results[0].get("data", {}).get("line", "|")
        ws.send(
            json.dumps(
                {"id": "v", "method": "iVerifyPIN", "params": {"pin": "000000"}, "lang": "zh_CN"}
            )
        )
        wrong = _next(ws, "result")
        assert (wrong["id"], wrong["code"], wrong["tries_left"]) == ("v", -51, 5)
        assert "密码" in wrong["message"]
        ws.send(json.dumps({"id": 9, "method": "nothing"}))
        assert _next(ws, "result")["error"] == "BadRequest"
        ws.send("not json")
        assert _next(ws, "result")["status"] == 400
        ws.send(json.dumps({"id": 10, "method": "iReloadPIN", "params": {"new": NEW_PIN}}))
        assert _next(ws, "result")["error"] == "NotLoggedIn"

        rig.pad.remove()
        assert _next(ws, "event")["event"] == "card.removed"
        rig.pad.insert(rig.card)
        assert _next(ws, "event") == {
            "type": "event",
            "event": "card.inserted",
            "reader": "emulated PIN pad",
        }


def test_answers_are_not_held_back_by_nagle() -> None:
    """asyncio switches Nagle off (TCP_NODELAY) on the connections of a listening socket
    that says TCP; without it each answer waited ~40 ms for a delayed ACK between its
    header and body writes (bench/agent.py saw 52 ms per read instead of 8)."""
    import asyncio
    import socket

    from sscard.agent.app import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    seen: list[int] = []

    class Record(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted = transport.get_extra_info("socket")
            seen.append(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Record, sock=sock)
        async with server:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(main())
    assert seen and seen[0] != 0
