"""The append-only audit trail (regulation art. 13-14: monitor, record and trace).

One row per operator action in ``audit_log`` of the local store::

    seq, time, operator, role, action, card_serial, card_number, outcome, error,
    detail, prev_hash, hash

``hash = SHA-256(prev_hash ‖ canonical JSON of the other fields, seq included)``
and ``prev_hash`` of record 1 is 64 zeros: a hash chain, so an edited, deleted
or reordered record breaks it (:mod:`sscard.audit.integrity`). Signed checkpoints
(:mod:`sscard.audit.signing`) stop an attacker from re-computing the chain;
with a checkpoint signer armed, :func:`record` writes them automatically.

No record holds a PIN, key, passphrase or password: the fields are ids, names
of actions and error classes; ``detail`` keys that look like secrets are
refused (:class:`ValueError`, a programming error).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple, Protocol

from sscard.audit.schema import ensure_schema
from sscard.clock import iso, now_utc
from sscard.db import Connection, transaction
from sscard.errors import InvalidInput
from sscard.i18n import _

if TYPE_CHECKING:
    from sscard.audit.signing import CheckpointSigner

GENESIS = "0" * 64
OUTCOMES = ("ok", "refused", "failed")


_SECRET_WORDS = re.compile(r"pin|pass|secret|password|token|value|cryptogram|puk", re.I)


class Actor(Protocol):
    """Who did it: :class:`sscard.auth.Operator` or anything with an id and a role."""

    @property
    def id(self) -> str: ...
    @property
    def role(self) -> str: ...


class AuditRecord(NamedTuple):
    """One audit record as stored."""

    seq: int
    time: str
    operator: str | None
    role: str | None
    action: str
    card_serial: str | None
    card_number: str | None
    outcome: str
    error: str | None
    detail: str | None
    prev_hash: str
    hash: str

    def content(self) -> dict[str, object]:
        """The hashed fields."""
        data = self._asdict()
        del data["prev_hash"], data["hash"]
        return data

    def unreadable(self) -> str | None:
        """Why this row cannot be shown as written (a tampered row), or None when it can."""
        texts = (self.time, self.action, self.outcome, self.prev_hash, self.hash)
        optional = (self.operator, self.role, self.card_serial, self.card_number, self.error)
        if not isinstance(self.seq, int) or not all(isinstance(t, str) for t in texts):
            return _("a field has the wrong type")
        if not all(t is None or isinstance(t, str) for t in (*optional, self.detail)):
            return _("a field has the wrong type")
        if self.detail:
            try:
                json.loads(self.detail)
            except (ValueError, RecursionError):
                return _("its detail is not valid JSON")
        return None

    def info(self) -> dict[str, object]:
        """For JSON output: the fields, ``detail`` decoded; an unreadable row says so."""
        data: dict[str, object] = self._asdict()
        why = self.unreadable()
        if why is None:
            data["detail"] = json.loads(self.detail) if self.detail else None
        else:
            data = {k: _plain(v) for k, v in data.items()}
            data["detail"] = None
            data["raw_detail"] = _plain(self.detail)
            data["unreadable"] = _("{why} (tampered?): run 'sscard audit verify'").format(why=why)
        return data


def _plain(value: object) -> object:
    """A stored value as JSON can carry it (a tampered column may hold a BLOB or a float)."""
    if value is None or isinstance(value, str | int):
        return value
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


_COLUMNS = (
    "seq, time, operator, role, action, card_serial, card_number, outcome, error, detail, "
    "prev_hash, hash"
)


def record_hash(prev_hash: str, content: Mapping[str, object]) -> str:
    """The chain hash of a record with these fields after ``prev_hash``."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical.encode("utf-8")).hexdigest()


def _detail(detail: Mapping[str, object] | None) -> str | None:
    if not detail:
        return None
    for key, value in detail.items():
        if _SECRET_WORDS.search(key):
            raise ValueError(f"audit detail {key!r} looks like a secret; audit records hold none")
        if not isinstance(value, str | int | bool | None):
            raise ValueError(f"audit detail {key!r} must be a string, number, bool or None")
    return json.dumps(dict(detail), sort_keys=True, ensure_ascii=False)


def _serial(card_serial: bytes | str | None) -> str | None:
    if card_serial is None:
        return None
    return card_serial.hex().upper() if isinstance(card_serial, bytes) else card_serial.upper()


def record(
    action: str,
    *,
    operator: Actor | None,
    outcome: str,
    card_serial: bytes | str | None = None,
    card_number: str | None = None,
    error: BaseException | str | None = None,
    detail: Mapping[str, object] | None = None,
    conn: Connection,
) -> AuditRecord:
    """Append one record to the audit trail in the store of ``conn`` and return it.

    With ``conn`` in an open transaction (:func:`sscard.db.transaction`), the
    record is written inside it and commits or rolls back with the caller's
    other writes (issuance: card + audit record + outbox event, atomically);
    outside a transaction it commits on its own. There is no default store:
    the caller says which trail the record belongs to. ``error`` is an
    exception (its class name is stored, never its message) or a class name.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}")
    error_name = type(error).__name__ if isinstance(error, BaseException) else error
    signer = _armed_signer()
    ensure_schema(conn)
    with transaction(conn):
        last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (1, GENESIS) if last is None else (last[0] + 1, last[1])
        partial = AuditRecord(
            seq=seq,
            time=iso(now_utc()),
            operator=operator.id if operator is not None else None,
            role=operator.role if operator is not None else None,
            action=action,
            card_serial=_serial(card_serial),
            card_number=card_number,
            outcome=outcome,
            error=error_name,
            detail=_detail(detail),
            prev_hash=prev,
            hash="",
        )
        rec = partial._replace(hash=record_hash(prev, partial.content()))
        conn.execute(
            f"INSERT INTO audit_log ({_COLUMNS}) VALUES ({', '.join('?' * 12)})",
            tuple(rec),
        )
        if signer is not None:
            from sscard.audit.signing import auto_checkpoint

            auto_checkpoint(conn, signer, rec.seq, rec.hash, action, outcome)
    return rec


ENV_AUDIT_KEYSTORE = "SSCARD_AUDIT_KEYSTORE"
"""The key store that arms automatic checkpoints (:func:`sscard.audit.auto_signer`)."""


def _armed_signer() -> CheckpointSigner | None:
    """The signer of automatic checkpoints, if any is armed.

    Only :func:`sscard.audit.use_signer` (in :mod:`sscard.audit.signing`) or
    ``$SSCARD_AUDIT_KEYSTORE`` can arm one: while neither happened, a record
    loads no signer code (issue 19, start-up).
    """
    if "sscard.audit.signing" not in sys.modules and not os.environ.get(ENV_AUDIT_KEYSTORE):
        return None
    from sscard.audit.signing import auto_signer

    return auto_signer()


def _since(value: str) -> str:
    m = re.fullmatch(r"(\d+)\s*([mhd])", value.strip())
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return iso(now_utc() - timedelta(**{unit: int(m.group(1))}))
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            _("bad time"),
            [("since", _("a date/time like 2025-01-31 or 2025-01-31T08:00, or 24h, 7d"))],
        ) from None
    if t.tzinfo is None:
        t = t.astimezone()  # local time of this machine
    return iso(t.astimezone(UTC))


def records(
    conn: Connection,
    *,
    since: str | None = None,
    operator: str | None = None,
    card: str | None = None,
    action: str | None = None,
    limit: int | None = None,
) -> list[AuditRecord]:
    """Records matching every filter given, oldest first.

    ``since``: ISO date/time (local time unless it has an offset) or ``30m``,
    ``24h``, ``7d``; ``card``: card serial (hex) or card number; ``action``: an
    action name or its area (``keys`` matches ``keys.generate``).
    """
    ensure_schema(conn)
    where: list[str] = []
    args: list[object] = []
    if since:
        where.append("time >= ?")
        args.append(_since(since))
    if operator:
        where.append("operator = ?")
        args.append(operator)
    if card:
        where.append("(card_number = ? OR card_serial = ?)")
        args += [card, card.upper()]
    if action:
        action = action.lower()  # names are lower case; LIKE's case rule differs by engine
        where.append("(action = ? OR action LIKE ? ESCAPE '\\')")
        args += [action, action.replace("_", "\\_").replace("%", "\\%") + ".%"]
    sql = f"SELECT {_COLUMNS} FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY seq"
    if limit is not None:
        if limit < 0:
            raise InvalidInput(_("bad limit"), [("limit", _("0 or more records"))])
        limit = min(limit, 1 << 62)  # no engine takes more, none has more
        newest = sql.replace(" ORDER BY seq", " ORDER BY seq DESC")
        sql = f"SELECT * FROM ({newest} LIMIT ?) AS recent"
        sql += " ORDER BY seq"
        args.append(limit)
    return [AuditRecord(*row) for row in conn.execute(sql, args)]


def all_records(conn: Connection) -> list[AuditRecord]:
    """Every record in ``seq`` order (for verification)."""
    ensure_schema(conn)
    return [AuditRecord(*r) for r in conn.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq")]
