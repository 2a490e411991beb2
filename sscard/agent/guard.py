"""The agent's guard: loopback only, allowed origins, the API token, the PIN rate limit,
the request log (docs/agent.md, "Security model").

* :func:`loopback_address` refuses to listen anywhere but the loopback address;
* :class:`Guard`, an ASGI middleware in front of every route, refuses a ``Host``
  that is not the agent's own loopback address (DNS rebinding) and an ``Origin``
  that is neither configured nor the agent's own (CORS alone does not stop a
  simple POST, and does not apply to WebSocket at all); it answers CORS
  preflights for the configured origins and writes one line per request to the
  logger ``sscard.agent.access`` — method, path, status, time; never a query
  string, a header or a body, so never a PIN or a token;
* :func:`load_token` keeps the installation's API token in ``agent.token`` in the
  data directory (mode 0600, refused when others can read it); :func:`token_ok`
  compares in constant time;
* :class:`RateLimiter` counts PIN commands in a sliding window.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sscard import errors
from sscard.fileio import is_private, write_secret
from sscard.i18n import _, language, normalize, using
from sscard.paths import data_dir

log = logging.getLogger("sscard.agent")
access_log = logging.getLogger("sscard.agent.access")

TOKEN_NAME = "agent.token"
OPERATOR_HEADER = "X-Sscard-Operator"
REFUSED_CODE = -27010
"""National-style code of a refusal by the guard (SW 6982, security status not satisfied)."""
BAD_REQUEST_CODE = -23
"""The national "invalid input" code, for malformed requests."""

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = f"Authorization, Content-Type, Accept-Language, {OPERATOR_HEADER}"
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


# --- where the agent listens -----------------------------------------------------------


def loopback_address(host: str) -> str:
    """The address to bind for ``host``: a loopback address, else :class:`InvalidInput`.

    ``localhost`` binds 127.0.0.1. The agent never listens on another interface:
    a business system on another machine is not its caller (docs/agent.md).
    """
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise errors.InvalidInput(
            _("the agent listens on the loopback address only"),
            [("host", _("127.0.0.1, ::1 or localhost, not {host}").format(host=repr(host)))],
        )
    return str(address)


def url_for(address: str, port: int) -> str:
    """The agent's base URL for a bound address and port."""
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


def parse_origin(value: str) -> str:
    """An origin as browsers send it (``scheme://host[:port]``, lower case), else InvalidInput."""
    text = value.strip().rstrip("/")
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username
        or port == -1
    ):
        raise errors.InvalidInput(
            _("not an origin: {value}").format(value=repr(value)),
            [
                (
                    "origin",
                    _("scheme://host[:port], e.g. https://biz.example or http://127.0.0.1:8080"),
                )
            ],
        )
    return text.lower()


# --- the API token -------------------------------------------------------------------------


def token_path() -> Path:
    """Where the installation's API token lives: ``agent.token`` in the data directory."""
    return data_dir() / TOKEN_NAME


def new_token() -> str:
    """A fresh API token: 32 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(32)


def load_token(path: Path | None = None, *, create: bool = True, rotate: bool = False) -> str:
    """The installation's API token from ``path`` (default :func:`token_path`).

    ``create``: make one (mode 0600) when there is none; ``rotate``: replace it
    (callers holding the old one get 401 from then on). A file that others can
    read, or that is not this user's, is refused rather than used.
    """
    path = path or token_path()
    if rotate:
        token = new_token()
        write_secret(path, token)
        return token
    try:
        st = path.stat()
        text = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, NotADirectoryError):
        if not create:
            raise errors.InvalidInput(
                _("no API token yet: {path}").format(path=path),
                [("token", _("the agent makes one when it first starts"))],
            ) from None
        token = new_token()
        write_secret(path, token)
        return token
    except (OSError, UnicodeDecodeError):
        raise errors.InvalidInput(
            _("cannot read the API token {path}").format(path=path),
            [("token", _("rotate the API token: a new one replaces the file"))],
        ) from None
    if not is_private(st):
        raise errors.InvalidInput(
            _("the API token {path} is readable by others or not yours; it is refused").format(
                path=path
            ),
            [("token", _("rotate the API token: a new one replaces the file"))],
        )
    if len(text) < 32:
        raise errors.InvalidInput(
            _("the API token {path} is too short").format(path=path),
            [("token", _("rotate the API token: a new one replaces the file"))],
        )
    return text


def token_ok(given: str | None, token: str) -> bool:
    """Whether ``given`` is the API token (constant-time comparison)."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def bearer(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if any."""
    value = headers.get("authorization", "")
    scheme, _sep, rest = value.partition(" ")
    if scheme.lower() != "bearer" or not rest.strip():
        return None
    return rest.strip()


# --- the caller's language ---------------------------------------------------------------------


def request_language(
    query_lang: str | None, accept_language: str | None, default: str | None
) -> str:
    """The answer language: ``?lang=``, else the first supported of ``Accept-Language``
    (by weight), else ``default``, else the process's language."""
    if query_lang:
        chosen = normalize(query_lang)
        if chosen:
            return chosen
    if accept_language:
        weighted: list[tuple[float, int, str]] = []
        for i, item in enumerate(accept_language.split(",")):
            name, *params = (p.strip() for p in item.split(";"))
            weight = 1.0
            for param in params:
                if param.startswith("q="):
                    try:
                        weight = float(param[2:])
                    except ValueError:
                        weight = 0.0
            if name and name != "*" and weight > 0:
                weighted.append((-weight, i, name))
        for _w, _i, name in sorted(weighted):
            chosen = normalize(name)
            if chosen:
                return chosen
    if default:
        chosen = normalize(default)
        if chosen:
            return chosen
    return language()


def scope_language(scope: Scope, default: str | None) -> str:
    """:func:`request_language` for an ASGI scope."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    headers = Headers(scope=scope)
    return request_language(
        (query.get("lang") or [None])[0], headers.get("accept-language"), default
    )


# --- the PIN rate limit -----------------------------------------------------------------------


class RateLimiter:
    """At most ``attempts`` acquisitions per ``window`` seconds (sliding window), per key.

    The agent counts every PIN command (verify, change; host PIN or PIN pad) under one
    key, its reader: a caller cannot try PINs faster than that, whoever else calls.
    """

    def __init__(
        self, attempts: int, window: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.attempts = attempts
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._times: dict[str, deque[float]] = {}

    def acquire(self, key: str = "") -> float:
        """Count one attempt; :class:`TooManyPinAttempts` (with ``retry_after``) when over."""
        now = self._clock()
        with self._lock:
            times = self._times.setdefault(key, deque())
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.attempts:
                wait = max(times[0] + self.window - now, 0.1)
                raise errors.TooManyPinAttempts(
                    _(
                        "too many PIN attempts: at most {attempts} in {window} seconds; "
                        "try again in {wait} seconds"
                    ).format(
                        attempts=self.attempts, window=f"{self.window:g}", wait=math.ceil(wait)
                    ),
                    retry_after=wait,
                )
            times.append(now)
            return now

    def release(self, stamp: float, key: str = "") -> None:
        """Give back an attempt that never reached the card (e.g. the card was in use)."""
        with self._lock:
            times = self._times.get(key)
            if times is not None:
                with contextlib.suppress(ValueError):
                    times.remove(stamp)


# --- the middleware ------------------------------------------------------------------------------


def _host_ok(host_header: str, port: int | None) -> bool:
    parts = urlsplit(f"//{host_header}")
    try:
        given_port = parts.port or 80
    except ValueError:
        return False
    name = parts.hostname or ""
    if name != "localhost":
        try:
            if not ipaddress.ip_address(name).is_loopback:
                return False
        except ValueError:
            return False
    return port is None or given_port == port


def refusal(code: int, error: str, message: str) -> dict[str, Any]:
    """The body of a request-level refusal (docs/agent.md, "Answers")."""
    return {"code": code, "error": error, "message": message}


class Guard:
    """ASGI middleware: Host and Origin checks, CORS for the configured origins, access log."""

    def __init__(self, app: ASGIApp, *, allowed_origins: Iterable[str], lang: str | None) -> None:
        self.app = app
        self.allowed = frozenset(parse_origin(o) for o in allowed_origins)
        self.lang = lang

    def _problem(self, scope: Scope, headers: Headers) -> str | None:
        server = scope.get("server")
        port = server[1] if server else None
        host = headers.get("host", "")
        if not host or not _host_ok(host, port):
            return _("request refused: the Host header is not this agent's loopback address")
        origin = headers.get("origin")
        if origin is not None and not self.origin_ok(origin, host):
            return _("request refused: origin {origin} is not allowed").format(
                origin=repr(origin[:100])
            )
        return None

    def origin_ok(self, origin: str, host: str) -> bool:
        """A configured origin, or the agent's own (its pages: the kiosk)."""
        value = origin.strip().rstrip("/").lower()
        return value in self.allowed or value == f"http://{host.lower()}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        kind = scope["type"]
        method = scope.get("method", "WS") if kind == "http" else "WS"
        status = [0]

        def done() -> None:
            access_log.info(
                "%s %s %d %.1fms",
                method,
                scope.get("path", ""),
                status[0],
                (time.perf_counter() - started) * 1000,
            )

        with using(scope_language(scope, self.lang)):
            problem = self._problem(scope, headers)
        origin = headers.get("origin")
        preflight = (
            kind == "http"
            and method == "OPTIONS"
            and origin is not None
            and "access-control-request-method" in headers
        )
        try:
            if problem is not None:
                status[0] = 403
                if kind == "websocket":
                    await send({"type": "websocket.close", "code": 1008, "reason": ""})
                else:
                    await _send_json(send, 403, refusal(REFUSED_CODE, "Forbidden", problem))
                return
            if preflight:
                status[0] = 204
                cors = self._cors_headers(origin, headers, preflight=True)
                await send({"type": "http.response.start", "status": 204, "headers": cors})
                await send({"type": "http.response.body", "body": b""})
                return

            async def watched(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                    if origin is not None and origin.strip().rstrip("/").lower() in self.allowed:
                        message = {
                            **message,
                            "headers": [
                                *message.get("headers", []),
                                *self._cors_headers(origin, headers, preflight=False),
                            ],
                        }
                elif message["type"] == "websocket.accept":
                    status[0] = 101
                elif message["type"] == "websocket.close" and status[0] == 0:
                    status[0] = 403
                elif message["type"] == "websocket.http.response.start":
                    status[0] = message["status"]
                await send(message)

            await self.app(scope, receive, watched)
        finally:
            done()

    def _cors_headers(
        self, origin: str | None, headers: Headers, *, preflight: bool
    ) -> list[tuple[bytes, bytes]]:
        assert origin is not None
        out = [
            (b"access-control-allow-origin", origin.strip().rstrip("/").encode("latin-1")),
            (b"vary", b"Origin"),
        ]
        if preflight:
            out += [
                (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
                (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                (b"access-control-max-age", b"600"),
            ]
            if headers.get("access-control-request-private-network") == "true":
                # Chromium's Private Network Access: a public page asking the loopback agent
                out.append((b"access-control-allow-private-network", b"true"))
        else:
            out.append((b"access-control-expose-headers", b"Retry-After"))
        return out


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
