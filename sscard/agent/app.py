"""The agent's Starlette application: the national interface as JSON over HTTP and WebSocket.

Endpoints, answers, the WebSocket protocol and the security model are in
docs/agent.md. Every route below runs behind :class:`~sscard.agent.guard.Guard`
(Host, Origin, CORS, access log); every route but ``/api/health`` (and the kiosk
page's own, mounted when the agent serves the kiosk) needs the installation's API
token. Card calls run in worker threads (the library is blocking) in the caller's
language (:func:`sscard.i18n.using`); the reader serializes them
(:class:`~sscard.agent.reader.CardReader`).

What other route modules (the kiosk page, :mod:`sscard.agent.kiosk_web`) get:
``request.app.state.agent``, an :class:`Agent` — the configuration, the card
service, the operator store, the :class:`EventHub` of card events, the PIN
rate limiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import uvicorn
from anyio import to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from sscard import __version__, audit, errors
from sscard.agent import answers
from sscard.agent.guard import (
    BAD_REQUEST_CODE,
    OPERATOR_HEADER,
    REFUSED_CODE,
    Guard,
    RateLimiter,
    bearer,
    loopback_address,
    refusal,
    request_language,
    token_ok,
    url_for,
)
from sscard.agent.service import CardService
from sscard.auth import OperatorStore, end_session, require, start_session
from sscard.auth.store import Operator
from sscard.i18n import N_, _, using
from sscard.national import UNCLASSIFIED, NationalCode

__all__ = [
    "Agent",
    "AgentConfig",
    "EventHub",
    "create_app",
    "serve",
]

log = logging.getLogger("sscard.agent")

AUTH_TIMEOUT = 10.0
"""Seconds a WebSocket client has to send its ``auth`` message."""
MAX_BODY = 16 * 1024
"""The largest request body the agent reads (its requests are a few fields)."""

CARD_TYPES = {1: "contact", 2: "contactless", 3: "automatic", 4: "automatic"}
"""``iReadCardBas`` card types (the national interface): 1 contact, 2 contactless, 3/4 automatic."""

_WRONG_CARD_TYPE = N_("this agent reads contact cards only (type 1, 3 or 4)")


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """How ``sscard agent serve`` listens and guards (docs/agent.md)."""

    host: str = "127.0.0.1"
    """Loopback only: 127.0.0.1, ::1 or localhost (anything else is refused)."""
    port: int = 7480
    """0: any free port (the "listening on URL" line tells which)."""
    allowed_origins: tuple[str, ...] = ()
    """Exact origins of browser pages allowed to call, e.g. ``https://biz.example``."""
    token: str = field(repr=False)
    """The installation's API token (:func:`sscard.agent.guard.load_token`)."""
    kiosk: bool = False
    """Serve the kiosk page (/kiosk/) and its channel."""
    pin_attempts: int = 5
    """PIN commands (verify, change) the agent lets through …"""
    pin_window: float = 60.0
    """… per this many seconds (for its one reader, whoever calls)."""
    lang: str | None = None
    """Default answer language (else the process's)."""


class EventHub:
    """Card inserted / removed events of the reader, fanned out to asyncio subscribers.

    The reader's watch thread calls :meth:`changed`; each subscriber (a WebSocket,
    the kiosk channel) owns an :class:`asyncio.Queue` of event dicts
    ``{"type": "event", "event": "card.inserted"|"card.removed", "reader": name}``.
    A new subscriber's queue starts with ``card.inserted`` when a card is in.
    """

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self.present: bool | None = None
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def event(self, present: bool) -> dict[str, Any]:
        """The event message for a presence state."""
        name = "card.inserted" if present else "card.removed"
        return {"type": "event", "event": name, "reader": self.reader}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver events on ``loop`` (the server's; done at start-up)."""
        self._loop = loop

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A new queue of events (call on the event loop; :meth:`unsubscribe` when done)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        if self.present:
            queue.put_nowait(self.event(True))
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop delivering to ``queue``."""
        self._queues.discard(queue)

    def changed(self, present: bool) -> None:
        """A presence change (any thread): queued for every subscriber."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self.present = present
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(self._publish, present)

    def _publish(self, present: bool) -> None:
        if self.present == present:
            return
        self.present = present
        message = self.event(present)
        for queue in list(self._queues):
            queue.put_nowait(message)


@dataclass
class Agent:
    """What every route of the agent shares (``request.app.state.agent``)."""

    config: AgentConfig
    service: CardService
    store: Callable[[], OperatorStore]
    hub: EventHub
    pin_limiter: RateLimiter


# --- answers ----------------------------------------------------------------------------------


class BadRequest(Exception):
    """A malformed request: HTTP 400, nothing done (the message is already translated)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Reply:
    """An answer and the HTTP status it travels with."""

    status: int
    body: dict[str, Any]

    def headers(self) -> dict[str, str]:
        retry = self.body.get("retry_after")
        return {"Retry-After": str(max(1, math.ceil(retry)))} if retry is not None else {}


def _bad(message: str) -> Reply:
    return Reply(400, refusal(BAD_REQUEST_CODE, "BadRequest", message))


def _internal() -> Reply:
    return Reply(
        500,
        refusal(
            int(UNCLASSIFIED),
            "InternalError",
            _("internal error in the card service; see its log"),
        ),
    )


def _error_reply(exc: errors.SscardError) -> Reply:
    body = answers.failure(exc)
    if isinstance(exc, errors.CardInUse):
        return Reply(409, body)
    if isinstance(exc, errors.TooManyPinAttempts):
        return Reply(429, body)
    if isinstance(exc, (errors.NotLoggedIn, errors.LoginFailed)):
        return Reply(401, body)
    if isinstance(exc, errors.NotAuthorized):
        return Reply(403, body)
    return Reply(200, body)


# --- parameters -------------------------------------------------------------------------------


def _text(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise BadRequest(_("field {field} is required").format(field=repr(name)))
        return None
    if not isinstance(value, str):
        raise BadRequest(_("field {field} must be a string").format(field=repr(name)))
    return value


def _check_fields(params: dict[str, Any], known: Sequence[str]) -> None:
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise BadRequest(_("unknown field {field}").format(field=repr(unknown[0][:40])))


# --- the operations (shared by HTTP and WebSocket) ------------------------------------------------


Operation = Callable[[Agent, dict[str, Any], str | None], Awaitable[dict[str, Any]]]


async def _blocking(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a library call in a worker thread, in the language of this request."""
    from sscard.i18n import language

    lang = language()

    def run() -> dict[str, Any]:
        with using(lang):
            return fn()

    return await to_thread.run_sync(run)


def _operator(agent: Agent, session: str | None, action: str) -> Operator:
    """The operator of ``session`` if their role allows ``action``; refusals audited."""
    store = agent.store()
    try:
        try:
            if not session:
                raise errors.NotLoggedIn(
                    _("no operator session: log in first and send the {header} header").format(
                        header=OPERATOR_HEADER
                    )
                )
            op = store.session_operator(session)
        except errors.NotLoggedIn as exc:
            audit.record(action, operator=None, outcome="refused", error=exc, conn=store.conn)
            raise
        return require(action, op, store=store)
    finally:
        store.close()


async def op_read_basic(
    agent: Agent, params: dict[str, Any], session: str | None
) -> dict[str, Any]:
    _check_fields(params, ("type",))
    kind = params.get("type", 3)
    if isinstance(kind, bool) or not isinstance(kind, int) or kind not in CARD_TYPES:
        raise BadRequest(_("field 'type' must be 1, 2, 3 or 4"))
    if kind == 2:
        return {
            "code": int(NationalCode.WRONG_CARD_TYPE),
            "error": "WrongCardType",
            "message": _(_WRONG_CARD_TYPE),
            "national_message": answers.national_message(int(NationalCode.WRONG_CARD_TYPE)),
        }
    return answers.ok(await _blocking(agent.service.read_basic))


async def op_pin_status(
    agent: Agent, params: dict[str, Any], session: str | None
) -> dict[str, Any]:
    _check_fields(params, ())
    return answers.ok(await _blocking(agent.service.pin_status))


async def _pin_command(agent: Agent, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A PIN command under the rate limit; an attempt that never reached the card is given
    back (the card was in use by another caller)."""
    stamp = agent.pin_limiter.acquire()
    try:
        return answers.ok(await _blocking(call))
    except errors.CardInUse:
        agent.pin_limiter.release(stamp)
        raise


async def op_verify(agent: Agent, params: dict[str, Any], session: str | None) -> dict[str, Any]:
    _check_fields(params, ("pin",))
    pin = _text(params, "pin")
    return await _pin_command(agent, lambda: agent.service.verify_pin(pin))


async def op_change(agent: Agent, params: dict[str, Any], session: str | None) -> dict[str, Any]:
    _check_fields(params, ("old", "new"))
    old, new = _text(params, "old"), _text(params, "new")
    if (old is None) != (new is None):
        missing = "old" if old is None else "new"
        raise BadRequest(
            _("give both 'old' and 'new', or neither (PIN pad); {field} is missing").format(
                field=repr(missing)
            )
        )
    return await _pin_command(agent, lambda: agent.service.change_pin(old, new))


async def op_reload(agent: Agent, params: dict[str, Any], session: str | None) -> dict[str, Any]:
    _check_fields(params, ("new",))
    new = _text(params, "new", required=True)
    assert new is not None

    def call() -> dict[str, Any]:
        return agent.service.reload_pin(_operator(agent, session, "pin.reset"), new)

    return answers.ok(await _blocking(call))


async def op_unblock(agent: Agent, params: dict[str, Any], session: str | None) -> dict[str, Any]:
    _check_fields(params, ())

    def call() -> dict[str, Any]:
        return agent.service.unblock_pin(_operator(agent, session, "pin.unblock"))

    return answers.ok(await _blocking(call))


async def op_status(agent: Agent, params: dict[str, Any], session: str | None) -> dict[str, Any]:
    _check_fields(params, ())
    return answers.ok(await _blocking(agent.service.status))


OPERATIONS: dict[str, Operation] = {
    "status": op_status,
    "iReadCardBas": op_read_basic,
    "pin.status": op_pin_status,
    "iVerifyPIN": op_verify,
    "iChangePIN": op_change,
    "iReloadPIN": op_reload,
    "iUnblockPIN": op_unblock,
}
"""The methods of the WebSocket protocol, and what the HTTP endpoints run."""


async def perform(agent: Agent, method: str, params: dict[str, Any], session: str | None) -> Reply:
    """Run one operation; every outcome is a :class:`Reply` (never an exception)."""
    operation = OPERATIONS.get(method)
    if operation is None:
        return _bad(_("unknown method {method}").format(method=repr(method[:40])))
    try:
        return Reply(200, await operation(agent, params, session))
    except BadRequest as exc:
        return _bad(exc.message)
    except errors.SscardError as exc:
        return _error_reply(exc)
    except Exception as exc:  # never the text of a foreign exception: it might hold anything
        log.error(_("internal error in %s: %s"), method, type(exc).__name__)
        return _internal()


# --- HTTP ---------------------------------------------------------------------------------------


def _lang(request: Request) -> str:
    agent: Agent = request.app.state.agent
    return request_language(
        request.query_params.get("lang"), request.headers.get("accept-language"), agent.config.lang
    )


def _json(reply: Reply) -> JSONResponse:
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers())


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object of the request body ({} when empty); :class:`BadRequest` else."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise BadRequest(_("request body too large"))
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(_("the request body is not valid JSON")) from None
    if not isinstance(value, dict):
        raise BadRequest(_("the request body must be a JSON object"))
    return value


def _unauthorized() -> Reply:
    return Reply(
        401,
        refusal(
            REFUSED_CODE,
            "Unauthorized",
            _("no or wrong API token: send 'Authorization: Bearer <API token>'"),
        ),
    )


def endpoint(method: str, *, body: bool) -> Callable[[Request], Awaitable[Response]]:
    """An HTTP endpoint for an operation: token check, body, language, reply."""

    async def handle(request: Request) -> Response:
        agent: Agent = request.app.state.agent
        with using(_lang(request)):
            if not token_ok(bearer(request.headers), agent.config.token):
                return _json(_unauthorized())
            try:
                params = await _body(request) if body else {}
            except BadRequest as exc:
                return _json(_bad(exc.message))
            session = request.headers.get(OPERATOR_HEADER)
            return _json(await perform(agent, method, params, session))

    return handle


async def health(request: Request) -> Response:
    """``GET /api/health``: the agent answers (no token, no card access)."""
    with using(_lang(request)):
        return JSONResponse(answers.ok({"version": __version__}))


async def operator_login(request: Request) -> Response:
    """``POST /api/operator/login``: a session for an operator (audited, ok or refused)."""
    agent: Agent = request.app.state.agent
    with using(_lang(request)):
        if not token_ok(bearer(request.headers), agent.config.token):
            return _json(_unauthorized())
        try:
            params = await _body(request)
            _check_fields(params, ("operator", "password"))
            operator_id = _text(params, "operator", required=True)
            password = _text(params, "password", required=True)
        except BadRequest as exc:
            return _json(_bad(exc.message))
        assert operator_id is not None and password is not None

        def call() -> dict[str, Any]:
            store = agent.store()
            try:
                started = start_session(store, operator_id, password)
            finally:
                store.close()
            return answers.ok(
                {
                    "session": started.token,
                    "operator": started.operator.info(),
                    "expires": started.expires.isoformat(timespec="seconds"),
                }
            )

        try:
            return _json(Reply(200, await _blocking(call)))
        except errors.SscardError as exc:
            return _json(_error_reply(exc))
        except Exception as exc:
            log.error(_("internal error in operator login: %s"), type(exc).__name__)
            return _json(_internal())


async def operator_logout(request: Request) -> Response:
    """``POST /api/operator/logout``: end the session of the ``X-Sscard-Operator`` header."""
    agent: Agent = request.app.state.agent
    with using(_lang(request)):
        if not token_ok(bearer(request.headers), agent.config.token):
            return _json(_unauthorized())
        session = request.headers.get(OPERATOR_HEADER) or ""

        def call() -> dict[str, Any]:
            store = agent.store()
            try:
                op = end_session(store, session) if session else None
            finally:
                store.close()
            return answers.ok({"logged_out": op.id if op else None})

        try:
            return _json(Reply(200, await _blocking(call)))
        except Exception as exc:
            log.error(_("internal error in operator logout: %s"), type(exc).__name__)
            return _json(_internal())


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    with using(_lang(request)):
        message = (
            _("no such endpoint: {path}").format(path=request.url.path[:100])
            if status == 404
            else _("method not allowed on {path}").format(path=request.url.path[:100])
        )
    return JSONResponse(
        refusal(BAD_REQUEST_CODE, "NotFound" if status == 404 else "MethodNotAllowed", message),
        status_code=status,
    )


# --- WebSocket ----------------------------------------------------------------------------------


async def websocket_api(ws: WebSocket) -> None:
    """``/api/ws``: ``auth`` first, then requests (overlapping) and pushed card events."""
    agent: Agent = ws.app.state.agent
    lang = request_language(
        ws.query_params.get("lang"), ws.headers.get("accept-language"), agent.config.lang
    )
    await ws.accept()
    lock = asyncio.Lock()

    async def send(message: dict[str, Any]) -> None:
        async with lock:
            if ws.application_state == WebSocketState.CONNECTED:
                await ws.send_text(json.dumps(message, ensure_ascii=False))

    try:
        first = await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT)
        hello = json.loads(first)
    except (TimeoutError, ValueError, WebSocketDisconnect, KeyError):
        hello = None
    if not (
        isinstance(hello, dict)
        and hello.get("type") == "auth"
        and isinstance(hello.get("token"), str)
        and token_ok(hello["token"], agent.config.token)
    ):
        with using(lang):
            body = refusal(
                REFUSED_CODE,
                "Unauthorized",
                _('the first message must be {{"type": "auth", "token": API token}}'),
            )
        with contextlib.suppress(Exception):
            await send({"type": "error", **body})
            await ws.close(1008)
        return
    with using(lang):
        await send(
            {
                "type": "ready",
                "reader": agent.hub.reader,
                "version": __version__,
                "methods": list(OPERATIONS),
            }
        )
    queue = agent.hub.subscribe()
    tasks: set[asyncio.Task[None]] = set()

    async def pump() -> None:
        while True:
            await send(await queue.get())

    async def answer(message: Any) -> None:
        started = time.perf_counter()
        ident = message.get("id") if isinstance(message, dict) else None
        if isinstance(ident, bool) or not isinstance(ident, (int, str, type(None))):
            ident = None
        message_lang = lang
        if isinstance(message, dict) and isinstance(message.get("lang"), str):
            message_lang = request_language(message["lang"], None, lang)
        method = "?"
        with using(message_lang):
            if not isinstance(message, dict):
                reply = _bad(_("each message must be a JSON object"))
            else:
                method_value = message.get("method")
                params = message.get("params", {})
                session = message.get("operator")
                if not isinstance(method_value, str):
                    reply = _bad(_("field 'method' must be a string"))
                elif not isinstance(params, dict):
                    reply = _bad(_("field 'params' must be a JSON object"))
                elif session is not None and not isinstance(session, str):
                    reply = _bad(_("field 'operator' must be a string"))
                else:
                    method = method_value if method_value in OPERATIONS else "?"
                    reply = await perform(agent, method_value, params, session)
            await send({"type": "result", "id": ident, "status": reply.status, **reply.body})
        logging.getLogger("sscard.agent.access").info(
            "WS %s %s %d %.1fms",
            ws.url.path,
            method,
            reply.status,
            (time.perf_counter() - started) * 1000,
        )

    pumping = asyncio.create_task(pump())
    try:
        while True:
            text = await ws.receive_text()
            try:
                message: Any = json.loads(text)
            except ValueError:
                message = None
            task = asyncio.create_task(answer(message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        agent.hub.unsubscribe(queue)
        pumping.cancel()
        for task in list(tasks):
            task.cancel()


# --- the application ----------------------------------------------------------------------------


def create_app(
    config: AgentConfig,
    service: CardService,
    *,
    store: Callable[[], OperatorStore],
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The agent's application: the API, the kiosk page when ``config.kiosk``, ``routes``.

    Starting the application (its lifespan) starts the reader's presence watch,
    whose changes the :class:`EventHub` fans out.
    """
    agent = Agent(
        config=config,
        service=service,
        store=store,
        hub=EventHub(service.reader.name),
        pin_limiter=RateLimiter(config.pin_attempts, config.pin_window),
    )
    table: list[BaseRoute] = [
        Route("/api/health", health, methods=["GET"]),
        Route("/api/status", endpoint("status", body=False), methods=["GET"]),
        Route("/api/iReadCardBas", endpoint("iReadCardBas", body=True), methods=["POST"]),
        Route("/api/pin/status", endpoint("pin.status", body=False), methods=["GET"]),
        Route("/api/iVerifyPIN", endpoint("iVerifyPIN", body=True), methods=["POST"]),
        Route("/api/iChangePIN", endpoint("iChangePIN", body=True), methods=["POST"]),
        Route("/api/iReloadPIN", endpoint("iReloadPIN", body=True), methods=["POST"]),
        Route("/api/iUnblockPIN", endpoint("iUnblockPIN", body=True), methods=["POST"]),
        Route("/api/operator/login", operator_login, methods=["POST"]),
        Route("/api/operator/logout", operator_logout, methods=["POST"]),
        WebSocketRoute("/api/ws", websocket_api),
    ]
    if config.kiosk:
        from sscard.agent.kiosk_web import kiosk_routes  # it names Agent: imported here

        table += kiosk_routes(agent)
    table += list(routes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        agent.hub.bind(asyncio.get_running_loop())
        stop = threading.Event()
        watcher = service.reader.watch(agent.hub.changed, stop)
        try:
            yield
        finally:
            stop.set()
            await to_thread.run_sync(watcher.join, 2.0)

    app = Starlette(
        routes=table,
        middleware=[Middleware(Guard, allowed_origins=config.allowed_origins, lang=config.lang)],
        exception_handlers={404: _not_found, 405: _not_found},
        lifespan=lifespan,
    )
    app.state.agent = agent
    return app


# --- serving ------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn's server, stopping cleanly on SIGINT / SIGTERM (no re-raise afterwards)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def listening_socket(address: str, port: int) -> socket.socket:
    """The agent's listening TCP socket on ``address`` (loopback), bound to ``port`` (0: any)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says TCP (proto 0 does not), and without it every answer waits
    # ~40 ms for a delayed ACK (Nagle) between its header and body writes.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise errors.InvalidInput(
            _("cannot listen on {address} port {port}: {reason}").format(
                address=address, port=port, reason=exc.strerror or type(exc).__name__
            ),
            [("port", _("a free port, or 0 for any"))],
        ) from None
    return sock


def serve(
    config: AgentConfig,
    service: CardService,
    store: Callable[[], OperatorStore],
    *,
    ready: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
    routes: Sequence[BaseRoute] = (),
) -> None:
    """Serve the agent in this thread until SIGINT / SIGTERM (main thread) or ``stop``.

    ``ready(url)`` is called once the server accepts connections (with
    ``port=0``, the URL tells the port chosen). uvicorn's own access log is off:
    :class:`~sscard.agent.guard.Guard` writes one without secrets.
    """
    address = loopback_address(config.host)
    app = create_app(config, service, store=store, routes=routes)
    sock = listening_socket(address, config.port)
    port = sock.getsockname()[1]
    url = url_for(address, port)
    server = _Server(
        uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
            ws="websockets-sansio",
            ws_max_size=64 * 1024,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=5,
        )
    )

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started and ready is not None:
            ready(url)
        while not task.done():
            if stop is not None and stop.is_set():
                server.should_exit = True
            await asyncio.wait([task], timeout=0.1)
        await task

    try:
        asyncio.run(main())
    finally:
        sock.close()
