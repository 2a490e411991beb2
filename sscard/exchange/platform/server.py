"""The reference platform's HTTPS server: mutual TLS, scopes, validation (docs/exchange.md).

Endpoints (JSON, HTTP/1.1 keep-alive):

- ``GET /v1/agreement``: the caller's department and scopes;
- ``POST /v1/events``: push a batch; 200 with one ack per event, 400 with the
  failing JSON paths, 403 when an event is outside the agreement (or claims
  another service point); nothing is stored unless the whole batch is valid;
- ``GET /v1/events?after=CURSOR&limit=N``: pull the events of the categories the
  agreement lets it pull, from other service points, after the cursor;
- ``GET /v1/audit/checkpoint``: the caller's witnessed audit checkpoint;
  ``POST`` one: kept when it moves forward along the same chain, 409 when it
  goes backwards or forks.

The TLS handshake runs in the connection's own thread; a client without a
certificate from the platform CA is refused there and the refusal is audited.

The HTTP answers are in English whatever the interface language (a protocol:
the client shows them as the platform's words); warnings logged for the
person who runs the platform are translated.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sscard.exchange.platform.config import Department, PlatformConfig
from sscard.exchange.platform.store import PlatformStore, WitnessConflict
from sscard.exchange.schema import CATEGORIES, message_problems, payload_problems
from sscard.exchange.tls import common_name
from sscard.i18n import _

log = logging.getLogger("sscard.exchange.platform")

MAX_BODY = 16 * 1024 * 1024
MAX_PROBLEMS = 100  # problems listed in an error answer; the rest are counted
MAX_PULL = 1000
HANDSHAKE_TIMEOUT = 10.0
WITNESS_PATH = "/v1/audit/checkpoint"


class _Refusal(Exception):
    """An HTTP error answer: status, error code, message and ``(path, message)`` problems."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        problems: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.problems = problems or []


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    platform: Platform

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that broke mid-request is logged, not printed as a traceback."""
        log.warning(
            _("connection from %s failed"), client_address[0], exc_info=log.isEnabledFor(10)
        )

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS handshake in this connection's thread, then HTTP."""
        request.settimeout(HANDSHAKE_TIMEOUT)
        # Headers and body go out as separate writes: without NODELAY, Nagle and
        # the client's delayed ACK add ~40 ms to every answer.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = self.platform.ssl_context.wrap_socket(
            request, server_side=True, do_handshake_on_connect=False
        )
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            _linger_close(tls)
            reason = getattr(exc, "reason", None) or type(exc).__name__
            log.warning(_("TLS handshake refused from %s: %s"), client_address[0], reason)
            self.platform.store.audit(
                None, None, "handshake_refused", 0, {"peer": client_address[0], "reason": reason}
            )
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]
        finally:
            with contextlib.suppress(OSError):
                tls.close()


def _linger_close(sock: socket.socket) -> None:
    """Close after a refused handshake so that the client reads the TLS alert.

    Closing with unread data (the client's first request, sent right after its
    TLS 1.3 Finished) would reset the connection and the alert could be lost.
    """
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(1.0)
        while sock.recv(4096):
            pass
    with contextlib.suppress(OSError):
        sock.close()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sscard-exchange-platform"
    sys_version = ""
    timeout = 60
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    # --- plumbing ------------------------------------------------------------

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _who(self) -> tuple[str, Department]:
        assert isinstance(self.connection, ssl.SSLSocket)
        cn = common_name(self.connection.getpeercert())
        dept = self.server.platform.config.for_client(cn)
        if cn is None or dept is None:
            raise _Refusal(
                403, "unknown_client", "this certificate's service point is in no department"
            )
        return cn, dept

    def _dispatch(self, method: str) -> None:
        platform = self.server.platform
        client: str | None = None
        dept: Department | None = None
        url = urlsplit(self.path)
        action = f"{method} {url.path}"
        detail: dict[str, Any] = {}
        try:
            client, dept = self._who()
            if method == "GET" and url.path == "/v1/agreement":
                action = "agreement"
                status, body = 200, _agreement(client, dept)
            elif method == "POST" and url.path == "/v1/events":
                action = "push"
                status, body, detail = self._push(client, dept)
            elif method == "GET" and url.path == "/v1/events":
                action = "pull"
                status, body, detail = self._pull(client, dept, url.query)
            elif method == "GET" and url.path == WITNESS_PATH:
                action = "audit_head"
                status, body, detail = self._audit_head(client)
            elif method == "POST" and url.path == WITNESS_PATH:
                action = "audit_witness"
                status, body, detail = self._witness(client, dept)
            elif url.path in ("/v1/agreement", "/v1/events", WITNESS_PATH):
                raise _Refusal(405, "method_not_allowed", f"{method} is not allowed here")
            else:
                raise _Refusal(404, "not_found", f"no endpoint {url.path}")
        except OSError:
            raise  # the connection itself failed: nothing to answer on (handle_error logs it)
        except Exception as exc:
            r = _as_refusal(exc)
            status, detail = r.status, {"error": r.error, "problems": r.problems[:20]}
            body = {"error": r.error, "message": r.message}
            if r.problems:
                body["errors"] = r.problems[:MAX_PROBLEMS]
            if len(r.problems) > MAX_PROBLEMS:
                body["errors_omitted"] = len(r.problems) - MAX_PROBLEMS
            if method == "POST":
                self.close_connection = self.close_connection or r.status == 413
        platform.store.audit(dept.id if dept else None, client, action, status, detail)
        log.info("%s %s %s -> %s", client, dept.id if dept else "-", action, status)
        self._send(status, body)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # --- endpoints -----------------------------------------------------------

    def _body(self) -> Any:
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            raise _Refusal(411, "length_required", "a Content-Length header is required")
        length = int(length_text)
        if length > MAX_BODY:
            raise _Refusal(413, "too_large", f"the body exceeds {MAX_BODY} bytes")
        raw = self.rfile.read(length)
        try:
            data = json.loads(raw)
            # A lone surrogate escape parses but is no text: refuse it here. Only a
            # \u escape makes one, and a UTF-8 body without the bytes "\u" has none.
            if b"\\u" in raw or json.detect_encoding(raw) not in ("utf-8", "utf-8-sig"):
                json.dumps(data, ensure_ascii=False).encode("utf-8")
        except RecursionError:
            raise _Refusal(400, "invalid_json", "the body is nested too deeply") from None
        except UnicodeEncodeError:
            raise _Refusal(
                400, "invalid_json", "the body holds a string that is not Unicode text"
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Refusal(
                400, "invalid_json", "the body is not JSON", [{"path": "", "message": str(exc)}]
            ) from None
        return data

    def _push(self, client: str, dept: Department) -> tuple[int, dict[str, Any], dict[str, Any]]:
        data = self._body()
        problems = message_problems("push-request", data, localize=False)  # envelopes included
        events: list[Any] = data.get("events", []) if isinstance(data, dict) else []
        events = events if isinstance(events, list) else []
        for i, event in enumerate(events):
            if isinstance(event, dict) and isinstance(event.get("payload"), dict):
                category = event.get("category")
                if category in CATEGORIES:
                    problems += payload_problems(
                        category, event["payload"], f"/events/{i}/payload", localize=False
                    )
        if problems:
            raise _Refusal(
                400,
                "invalid_request",
                f"{len(problems)} problem(s) in the request; nothing was stored",
                _with_ids(problems, events),
            )
        refused: list[tuple[str, str]] = []
        for i, event in enumerate(events):
            if event["category"] not in dept.push:
                refused.append(
                    (
                        f"/events/{i}/category",
                        f"department {dept.id} has no agreement to push {event['category']}",
                    )
                )
            if event["service_point"] != client:
                refused.append(
                    (f"/events/{i}/service_point", f"the certificate is for {client}, not this")
                )
        if refused:
            raise _Refusal(
                403,
                "scope_refused",
                f"{len(refused)} event(s) outside the sharing agreement; nothing was stored",
                _with_ids(refused, events),
            )
        acks = self.server.platform.store.store_batch(dept.id, events)
        results = [{"id": a.id, "status": a.status, "seq": a.seq} for a in acks]
        stored = sum(1 for a in acks if a.status == "stored")
        detail = {
            "events": len(acks),
            "stored": stored,
            "duplicate": len(acks) - stored,
            "ids": [a.id for a in acks],
        }
        return 200, {"results": results}, detail

    def _pull(
        self, client: str, dept: Department, query: str
    ) -> tuple[int, dict[str, Any], dict[str, Any]]:
        if not dept.pull:
            raise _Refusal(403, "scope_refused", f"department {dept.id} has no agreement to pull")
        params = parse_qs(query)
        values: dict[str, int] = {}
        problems: list[dict[str, str]] = []
        for name, default, top in (("after", 0, None), ("limit", 500, MAX_PULL)):
            text = params.get(name, [str(default)])[-1]
            if not text.isdigit() or (top is not None and not 1 <= int(text) <= top):
                bound = f"1..{top}" if top else "a cursor (integer ≥ 0)"
                problems.append({"path": f"?{name}", "message": f"must be {bound}"})
            else:
                values[name] = int(text)
        if problems:
            raise _Refusal(400, "invalid_request", "bad query parameter", problems)
        items, cursor, more = self.server.platform.store.feed(
            values["after"], values["limit"], dept.pull, client
        )
        detail = {"after": values["after"], "items": len(items), "cursor": cursor}
        return 200, {"items": items, "cursor": cursor, "more": more}, detail

    def _audit_head(self, client: str) -> tuple[int, dict[str, Any], dict[str, Any]]:
        found = self.server.platform.store.audit_head(client)
        if found is None:
            return 200, {"service_point": client, "status": "none", "checkpoint": None}, {}
        cp, received = found
        body = {"service_point": client, "status": "current", "checkpoint": cp}
        return 200, body | {"received_at": received}, {"seq": cp["seq"]}

    def _witness(self, client: str, dept: Department) -> tuple[int, dict[str, Any], dict[str, Any]]:
        data = self._body()
        problems = message_problems("audit-witness-request", data, localize=False)
        if problems:
            raise _Refusal(
                400,
                "invalid_request",
                f"{len(problems)} problem(s) in the request",
                [{"path": p, "message": m} for p, m in problems],
            )
        cp = data["checkpoint"]
        try:
            status = self.server.platform.store.witness(dept.id, client, cp, data["extends"])
        except WitnessConflict as exc:
            raise _Refusal(409, "audit_conflict", str(exc)) from None
        found = self.server.platform.store.audit_head(client)
        assert found is not None
        body = {"service_point": client, "status": status, "checkpoint": found[0]}
        return 200, body | {"received_at": found[1]}, {"seq": cp["seq"], "status": status}


def _as_refusal(exc: Exception) -> _Refusal:
    """The answer for any error of a request: a bad request never closes the connection."""
    if isinstance(exc, _Refusal):
        return exc
    if isinstance(exc, RecursionError):
        return _Refusal(400, "invalid_request", "the body is nested too deeply")
    log.error(_("request failed"), exc_info=exc)
    return _Refusal(500, "internal_error", "the platform failed on this request; retry later")


def _with_ids(problems: list[tuple[str, str]], events: list[Any]) -> list[dict[str, str]]:
    """Problems as JSON, each with the id of the event its path points into (when known)."""
    out = []
    for path, message in problems:
        entry = {"path": path, "message": message}
        parts = path.split("/")
        if len(parts) > 2 and parts[1] == "events" and parts[2].isdigit():
            i = int(parts[2])
            if i < len(events) and isinstance(events[i], dict):
                event_id = events[i].get("id")
                if isinstance(event_id, str):
                    entry["event_id"] = event_id
        out.append(entry)
    return out


def _agreement(client: str, dept: Department) -> dict[str, Any]:
    return {
        "service_point": client,
        "department": dept.id,
        "push": sorted(dept.push),
        "pull": sorted(dept.pull),
    }


class Platform:
    """A running reference platform: ``start()`` in a thread, or ``serve_forever()``."""

    def __init__(
        self,
        config: PlatformConfig,
        store_path: Path,
        ssl_context: ssl.SSLContext,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config
        self.ssl_context = ssl_context
        self.store = PlatformStore(store_path)
        server_class = _Server6 if ":" in host else _Server
        self._httpd = server_class((host, port), _Handler)
        self._httpd.platform = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (useful with port 0)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``https://HOST:PORT`` of this platform."""
        host = str(self._httpd.server_address[0])
        return f"https://{f'[{host}]' if ':' in host else host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` is called from another thread."""
        self._httpd.serve_forever(poll_interval=0.2)

    def start(self) -> Platform:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and the store."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
        self._httpd.server_close()
        self.store.close()
