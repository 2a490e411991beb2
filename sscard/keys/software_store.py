"""The software key store: one file, encrypted at rest (docs/keys.md, "Software key store").

File layout::

    b"SSCARDKS" ‖ u16 header length ‖ header (JSON, UTF-8) ‖ AES-256-GCM(body)

The header carries the scrypt parameters, salt, GCM nonce, store kind and a
passphrase check value; the whole header is the GCM associated data, so any
change to it (or to the body) fails authentication. scrypt yields 64 bytes: the
first 32 are the AES key, the last 32 key an HMAC that makes the check value.
A wrong passphrase is reported as :class:`WrongPassphrase`; a body that fails
GCM under the right passphrase as :class:`CorruptKeyStore`. Writes go to a
temporary file (mode 0600) that is fsynced and renamed over the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sscard.errors import (
    CorruptKeyStore,
    InvalidInput,
    KeyExists,
    UnknownKeyReference,
    WrongPassphrase,
)
from sscard.fileio import atomic_write
from sscard.i18n import _
from sscard.keys.entry import KeyEntry

MAGIC = b"SSCARDKS"
FORMAT = 1
KINDS = ("root", "zone", "component")
MIN_PASSPHRASE = 8


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt cost; the defaults are strong (128 MiB, ~0.5 s); tests lower ``n`` explicitly."""

    n: int = 2**17
    r: int = 8
    p: int = 1

    def check(self) -> None:
        """Refuse parameters too weak to keep or too costly to open (a hostile header)."""
        ok = (
            self.n >= 2**10
            and self.n & (self.n - 1) == 0
            and self.n <= 2**20
            and 1 <= self.r <= 16
            and 1 <= self.p <= 4
        )
        if not ok:
            raise CorruptKeyStore(_("key store has out-of-range scrypt parameters"))


DEFAULT_SCRYPT = ScryptParams()


def _derive(passphrase: str, salt: bytes, params: ScryptParams) -> tuple[bytes, bytes]:
    out = hashlib.scrypt(
        passphrase.encode("utf-8"),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=256 * 1024 * 1024 + 128 * params.r * params.n * 2,
        dklen=64,
    )
    return out[:32], out[32:]


def _check_value(mac_key: bytes) -> bytes:
    return hmac.new(mac_key, b"sscard key store passphrase check", "sha256").digest()[:16]


class SoftwareKeyStore:
    """Keys in memory, loaded from / saved to one encrypted file."""

    development = False

    def __init__(
        self,
        entries: Iterable[KeyEntry] = (),
        *,
        kind: str = "root",
        city: str | None = None,
        path: Path | None = None,
    ) -> None:
        if kind not in KINDS:
            raise InvalidInput(
                _("invalid store kind"),
                [("kind", _("one of {choices}").format(choices=", ".join(KINDS)))],
            )
        self.kind = kind
        self.city = city
        self.path = path
        self._entries: dict[tuple[str, int], KeyEntry] = {}
        self._secret: tuple[bytes, ScryptParams, bytes, bytes] | None = (
            None  # key, params, salt, check
        )
        for e in entries:
            self.add(e)

    def __repr__(self) -> str:
        return (
            f"SoftwareKeyStore(path={str(self.path)!r}, kind={self.kind!r}, "
            f"city={self.city!r}, keys={len(self._entries)})"
        )

    # --- contents -------------------------------------------------------------

    def entries(self) -> list[KeyEntry]:
        """All entries, sorted by reference then version."""
        return [self._entries[k] for k in sorted(self._entries)]

    def versions(self, ref: str) -> list[int]:
        """The versions held for ``ref``, ascending."""
        return sorted(v for r, v in self._entries if r == ref)

    def get(self, ref: str, version: int | None = None) -> KeyEntry:
        """The entry for ``ref`` at ``version`` (default: the highest version held)."""
        if version is None:
            held = self.versions(ref)
            if not held:
                raise UnknownKeyReference(ref)
            version = held[-1]
        try:
            return self._entries[(ref, version)]
        except KeyError:
            raise UnknownKeyReference(ref, version) from None

    def add(self, entry: KeyEntry) -> None:
        """Add a new entry; :class:`KeyExists` if that reference and version are held."""
        key = (entry.ref, entry.version)
        if key in self._entries:
            raise KeyExists(
                _("key {ref} version {version} is already in the store").format(
                    ref=entry.ref, version=entry.version
                )
            )
        if entry.depth > 0 and self.city is not None and entry.city != self.city:
            raise InvalidInput(
                _("key is for another city"),
                [("city", _("store is for {city}").format(city=self.city))],
            )
        self._entries[key] = entry

    # --- files ----------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        passphrase: str,
        *,
        kind: str = "root",
        city: str | None = None,
        entries: Iterable[KeyEntry] = (),
        scrypt: ScryptParams = DEFAULT_SCRYPT,
    ) -> SoftwareKeyStore:
        """Create a new store file (refuses to overwrite an existing file)."""
        p = Path(path)
        if p.exists():
            raise InvalidInput(
                _("key store exists"), [("path", _("{path} already exists").format(path=p))]
            )
        if len(passphrase) < MIN_PASSPHRASE:
            raise InvalidInput(
                _("passphrase too short"),
                [
                    (
                        "passphrase",
                        _("at least {length} characters").format(length=MIN_PASSPHRASE),
                    )
                ],
            )
        scrypt.check()
        store = cls(entries, kind=kind, city=city, path=p)
        salt = secrets.token_bytes(16)
        key, mac_key = _derive(passphrase, salt, scrypt)
        store._secret = (key, scrypt, salt, _check_value(mac_key))
        store.save()
        return store

    @classmethod
    def open(cls, path: str | os.PathLike[str], passphrase: str) -> SoftwareKeyStore:
        """Open and decrypt a store file; typed errors for every failure."""
        p = Path(path)
        try:
            blob = p.read_bytes()
        except FileNotFoundError:
            raise InvalidInput(
                _("no key store"), [("path", _("{path} does not exist").format(path=p))]
            ) from None
        header, raw_header, body = _split(blob)
        try:
            params = ScryptParams(int(header["n"]), int(header["r"]), int(header["p"]))
            salt = bytes.fromhex(header["salt"])
            nonce = bytes.fromhex(header["nonce"])
            check = bytes.fromhex(header["check"])
            kind = str(header["kind"])
            city = header.get("city")
        except (KeyError, ValueError, TypeError):
            raise CorruptKeyStore(
                _("{path}: key store header is incomplete").format(path=p)
            ) from None
        params.check()
        key, mac_key = _derive(passphrase, salt, params)
        if not hmac.compare_digest(_check_value(mac_key), check):
            raise WrongPassphrase(
                _("wrong passphrase for key store {path} (or its header was altered)").format(
                    path=p
                )
            )
        try:
            plain = AESGCM(key).decrypt(nonce, body, raw_header)
        except InvalidTag:
            raise CorruptKeyStore(
                _("{path}: key store failed its integrity check (tampered?)").format(path=p)
            ) from None
        store = cls(_entries_from(plain, p), kind=kind, city=city, path=p)
        store._secret = (key, params, salt, check)
        return store

    def save(self) -> None:
        """Encrypt and write atomically: temp file (0600), fsync, rename, fsync the directory."""
        if self.path is None or self._secret is None:
            raise InvalidInput(
                _("store has no file"), [("path", _("create or open a store file first"))]
            )
        key, params, salt, check = self._secret
        nonce = secrets.token_bytes(12)
        header = {
            "format": FORMAT,
            "kdf": "scrypt",
            "n": params.n,
            "r": params.r,
            "p": params.p,
            "salt": salt.hex(),
            "cipher": "aes-256-gcm",
            "nonce": nonce.hex(),
            "check": check.hex(),
            "kind": self.kind,
            "city": self.city,
        }
        hb = json.dumps(header, sort_keys=True).encode("utf-8")
        raw_header = MAGIC + struct.pack(">H", len(hb)) + hb
        body = json.dumps(
            {"entries": [_entry_to_json(e) for e in self.entries()]}, sort_keys=True
        ).encode("utf-8")
        atomic_write(self.path, raw_header + AESGCM(key).encrypt(nonce, body, raw_header))


def _split(blob: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 2:
        raise CorruptKeyStore(_("not an sscard key store file"))
    (n,) = struct.unpack(">H", blob[len(MAGIC) : len(MAGIC) + 2])
    end = len(MAGIC) + 2 + n
    if len(blob) < end + 16:
        raise CorruptKeyStore(_("key store file is truncated"))
    try:
        header = json.loads(blob[len(MAGIC) + 2 : end].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CorruptKeyStore(_("key store header is not readable")) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CorruptKeyStore(_("unsupported key store format"))
    return header, blob[:end], blob[end:]


def _entry_to_json(e: KeyEntry) -> dict[str, Any]:
    return {
        "ref": e.ref,
        "version": e.version,
        "algorithm": e.algorithm,
        "levels": e.levels,
        "depth": e.depth,
        "city": e.city,
        "value": e.value.hex(),
    }


def _entries_from(plain: bytes, path: Path) -> list[KeyEntry]:
    try:
        data = json.loads(plain.decode("utf-8"))
        return [
            KeyEntry(
                ref=d["ref"],
                version=d["version"],
                algorithm=d["algorithm"],
                levels=d["levels"],
                depth=d["depth"],
                city=d.get("city"),
                value=bytes.fromhex(d["value"]),
            )
            for d in data["entries"]
        ]
    except (KeyError, ValueError, TypeError, InvalidInput):
        raise CorruptKeyStore(
            _("{path}: key store content is not valid").format(path=path)
        ) from None
