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
"""

from __future__ import annotations

import hmac
import secrets
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sscard.audit.schema import ensure_schema
from sscard.auth import localdb
from sscard.auth.store import iso, now_utc
from sscard.errors import CheckpointKeyMissing, InvalidInput
from sscard.keys.entry import KeyEntry
from sscard.keys.software_store import SoftwareKeyStore

KEY_REF = "AUDIT/CPK/01"
KEY_ALGORITHM = "3des"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One signed checkpoint: the chain head ``(seq, hash)`` at ``time``."""

    id: int
    seq: int
    hash: str
    time: str
    key_id: str
    mac: str

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
                f"the key store holds no audit checkpoint key {KEY_REF}; "
                "add one with 'sscard audit init-key STORE'"
            )

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
            "no checkpoint key in a token",
            [("--keystore", "the audit checkpoint key lives in a software key store file")],
        )
    return CheckpointSigner.from_store(
        SoftwareKeyStore.open(spec, secret(f"Passphrase for {spec}"))
    )


def init_key(store: SoftwareKeyStore) -> KeyEntry:
    """Add a new checkpoint key version to ``store`` and save it; returns the entry."""
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


def checkpoint(conn: sqlite3.Connection, signer: CheckpointSigner) -> Checkpoint:
    """Sign the current head of the audit trail and store the checkpoint."""
    ensure_schema(conn)
    with localdb.write_transaction(conn):
        last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, head = (0, "0" * 64) if last is None else (int(last[0]), str(last[1]))
        cp = signer.sign(seq, head, iso(now_utc()))
        cur = conn.execute(
            "INSERT INTO audit_checkpoints (seq, hash, time, key_id, mac) VALUES (?, ?, ?, ?, ?)",
            (cp.seq, cp.hash, cp.time, cp.key_id, cp.mac),
        )
    return Checkpoint(int(cur.lastrowid or 0), cp.seq, cp.hash, cp.time, cp.key_id, cp.mac)


def checkpoints(conn: sqlite3.Connection) -> list[Checkpoint]:
    """Every stored checkpoint, oldest first."""
    ensure_schema(conn)
    rows = conn.execute(
        "SELECT id, seq, hash, time, key_id, mac FROM audit_checkpoints ORDER BY id"
    )
    return [Checkpoint(*r) for r in rows]
