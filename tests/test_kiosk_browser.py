"""The kiosk page as a cardholder uses it: headless Chromium (Debian's, never a downloaded
one) on the agent's page, served by uvicorn on a real socket in this process, with an
emulated card behind the emulated PIN pad (or a plain reader: the on-screen pad).

Each screen is photographed into ``tmp_path / "screens"`` (and ``$SSCARD_SCREENSHOTS``
when set) — docs/agent.md, "The kiosk page".
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from sscard.agent.kiosk_web import kiosk_routes
from sscard.agent.reader import CardReader
from sscard.applets.cos import EmulatedCard
from sscard.applets.pinpad import EmulatedPinPad, Feature, PullAt
from sscard.i18n import using
from sscard.kiosk import screen
from tests.agentkit import TOKEN, PlainSlot, dev_keys, pad_reader, running_agent, service
from tests.cardkit import EXAMPLES, PIN, issued_card, pin_works

NEW = "802461"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
URLS: weakref.WeakKeyDictionary[Page, list[str]] = weakref.WeakKeyDictionary()
"""Every URL each page asked for (requests and WebSockets)."""

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


def zh(key: str, **fields: object) -> str:
    """A kiosk message as the page shows it by default (Chinese)."""
    with using("zh_CN"):
        return screen(key, **fields)


# --- the agent in this process ----------------------------------------------------------


@contextmanager
def agent(reader: CardReader, tmp_path: Path, *, pin_timeout: float | None = None) -> Iterator[str]:
    """The agent serving the kiosk on ``reader`` (uvicorn in a thread of this process);
    yields its base URL. ``pin_timeout``: the on-screen pad's seconds per PIN."""
    store = tmp_path / "store.db"
    if pin_timeout is None:
        with running_agent(service(reader, store), store, kiosk=True) as url:
            yield url
    else:
        routes = kiosk_routes(pin_timeout=pin_timeout)
        with running_agent(service(reader, store), store, routes=routes) as url:
            yield url


class HandPad(EmulatedPinPad):
    """The emulated PIN pad with a holder who takes their time: while ``typing`` is clear,
    a PIN entry waits (so the test can photograph the "use the keypad" screen)."""

    def __init__(self, card: EmulatedCard | None) -> None:
        super().__init__(card, "emulated PIN pad")
        self.typing = threading.Event()
        self.typing.set()

    def control(self, code: int, data: bytes = b"") -> bytes:
        entry = (self.codes[Feature.VERIFY_PIN_DIRECT], self.codes[Feature.MODIFY_PIN_DIRECT])
        if code in entry:
            self.typing.wait(30)
        return super().control(code, data)


# --- the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Screens:
    """Screenshots of one test, numbered in order."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.dir = tmp_path / "screens"
        self.dir.mkdir(exist_ok=True)
        self.name = name
        self.count = 0
        extra = os.environ.get("SSCARD_SCREENSHOTS")
        self.extra = Path(extra) if extra else None

    def take(self, page: Page, what: str) -> Path:
        self.count += 1
        path = self.dir / f"{self.name}-{self.count:02d}-{what}.png"
        page.screenshot(path=str(path))
        if self.extra is not None:
            self.extra.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.extra / path.name)
        return path


@pytest.fixture
def screens(tmp_path: Path, request: pytest.FixtureRequest) -> Screens:
    return Screens(tmp_path, request.node.name.removeprefix("test_").replace("[", "-").strip("]"))


@contextmanager
def kiosk_page(
    browser: Browser, reader: CardReader, tmp_path: Path, *, pin_timeout: float | None = None
) -> Iterator[Page]:
    """The kiosk page open in a fresh browser context, on an agent serving ``reader``."""
    with agent(reader, tmp_path, pin_timeout=pin_timeout) as url:
        context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.on("websocket", lambda ws: requests.append(ws.url))
        page.goto(url + "/kiosk/")
        URLS[page] = requests
        try:
            yield page
        finally:
            context.close()


def state(page: Page, value: str, timeout: float = 10_000) -> None:
    expect(page.locator("body")).to_have_attribute("data-state", value, timeout=timeout)


def message(page: Page, key: str, timeout: float = 10_000) -> None:
    expect(page.locator("#message")).to_have_attribute("data-key", key, timeout=timeout)


def text(page: Page) -> str:
    return page.locator("#message").inner_text()


def secrets_absent(page: Page, *pins: str) -> None:
    """No PIN in the page's text, its URLs or its storage."""
    html = page.content()
    urls = " ".join(URLS[page])
    storage = page.evaluate("JSON.stringify([localStorage, sessionStorage, document.cookie])")
    for pin in pins:
        assert pin not in html and pin not in urls and pin not in storage


# --- on the PIN pad -------------------------------------------------------------------------


def test_pin_change_on_the_pad(browser: Browser, screens: Screens, tmp_path: Path) -> None:
    card = issued_card()
    pad = HandPad(None)
    with kiosk_page(browser, pad_reader(pad), tmp_path) as page:
        state(page, "idle")
        assert text(page) == zh("insert")
        assert page.locator("h1").inner_text() == "社会保障卡自助服务"
        screens.take(page, "insert")
        pad.insert(card)
        state(page, "ready")
        screens.take(page, "ready")
        pad.typing.clear()
        pad.press(PIN, NEW, NEW)
        page.locator("#start").click()
        message(page, "pad_change")
        assert text(page) == zh("pad_change", tries=6)
        screens.take(page, "pad")
        pad.typing.set()
        message(page, "changed")
        state(page, "take")
        assert text(page) == zh("changed")
        assert page.locator("#sub").inner_text() == zh("take")
        screens.take(page, "changed-take-card")
        pad.remove()
        expect(page.locator("body")).to_have_attribute("data-changed", "true")
        screens.take(page, "outcome")
        state(page, "idle", timeout=15_000)
        assert pin_works(card, NEW)


def test_wrong_pin_says_the_tries_left(browser: Browser, screens: Screens, tmp_path: Path) -> None:
    card = issued_card()
    pad = HandPad(card)
    with kiosk_page(browser, pad_reader(pad), tmp_path) as page:
        state(page, "ready")
        pad.press("000000", NEW, NEW)
        page.locator("#start").click()
        message(page, "wrong")
        assert text(page) == zh("wrong", tries=5)
        screens.take(page, "wrong-pin")
        pad.remove()
        expect(page.locator("body")).to_have_attribute("data-changed", "false")
    assert pin_works(card, PIN)


def test_a_blocked_pin(browser: Browser, screens: Screens, tmp_path: Path) -> None:
    card = issued_card()
    for _ in range(5):
        assert not pin_works(card, "000000")
    pad = HandPad(card)
    with kiosk_page(browser, pad_reader(pad), tmp_path) as page:
        state(page, "ready")
        pad.press("000000", NEW, NEW)  # the last try
        page.locator("#start").click()
        message(page, "now_blocked")
        assert text(page) == zh("now_blocked")
        screens.take(page, "now-blocked")
        pad.remove()
        expect(page.locator("body")).to_have_attribute("data-changed", "false")
        state(page, "idle", timeout=15_000)
        pad.insert(card)  # next time: blocked before any PIN is asked
        state(page, "ready")
        page.locator("#start").click()
        message(page, "blocked")
        assert text(page) == zh("blocked")
        screens.take(page, "blocked")


@pytest.mark.parametrize("writes", [0, 3])
def test_card_pulled_mid_change_then_put_back(
    browser: Browser, screens: Screens, tmp_path: Path, writes: int
) -> None:
    """A tear during CHANGE PIN: the page asks for the card again, then says what the card
    holds (asking for the new PIN on the pad only when the tries counter cannot tell)."""
    card = issued_card()
    pad = HandPad(card)
    with kiosk_page(browser, pad_reader(pad), tmp_path) as page:
        state(page, "ready")
        pad.pull_card(PullAt.APDU, after=writes)
        pad.press(PIN, NEW, NEW)
        page.locator("#start").click()
        message(page, "reinsert")
        assert text(page) == zh("reinsert")
        screens.take(page, "put-card-back")
        pad.typing.clear()
        pad.press(NEW)  # typed if the page asks to confirm the new PIN on the pad
        pad.insert(card)
        expect(page.locator("#message")).not_to_have_attribute("data-key", "reinsert")
        if page.locator("#message").get_attribute("data-key") == "confirm_new":
            assert text(page) == zh("confirm_new")
            screens.take(page, "confirm-new-pin")
        pad.typing.set()
        state(page, "take")
        screens.take(page, "settled")
        pad.remove()
        changed = page.locator("body")
        expect(changed).to_have_attribute("data-changed", "true" if writes else "false")
    assert pin_works(card, NEW) is bool(writes)


# --- on the screen's own pad (a reader without one) -----------------------------------------


def tap(page: Page, pin: str) -> None:
    for digit in pin:
        page.locator(f'#keypad [data-digit="{digit}"]').click()


def test_pin_change_on_the_screen(
    browser: Browser, screens: Screens, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    card = issued_card()
    slot = PlainSlot(card)
    with kiosk_page(browser, slot.reader(), tmp_path) as page:
        state(page, "ready")
        page.locator("#start").click()
        state(page, "pin")
        message(page, "ask_current")
        assert text(page) == zh("ask_current", tries=6)
        expect(page.locator("#countdown-left")).to_contain_text("秒")
        screens.take(page, "ask-current")
        tap(page, PIN)
        assert page.locator("#mask").inner_text() == "●" * 6
        screens.take(page, "typed-masked")
        secrets_absent(page, PIN)
        page.locator("#key-ok").click()
        message(page, "ask_new")
        tap(page, NEW)
        page.locator("#key-ok").click()
        message(page, "ask_again")
        screens.take(page, "ask-again")
        tap(page, NEW)
        page.locator("#key-ok").click()
        message(page, "changed")
        state(page, "take")
        screens.take(page, "changed")
        secrets_absent(page, PIN, NEW)
        slot.card = None
        expect(page.locator("body")).to_have_attribute("data-changed", "true")
    assert pin_works(card, NEW)
    assert "GET /kiosk/" in caplog.text  # the log was captured: the check below means something
    for pin in (PIN, NEW):
        assert pin not in caplog.text


def test_the_screen_pad_times_out(browser: Browser, screens: Screens, tmp_path: Path) -> None:
    card = issued_card()
    slot = PlainSlot(card)
    with kiosk_page(browser, slot.reader(), tmp_path, pin_timeout=3) as page:
        state(page, "ready")
        page.locator("#start").click()
        message(page, "ask_current")
        tap(page, "13")
        expect(page.locator("#countdown")).to_have_attribute("data-urgent", "true")
        screens.take(page, "countdown")
        message(page, "time_up", timeout=8_000)
        assert text(page) == zh("time_up")
        screens.take(page, "time-up")
        slot.card = None
        expect(page.locator("body")).to_have_attribute("data-changed", "false")
    assert pin_works(card, PIN)


def test_english_on_request(browser: Browser, screens: Screens, tmp_path: Path) -> None:
    card = issued_card()
    pad = HandPad(card)
    with kiosk_page(browser, pad_reader(pad), tmp_path) as page:
        state(page, "ready")
        assert page.locator("#lang").inner_text() == "English"
        page.locator("#lang").click()
        expect(page.locator("#start")).to_have_text("Change my PIN")
        assert page.locator("h1").inner_text() == "Social Security Card Self-Service"
        assert page.locator("#lang").inner_text() == "中文"
        screens.take(page, "ready-en")
        pad.press("000000", NEW, NEW)
        page.locator("#start").click()
        message(page, "wrong")
        assert text(page) == "Wrong PIN, 5 tries left. Your PIN was not changed."
        screens.take(page, "wrong-en")
        pad.remove()
        state(page, "idle", timeout=15_000)
        assert text(page) == "Please insert your social security card."
        page.locator("#lang").click()
        expect(page.locator("#message")).to_have_text(zh("insert"))


# --- the channel is the page's alone ------------------------------------------------------


def test_the_kiosk_channel_refuses_other_origins(browser: Browser, tmp_path: Path) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    from websockets.typing import Origin

    pad = HandPad(issued_card())
    with agent(pad_reader(pad), tmp_path) as url:
        ws_url = url.replace("http://", "ws://") + "/kiosk/ws"
        with connect(ws_url, origin=Origin(url)) as ws:
            assert '"card.inserted"' in ws.recv(timeout=5)
        for origin in (Origin("http://evil.example"), Origin("null"), None):
            with pytest.raises(InvalidStatus) as refused:
                connect(ws_url, origin=origin)
            assert refused.value.response.status_code == 403
        # a page from another origin in the browser cannot open it either
        page = browser.new_page()
        page.goto("data:text/html,<p>x</p>")
        opened = page.evaluate(
            """url => new Promise(done => {
                 const ws = new WebSocket(url);
                 ws.onopen = () => done('open');
                 ws.onerror = () => done('refused');
               })""",
            ws_url,
        )
        assert opened == "refused"
        page.close()


def test_texts_in_both_languages(tmp_path: Path) -> None:
    import httpx

    pad = HandPad(issued_card())
    with agent(pad_reader(pad), tmp_path) as url:
        zh_texts = httpx.get(url + "/kiosk/texts").json()
        en_texts = httpx.get(url + "/kiosk/texts", params={"lang": "en"}).json()
        assert zh_texts["lang"] == "zh_CN" and en_texts["lang"] == "en"
        assert zh_texts["screen"]["insert"] == zh("insert")
        assert set(zh_texts["labels"]) == set(en_texts["labels"])
        for key, value in zh_texts["labels"].items():
            assert value != en_texts["labels"][key], f"label {key} is not translated"
        bad = httpx.get(url + "/kiosk/texts", params={"lang": "xx"})
        assert bad.status_code == 400 and bad.json()["error"] == "BadRequest"
        page = httpx.get(url + "/kiosk/")
        assert page.status_code == 200 and "Content-Security-Policy" in page.headers
        assert httpx.get(url + "/kiosk/static/kiosk.js").status_code == 200


# --- the JavaScript client example (examples/agent-client.html) from another origin ---------


@contextmanager
def static_site(directory: Path) -> Iterator[int]:
    """A plain static web server for ``directory`` on a free loopback port (a business
    system's own site); yields the port."""

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, name="static site", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_the_javascript_client_example_from_an_allowed_origin_and_another(
    browser: Browser, tmp_path: Path
) -> None:
    """The docs' client example in Chromium: fetch with the API token and the WebSocket with
    the auth message work from the allowed origin; from any other origin the browser is
    refused (CORS, and the agent closes the socket before the handshake completes)."""
    slot = PlainSlot(issued_card())
    store = tmp_path / "store.db"
    with static_site(EXAMPLES) as port:
        allowed = f"http://127.0.0.1:{port}"
        other = f"http://localhost:{port}"  # same files, another origin
        card_service = service(slot.reader(), store, keys=dev_keys())
        with running_agent(card_service, store, origins=(allowed,)) as url:
            context = browser.new_context()
            page = context.new_page()
            out = page.locator("#out")
            page.goto(allowed + "/agent-client.html")
            page.fill("#agent", url)
            page.fill("#token", TOKEN)
            page.click("#read-http")
            expect(out).to_have_attribute("data-status", "ok")
            answer = json.loads(out.inner_text())
            assert answer["code"] == 0 and "|" in answer["data"]["line"]
            page.click("#connect")
            expect(out).to_have_attribute("data-status", "connected")
            events = page.locator("#events")
            expect(events).to_have_attribute("data-last", "card.inserted")  # the state at once
            page.click("#read-ws")
            expect(out).to_have_attribute("data-status", "ok")
            assert json.loads(out.inner_text())["data"]["line"] == answer["data"]["line"]
            slot.card = None  # the holder takes the card: the event reaches the page
            expect(events).to_have_attribute("data-last", "card.removed")
            page.fill("#token", "not-the-token")
            page.click("#read-http")
            expect(out).to_have_attribute("data-status", "error")
            assert json.loads(out.inner_text())["error"] == "Unauthorized"

            page.goto(other + "/agent-client.html")
            page.fill("#agent", url)
            page.fill("#token", TOKEN)
            page.click("#read-http")
            expect(out).to_have_attribute("data-status", "refused")
            assert "Failed to fetch" in out.inner_text()
            page.click("#connect")
            expect(out).to_have_attribute("data-status", "refused")
            context.close()


def test_the_javascript_in_docs_is_the_tested_page_s_client() -> None:
    """docs/agent.md shows the client class of examples/agent-client.html, the page the
    test above runs in Chromium, verbatim: the documented code is the tested code."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "agent.md").read_text("utf-8")
    page = (EXAMPLES / "agent-client.html").read_text("utf-8")
    blocks = re.findall(r"```js\n(.*?)```", docs, re.S)
    assert blocks and "class SscardAgent" in blocks[0]
    assert blocks[0] in page


def test_cancel_on_the_screen_pad(browser: Browser, screens: Screens, tmp_path: Path) -> None:
    """取消 on the on-screen pad ends the flow as cancelled (not as a timeout); no try spent."""
    card = issued_card()
    slot = PlainSlot(card)
    with kiosk_page(browser, slot.reader(), tmp_path) as page:
        state(page, "ready")
        page.locator("#start").click()
        message(page, "ask_current")
        tap(page, PIN)
        page.locator("#key-ok").click()
        message(page, "ask_new")
        page.locator("#key-cancel").click()
        message(page, "cancelled")
        assert text(page) == zh("cancelled")
        screens.take(page, "cancelled")
        slot.card = None
        expect(page.locator("body")).to_have_attribute("data-changed", "false")
    assert pin_works(card, PIN)
