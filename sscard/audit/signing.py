"""Signed checkpoints of the audit trail (regulation art. 14; docs/operators.md).

The hash chain alone shows a clumsy edit; someone who can write the database
could re-compute every hash after their edit. A checkpoint fixes the chain
head (record ``seq`` and its ``hash``) with an HMAC-SHA256 under the **audit
checkpoint key**, which lives in an encrypted key store, not in the database:

* key store entry ``AUDIT/CPK/01`` (16 random bytes, stored as a ``3des``-typed
  entry because the store format types every key; it is only ever used as the
  input of HMAC-SHA256 below), added by ``sscard audit init-key STORE``;
  ``sscard keys list`` shows its KCV; a new version (``init-key`` again) signs
  new checkpoints, old versions still verify old ones;
* the development key store (``--keystore dev``) derives the same entry from
  the published development seed: for tests and demos only.

``hk = HMAC-SHA256(key, "sscard audit checkpoint key")``,
``key_id = HMAC-SHA256(key, "sscard audit key id")[:8]`` (hex),
``mac = HMAC-SHA256(hk, "sscard-audit-checkpoint-v1|seq|hash|time|key_id")``.

**Automatic checkpoints**: once a process has a signer (:func:`use_signer`, or
``$SSCARD_AUDIT_KEYSTORE`` = ``dev`` or a key store file whose passphrase is in
``$SSCARD_AUDIT_KEYSTORE_PASSPHRASE`` / ``$SSCARD_KEYSTORE_PASSPHRASE``),
:func:`sscard.audit.record` signs the new head in the same transaction after
every state-changing action that succeeded (anything but
:data:`READ_ONLY_ACTIONS`) and after every :data:`AUTO_EVERY` records
otherwise. Without a signer nothing is signed, yet the trail is still
witnessed: ``sscard sync push`` sends the live head of the chain to the
exchange platform, signed when a checkpoint of it exists or can be made,
else bare (:meth:`Checkpoint.unsigned`); docs/operators.md, "Audit trail".
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sscard.audit.log import ENV_AUDIT_KEYSTORE
from sscard.audit.schema import ensure_schema
from sscard.clock import iso, now_utc
from sscard.db import Connection, transaction
from sscard.errors import CheckpointKeyMissing, InvalidInput
from sscard.i18n import _

if TYPE_CHECKING:
    from sscard.keys.entry import KeyEntry
    from sscard.keys.software_store import SoftwareKeyStore

KEY_REF = "AUDIT/CPK/01"
KEY_ALGORITHM = "3des"

ENV_AUDIT_PASSPHRASE = "SSCARD_AUDIT_KEYSTORE_PASSPHRASE"
ENV_KEYSTORE_PASSPHRASE = "SSCARD_KEYSTORE_PASSPHRASE"
AUTO_EVERY = 20
"""With a signer, a checkpoint at least every this many records."""
READ_ONLY_ACTIONS = frozenset(
    {"card.read", "audit.read", "audit.verify", "operator.list", "operator.login"}
)
"""Actions that change nothing: they get no checkpoint of their own."""

log = logging.getLogger("sscard.audit")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One checkpoint: the chain head ``(seq, hash)`` at ``time``.

    Stored ones are signed; the head the exchange platform witnesses may be
    unsigned (``key_id`` and ``mac`` empty, null on the wire) when the service
    point has no checkpoint key.
    """

    id: int
    seq: int
    hash: str
    time: str
    key_id: str
    mac: str

    @classmethod
    def unsigned(cls, seq: int, head: str, time: str) -> Checkpoint:
        """A bare head ``(seq, head)``: no signature, for the platform's witness only."""
        return cls(0, seq, head, time, "", "")

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Checkpoint:
        """A checkpoint as the exchange platform sends it (signed or not)."""
        return cls(
            0,
            int(data["seq"]),
            str(data["hash"]),
            str(data["time"]),
            str(data.get("key_id") or ""),
            str(data.get("mac") or ""),
        )

    @property
    def signed(self) -> bool:
        """Whether it carries a signature (an unsigned head does not)."""
        return bool(self.key_id and self.mac)

    def wire(self) -> dict[str, object]:
        """The checkpoint as the exchange platform receives it (no local id; unsigned: nulls)."""
        return {
            "seq": self.seq,
            "hash": self.hash,
            "time": self.time,
            "key_id": self.key_id if self.signed else None,
            "mac": self.mac if self.signed else None,
        }

    def message(self) -> bytes:
        """The signed bytes."""
        return (
            f"sscard-audit-checkpoint-v1|{self.seq}|{self.hash}|{self.time}|{self.key_id}".encode()
        )


class CheckpointSigner:
    """Signs and verifies checkpoints; holds every version of the checkpoint key it was given."""

    def __init__(self, keys: Iterable[KeyEntry], *, development: bool = False) -> None:
        self._keys: dict[str, bytes] = {}
        self._current: str | None = None
        self.development = development
        best = -1
        for entry in keys:
            if entry.ref != KEY_REF:
                continue
            kid = hmac.new(entry.value, b"sscard audit key id", "sha256").hexdigest()[:16]
            self._keys[kid] = hmac.new(
                entry.value, b"sscard audit checkpoint key", "sha256"
            ).digest()
            if entry.version > best:
                best, self._current = entry.version, kid
        if self._current is None:
            raise CheckpointKeyMissing(
                _("the key store holds no audit checkpoint key {key}").format(key=KEY_REF)
            ).with_hint(_("add a checkpoint key to the store first"))

    def __repr__(self) -> str:
        return f"CheckpointSigner(key_id={self._current}, versions={len(self._keys)})"

    @classmethod
    def from_store(cls, store: SoftwareKeyStore) -> CheckpointSigner:
        """The signer of a software key store (root or zone) holding ``AUDIT/CPK/01``."""
        return cls(store.entries(), development=store.development)

    @classmethod
    def development_signer(cls) -> CheckpointSigner:
        """The development checkpoint key (published: tests and demos only)."""
        from sscard.keys.dev import development_root
        from sscard.keys.entry import KeyEntry

        entry = KeyEntry(
            ref=KEY_REF,
            version=1,
            algorithm=KEY_ALGORITHM,
            levels=0,
            depth=0,
            value=development_root(KEY_REF, 1, KEY_ALGORITHM),
        )
        return cls([entry], development=True)

    @property
    def key_id(self) -> str:
        """The id of the key new checkpoints are signed with."""
        assert self._current is not None
        return self._current

    def knows(self, key_id: str) -> bool:
        """Whether this signer holds the key with ``key_id``."""
        return key_id in self._keys

    def sign(self, seq: int, head: str, time: str) -> Checkpoint:
        """A checkpoint of ``(seq, head)`` (not yet stored: ``id`` is 0)."""
        unsigned = Checkpoint(0, seq, head, time, self.key_id, "")
        mac = hmac.new(self._keys[self.key_id], unsigned.message(), "sha256").hexdigest()
        return Checkpoint(0, seq, head, time, self.key_id, mac)

    def valid(self, cp: Checkpoint) -> bool:
        """Whether ``cp`` carries a good MAC under one of this signer's keys."""
        key = self._keys.get(cp.key_id)
        if key is None:
            return False
        good = hmac.new(key, cp.message(), "sha256").hexdigest()
        return hmac.compare_digest(good, cp.mac)


def open_signer(spec: str, secret: Callable[[str], str]) -> CheckpointSigner:
    """The signer for a key store spec: a software store path, or ``dev``.

    ``secret(label)`` supplies the store passphrase (fd, environment or prompt).
    """
    if spec == "dev":
        return CheckpointSigner.development_signer()
    if spec.startswith("pkcs11:"):
        raise InvalidInput(
            _("no checkpoint key in a token"),
            [("keystore", _("the audit checkpoint key lives in a software key store file"))],
        )
    from sscard.keys.software_store import SoftwareKeyStore  # its ciphers load only now

    return CheckpointSigner.from_store(
        SoftwareKeyStore.open(spec, secret(_("Passphrase for {store}").format(store=spec)))
    )


def init_key(store: SoftwareKeyStore) -> KeyEntry:
    """Add a new checkpoint key version to ``store`` and save it; returns the entry."""
    import secrets

    from sscard.keys.entry import KeyEntry

    held = store.versions(KEY_REF)
    version = held[-1] + 1 if held else 1
    entry = KeyEntry(
        ref=KEY_REF,
        version=version,
        algorithm=KEY_ALGORITHM,
        levels=0,
        depth=0,
        value=secrets.token_bytes(16),
    )
    store.add(entry)
    store.save()
    return entry


def checkpoint(conn: Connection, signer: CheckpointSigner) -> Checkpoint:
    """Sign the current head of the audit trail and store the checkpoint."""
    ensure_schema(conn)
    with transaction(conn):
        seq, top = head(conn)
        return _store(conn, signer.sign(seq, top, iso(now_utc())))


def _store(conn: Connection, cp: Checkpoint) -> Checkpoint:
    (row_id,) = conn.execute(
        "INSERT INTO audit_checkpoints (seq, hash, time, key_id, mac) VALUES (?, ?, ?, ?, ?)"
        " RETURNING id",
        (cp.seq, cp.hash, cp.time, cp.key_id, cp.mac),
    ).fetchone()
    return Checkpoint(int(row_id), cp.seq, cp.hash, cp.time, cp.key_id, cp.mac)


def head(conn: Connection) -> tuple[int, str]:
    """The current head of the chain: the last record's ``(seq, hash)``; ``(0, zeros)`` if none."""
    ensure_schema(conn)
    last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, "0" * 64) if last is None else (int(last[0]), str(last[1]))


def latest(conn: Connection) -> Checkpoint | None:
    """The checkpoint of the highest record (the newest of those), or None."""
    ensure_schema(conn)
    row = conn.execute(
        "SELECT id, seq, hash, time, key_id, mac FROM audit_checkpoints"
        " ORDER BY seq DESC, id DESC LIMIT 1"
    ).fetchone()
    return None if row is None else Checkpoint(*row)


def auto_checkpoint(
    conn: Connection,
    signer: CheckpointSigner,
    seq: int,
    head: str,
    action: str,
    outcome: str,
) -> Checkpoint | None:
    """Sign record ``seq`` if it is due (inside the caller's transaction); else None.

    Due: a successful state-changing action, or :data:`AUTO_EVERY` records since
    the last checkpoint.
    """
    row = conn.execute("SELECT max(seq) FROM audit_checkpoints").fetchone()
    last = int(row[0]) if row and row[0] is not None else 0
    changed = outcome == "ok" and action not in READ_ONLY_ACTIONS
    if not changed and seq - last < AUTO_EVERY:
        return None
    return _store(conn, signer.sign(seq, head, iso(now_utc())))


_explicit: list[CheckpointSigner | None] = []
_from_env: dict[tuple[object, ...], CheckpointSigner | None] = {}


def use_signer(signer: CheckpointSigner | None) -> None:
    """Arm automatic checkpoints in this process with ``signer`` (None: back to the environment).

    Overrides ``$SSCARD_AUDIT_KEYSTORE``; a long-running service calls it once
    after opening its key store.
    """
    _explicit[:] = [] if signer is None else [signer]


def auto_signer() -> CheckpointSigner | None:
    """The signer of automatic checkpoints: :func:`use_signer`'s, else the environment's.

    ``$SSCARD_AUDIT_KEYSTORE`` = ``dev`` (development key, tests and demos) or
    a key store file opened with ``$SSCARD_AUDIT_KEYSTORE_PASSPHRASE`` (else
    ``$SSCARD_KEYSTORE_PASSPHRASE``); opened once per process. A store that
    cannot be opened, or holds no checkpoint key, arms nothing (logged).
    """
    if _explicit:
        return _explicit[0]
    spec = os.environ.get(ENV_AUDIT_KEYSTORE)
    if not spec:
        return None
    if spec == "dev":
        return CheckpointSigner.development_signer()
    passphrase = os.environ.get(ENV_AUDIT_PASSPHRASE) or os.environ.get(ENV_KEYSTORE_PASSPHRASE)
    try:
        st = os.stat(spec)
    except OSError:
        log.warning(
            _("%s=%s: no such key store; no automatic checkpoints"), ENV_AUDIT_KEYSTORE, spec
        )
        return None
    digest = hashlib.sha256((passphrase or "").encode()).hexdigest()
    cache_key = (spec, st.st_mtime_ns, st.st_size, digest)
    if cache_key not in _from_env:
        signer: CheckpointSigner | None = None
        if passphrase is None:
            log.warning(
                _("%s is set but no passphrase: no automatic checkpoints"), ENV_AUDIT_KEYSTORE
            )
        else:
            from sscard.keys.software_store import SoftwareKeyStore

            try:
                signer = CheckpointSigner.from_store(SoftwareKeyStore.open(spec, passphrase))
            except Exception as exc:  # never let the audit trail stop an action
                log.warning(_("no automatic checkpoints: %s"), type(exc).__name__)
        _from_env[cache_key] = signer
    return _from_env[cache_key]


def checkpoints(conn: Connection) -> list[Checkpoint]:
    """Every stored checkpoint, oldest first."""
    ensure_schema(conn)
    rows = conn.execute(
        "SELECT id, seq, hash, time, key_id, mac FROM audit_checkpoints ORDER BY id"
    )
    return [Checkpoint(*r) for r in rows]
