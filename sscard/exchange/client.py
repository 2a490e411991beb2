"""HTTPS client of the exchange platform protocol (docs/exchange.md, "Protocol").

One keep-alive connection with mutual TLS; every answer is checked against its
message schema. Failures become typed errors: :class:`PlatformUnavailable`
(retry later), :class:`PlatformAuthRefused` (certificates), :class:`ScopeRefused`
(403, outside the agreement), :class:`EventsRejected` (400, with JSON paths).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from sscard.errors import (
    AuditWitnessRefused,
    EventsRejected,
    InvalidInput,
    PlatformAuthRefused,
    PlatformProtocolError,
    PlatformUnavailable,
    ScopeRefused,
)
from sscard.exchange.events import Event
from sscard.exchange.schema import message_problems
from sscard.i18n import _

DEFAULT_TIMEOUT = 30.0
WITNESS_PATH = "/v1/audit/checkpoint"


class PlatformClient:
    """Talk to the platform at ``url`` (``https://host:port``) with ``ssl_context``."""

    def __init__(
        self, url: str, ssl_context: ssl.SSLContext, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise InvalidInput(
                _("bad platform address"), [("platform", _("must be https://HOST[:PORT]"))]
            )
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or 443
        self._ctx = ssl_context
        self._timeout = timeout
        self._conn: http.client.HTTPSConnection | None = None

    def __repr__(self) -> str:
        return f"PlatformClient({self.url!r})"

    def close(self) -> None:
        """Close the connection (a later call reconnects)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- requests ------------------------------------------------------------

    def agreement(self) -> dict[str, Any]:
        """Who the platform thinks this service point is, and its scopes."""
        return self._checked("agreement", self._request("GET", "/v1/agreement"))

    def push(self, events: list[Event]) -> list[dict[str, Any]]:
        """Push a batch; returns one ``{"id", "status", "seq"}`` per event, in order.

        Safe to repeat: the platform acknowledges a known id as ``duplicate``.
        """
        body = json.dumps(
            {"events": [e.to_wire() for e in events]}, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
        answer = self._checked("push-response", self._request("POST", "/v1/events", body))
        results: list[dict[str, Any]] = answer["results"]
        if [r["id"] for r in results] != [e.id for e in events]:
            raise PlatformProtocolError(
                _("the platform acknowledged other events than it was sent")
            )
        return results

    def pull(self, after: int, limit: int = 500) -> dict[str, Any]:
        """Items after cursor ``after``: ``{"items": [...], "cursor": n, "more": bool}``."""
        return self._checked(
            "pull-response", self._request("GET", f"/v1/events?after={after}&limit={limit}")
        )

    def audit_head(self) -> dict[str, Any] | None:
        """The audit checkpoint the platform witnessed for this service point, or None."""
        answer = self._checked("audit-witness", self._request("GET", WITNESS_PATH))
        head: dict[str, Any] | None = answer["checkpoint"]
        return head

    def witness(self, checkpoint: dict[str, Any], extends: dict[str, Any] | None) -> dict[str, Any]:
        """Have the platform witness ``checkpoint``; ``extends`` is our record at its last head.

        Returns ``{"service_point", "status": witnessed|unchanged, "checkpoint"}``;
        :class:`AuditWitnessRefused` when it goes backwards or forks.
        """
        body = json.dumps({"checkpoint": checkpoint, "extends": extends}).encode("utf-8")
        return self._checked("audit-witness", self._request("POST", WITNESS_PATH, body))

    # --- plumbing ------------------------------------------------------------

    def _checked(self, message: str, data: Any) -> dict[str, Any]:
        problems = message_problems(message, data)
        if problems:
            where = "; ".join(f"{p or '/'}: {m}" for p, m in problems[:5])
            raise PlatformProtocolError(
                _("the platform sent an invalid {message}: {problems}").format(
                    message=message, problems=where
                )
            )
        result: dict[str, Any] = data
        return result

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        for attempt in (1, 2):
            fresh = self._conn is None
            if self._conn is None:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, context=self._ctx, timeout=self._timeout
                )
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                self._conn.request(method, path, body=body, headers=headers)
                response = self._conn.getresponse()
                status, raw = response.status, response.read()
                break
            except ssl.SSLCertVerificationError as exc:
                self.close()
                raise PlatformAuthRefused(
                    _(
                        "the platform's certificate is not trusted ({reason}); "
                        "check the trusted CA certificate and the platform address"
                    ).format(reason=exc.verify_message)
                ) from None
            except (
                ssl.SSLEOFError,
                ConnectionResetError,
                ConnectionAbortedError,
                BrokenPipeError,
                http.client.RemoteDisconnected,
            ) as exc:
                # A reused keep-alive connection the server closed: retry once on a new one.
                self.close()
                if attempt == 1 and not fresh:
                    continue
                raise PlatformUnavailable(
                    _("the platform closed the connection ({reason})").format(reason=_why(exc))
                ) from None
            except ssl.SSLError as exc:
                self.close()
                raise PlatformAuthRefused(
                    _(
                        "the platform refused the TLS handshake ({reason}); "
                        "check this service point's certificate and key"
                    ).format(reason=exc.reason or _("TLS error"))
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise PlatformUnavailable(
                    _("cannot reach the platform at {url} ({reason})").format(
                        url=self.url, reason=_why(exc)
                    )
                ) from None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if status == 200:
            return data
        if status >= 500 or status in (408, 429) or not isinstance(data, dict):
            raise PlatformUnavailable(
                _("the platform answered HTTP {status}; retry later").format(status=status)
            )
        problems = [
            (str(e.get("path", "")), str(e.get("message", ""))) for e in data.get("errors", [])
        ]
        ids = [str(e["event_id"]) for e in data.get("errors", []) if "event_id" in e]
        message = str(data.get("message", f"HTTP {status}"))
        if status == 403 and data.get("error") == "unknown_client":
            raise PlatformAuthRefused(
                _("the platform knows no department for this certificate: {message}").format(
                    message=message
                )
            )
        if status == 409 and data.get("error") == "audit_conflict":
            raise AuditWitnessRefused(
                _("the platform refused the audit checkpoint: {message}").format(message=message)
            )
        if status == 403:
            raise ScopeRefused(
                _("refused by the platform: {message}").format(message=message), problems, ids
            )
        raise EventsRejected(
            _("rejected by the platform (HTTP {status}): {message}").format(
                status=status, message=message
            ),
            problems,
            ids,
        )


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return _("timed out")
    return getattr(exc, "strerror", None) or type(exc).__name__
