"""The kiosk page served by the agent, and its channel (docs/agent.md, "The kiosk page").

Routes (mounted by :mod:`sscard.agent.app` when the kiosk is on):

* ``GET /kiosk/`` — the page (``static/kiosk.html``), ``GET /kiosk/static/…`` its
  script and style;
* ``GET /kiosk/texts?lang=zh_CN|en`` — every text the page shows
  (:mod:`sscard.agent.kiosk_texts`);
* WebSocket ``/kiosk/ws`` — the page's channel. Same origin only (its ``Origin`` must be
  the agent's own, and the host a loopback one); no API token: the page is the agent's.

The flow is :class:`sscard.kiosk.KioskSession` (PIN pad or on-screen pad, pulled cards,
settling by re-insertion, timeouts): it runs in a worker thread that holds the reader's
lease for the whole flow, with :class:`WebKioskUI` as its screen. Messages on the channel
(JSON objects, ``type`` first):

* page → agent: ``start`` (``lang``), ``pin`` (``seq``, ``value``), ``cancel`` (``seq``);
* agent → page: ``event`` (``card.inserted`` / ``card.removed``), ``screen`` (``text``,
  ``key`` of :data:`~sscard.kiosk.SCREEN`), ``ask_pin`` (``seq``, ``prompt``, ``key``,
  ``timeout``), ``ask_end`` (``seq``), ``outcome`` (``changed`` true/false/null,
  ``text``), ``error`` (``key``, ``text``).

A PIN typed on the screen travels only over this socket, straight to the session: it is
never logged, echoed or kept after the flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from sscard import errors
from sscard.agent.kiosk_texts import LABELS, texts
from sscard.i18n import N_, _, language, normalize, using
from sscard.kiosk import SCREEN, KioskSession

if TYPE_CHECKING:
    from sscard.agent.app import Agent

log = logging.getLogger("sscard.agent.kiosk")

STATIC = Path(__file__).with_name("static")
DEFAULT_LANG = "zh_CN"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
MAX_PIN_DIGITS = 12
MIN_PIN_DIGITS = 4

HOLDER = N_("the kiosk page")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page loads only its own script and style and talks only to its own origin."""


# --- which message of SCREEN a shown text is ---------------------------------------------

_patterns: dict[str, list[tuple[str, re.Pattern[str]]]] = {}


def screen_key(message: str) -> str | None:
    """The :data:`~sscard.kiosk.SCREEN` id of ``message`` (in the active language), if any:
    the page picks its picture and colour by it."""
    lang = language()
    patterns = _patterns.get(lang)
    if patterns is None:
        patterns = []
        for key, template in SCREEN.items():
            parts = re.split(r"\{[a-z_]+\}", _(template))
            patterns.append((key, re.compile(".+?".join(re.escape(p) for p in parts) + r"\Z")))
        _patterns[lang] = patterns
    return next((key for key, pattern in patterns if pattern.match(message)), None)


# --- the screen of a KioskSession ---------------------------------------------------------


class _Pin:
    """A PIN on its way from the socket to the session; its repr hides it."""

    __slots__ = ("value",)

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "_Pin(<hidden>)"


class WebKioskUI:
    """:class:`~sscard.kiosk.KioskUI` on the kiosk page: ``show`` and ``ask_pin`` become
    messages to the page; ``ask_pin`` blocks the flow's thread until the page answers,
    ``timeout`` seconds pass or ``stop`` is set (then None), or the holder cancels ("")."""

    def __init__(
        self, send: Callable[[dict[str, Any]], None], *, timeout: float, stop: threading.Event
    ) -> None:
        self._send = send
        self.timeout = timeout
        self._stop = stop
        self._answers: queue.Queue[tuple[int, _Pin]] = queue.Queue()
        self._seq = 0

    def show(self, message: str) -> None:
        """Put ``message`` on the page (with its SCREEN id for the picture)."""
        self._send({"type": "screen", "text": message, "key": screen_key(message)})

    def ask_pin(self, prompt: str) -> str | None:
        """Show the on-screen pad with ``prompt`` and wait for the PIN."""
        self._seq += 1
        seq = self._seq
        self._send(
            {
                "type": "ask_pin",
                "seq": seq,
                "prompt": prompt,
                "key": screen_key(prompt),
                "timeout": self.timeout,
            }
        )
        deadline = time.monotonic() + self.timeout
        try:
            while not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    answered, pin = self._answers.get(timeout=min(left, 0.2))
                except queue.Empty:
                    continue
                if answered == seq:
                    return pin.value if pin.value is not None else ""  # "": cancelled
            return None
        finally:
            self._send({"type": "ask_end", "seq": seq})

    def answer(self, seq: int, value: str | None) -> None:
        """The page's answer to prompt ``seq`` (None: cancelled); stale answers are dropped."""
        self._answers.put((seq, _Pin(value)))


# --- the channel -------------------------------------------------------------------------


class _Client:
    """One page connected over the kiosk socket; messages to it go through its outbox."""

    def __init__(self, websocket: WebSocket, loop: asyncio.AbstractEventLoop) -> None:
        self.websocket = websocket
        self.loop = loop
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.stop = threading.Event()
        self.ui: WebKioskUI | None = None
        self.lang = DEFAULT_LANG

    def send(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for the page (from any thread)."""
        with contextlib.suppress(RuntimeError):  # the loop has ended: the page is gone
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, message)


class KioskChannel:
    """The kiosk's side of the page: card events to every page, one flow at a time.

    ``agent`` is the agent's shared state (:class:`sscard.agent.app.Agent`: its card
    service's reader and settings, its :class:`~sscard.agent.app.EventHub`); None: the
    one of the application serving the socket (``app.state.agent``).
    """

    def __init__(
        self,
        agent: Agent | None = None,
        *,
        pin_timeout: float = 30.0,
        reinsert_timeout: float = 60.0,
    ) -> None:
        self._agent = agent
        self.pin_timeout = pin_timeout
        self.reinsert_timeout = reinsert_timeout
        self._flow = threading.Lock()

    def _agent_of(self, websocket: WebSocket) -> Agent:
        if self._agent is None:
            agent: Agent = websocket.app.state.agent
            self._agent = agent
        return self._agent

    # the socket ------------------------------------------------------------------------

    async def websocket(self, websocket: WebSocket) -> None:
        """The page's channel: refuse other origins before the handshake completes."""
        if not same_origin(websocket):
            log.warning(_("kiosk channel refused: not the agent's own origin"))
            await websocket.close(code=1008)
            return
        agent = self._agent_of(websocket)
        await websocket.accept()
        client = _Client(websocket, asyncio.get_running_loop())
        events = agent.hub.subscribe()
        tasks = [
            asyncio.create_task(self._sender(client)),
            asyncio.create_task(self._events(client, events)),
        ]
        try:
            while True:
                raw = await websocket.receive_text()
                self._dispatch(agent, client, raw)
        except WebSocketDisconnect:
            pass
        finally:
            client.stop.set()
            agent.hub.unsubscribe(events)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _events(client: _Client, events: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            client.outbox.put_nowait(await events.get())

    @staticmethod
    async def _sender(client: _Client) -> None:
        while True:
            message = await client.outbox.get()
            if message is None:
                return
            try:
                await client.websocket.send_json(message)
            except (WebSocketDisconnect, RuntimeError, OSError):
                return

    def _dispatch(self, agent: Agent, client: _Client, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "start":
            lang = message.get("lang")
            self._start(agent, client, normalize(lang) if isinstance(lang, str) else None)
        elif kind in ("pin", "cancel") and client.ui is not None:
            seq = message.get("seq")
            if not isinstance(seq, int):
                return
            value = message.get("value") if kind == "pin" else None
            if value is not None and not _is_pin(value):
                with using(client.lang):
                    client.send(_error("pin_digits"))
                return
            client.ui.answer(seq, value if isinstance(value, str) else None)

    def _start(self, agent: Agent, client: _Client, lang: str | None) -> None:
        client.lang = lang or DEFAULT_LANG
        with using(client.lang):
            if not self._flow.acquire(blocking=False):
                client.send(_error("another_screen"))
                return
            if not agent.service.reader.present():
                self._flow.release()
                client.send(_error("no_card"))
                return
        client.ui = WebKioskUI(client.send, timeout=self.pin_timeout, stop=client.stop)
        threading.Thread(
            target=self._run,
            args=(agent, client, client.ui),
            name="sscard-kiosk-flow",
            daemon=True,
        ).start()

    def _run(self, agent: Agent, client: _Client, ui: WebKioskUI) -> None:
        """One flow in the worker thread, holding the reader's lease throughout."""
        try:
            with using(client.lang):
                try:
                    settings = agent.service.settings
                    with agent.service.reader.lease(_(HOLDER), settings.busy_wait) as lease:
                        session = KioskSession(
                            lease.slot,
                            ui,
                            reinsert_timeout=self.reinsert_timeout,
                            pinpad=settings.pinpad,
                        )
                        outcome = session.run_once(client.stop)
                except errors.CardInUse as exc:
                    client.send({"type": "error", "key": "busy", "text": str(exc)})
                    return
                except errors.SscardError as exc:
                    client.send(
                        {"type": "outcome", "changed": False, "text": str(exc), "key": None}
                    )
                    return
                if outcome is not None:
                    client.send(
                        {
                            "type": "outcome",
                            "changed": outcome.changed,
                            "text": outcome.message,
                            "key": screen_key(outcome.message),
                        }
                    )
        except Exception:  # never leave the page waiting, never show a traceback
            log.exception(_("the kiosk flow failed"))
            client.send({"type": "outcome", "changed": None, "text": _label("offline")})
        finally:
            client.ui = None
            self._flow.release()


def _label(key: str) -> str:
    return _(LABELS[key])


def _error(key: str) -> dict[str, Any]:
    """An ``error`` message to the page: one of its labels, in the active language."""
    return {"type": "error", "key": key, "text": _label(key)}


def _is_pin(value: object) -> bool:
    return (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and MIN_PIN_DIGITS <= len(value) <= MAX_PIN_DIGITS
    )


def same_origin(websocket: WebSocket) -> bool:
    """Whether the socket comes from the agent's own page: a loopback ``Host`` and an
    ``Origin`` equal to it (browsers always send Origin on a WebSocket handshake)."""
    host = websocket.headers.get("host", "")
    origin = websocket.headers.get("origin", "")
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if hostname.lower() not in LOOPBACK_HOSTS:
        return False
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    return origin.lower() == f"{scheme}://{host}".lower()


# --- the routes ---------------------------------------------------------------------------


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def _page(request: Request) -> Response:
    return _no_store(FileResponse(STATIC / "kiosk.html", media_type="text/html; charset=utf-8"))


async def _to_page(request: Request) -> Response:
    return RedirectResponse(request.url_for("kiosk_page").path, status_code=308)


async def _texts(request: Request) -> Response:
    asked = request.query_params.get("lang") or DEFAULT_LANG
    lang = normalize(asked)
    if lang is None:
        with using(DEFAULT_LANG):
            message = _("unsupported language: choose zh_CN or en")
        return JSONResponse(
            {"code": -23, "error": "BadRequest", "message": message}, status_code=400
        )
    return _no_store(JSONResponse(texts(lang)))


def kiosk_routes(
    agent: Agent | None = None,
    *,
    pin_timeout: float = 30.0,
    reinsert_timeout: float = 60.0,
) -> list[BaseRoute]:
    """The kiosk's routes: the page, its files and texts, its channel.

    ``agent`` is the agent they serve (None: ``app.state.agent`` of the application
    they are mounted in); the reader, the PIN pad mode and the wait for a busy reader
    are its card service's. ``pin_timeout`` is the seconds the holder has for each PIN
    on the screen; ``reinsert_timeout`` the seconds to put back a card pulled during
    CHANGE PIN.
    """
    channel = KioskChannel(agent, pin_timeout=pin_timeout, reinsert_timeout=reinsert_timeout)
    return [
        Route("/kiosk", _to_page, methods=["GET"]),
        Route("/kiosk/", _page, methods=["GET"], name="kiosk_page"),
        Route("/kiosk/texts", _texts, methods=["GET"]),
        Mount("/kiosk/static", StaticFiles(directory=STATIC), name="kiosk_static"),
        WebSocketRoute("/kiosk/ws", channel.websocket),
    ]
