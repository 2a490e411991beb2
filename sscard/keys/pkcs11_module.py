"""PKCS#11 back end: roots and zone keys live non-extractable in a token (docs/keys.md, "PKCS#11").

Diversification runs inside the token with ``CKM_DES3_ECB_ENCRYPT_DATA`` over
``F ‖ ~F`` (the spec's 3DES form is exactly ECB over those two blocks);
cryptograms and encipherment use ``CKM_DES3_ECB`` on the derived session key.
Tokens have no ISO/IEC 9797-1 MAC algorithm 3, so for MACs and WRITE KEY
records the card-level key (never a root or zone key) is derived extractable
and leaves the token, cached for the session. SM4 has no standard PKCS#11
mechanism: an SM4 key is a :class:`MechanismUnavailable` error naming it.

Key metadata is kept in the object label:
``sscard:<ref>:v<version>:<algorithm>:L<levels>:D<depth>:<city or ->``.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11e
from pkcs11.constants import DEFAULT

from sscard.errors import (
    InvalidInput,
    KeyExists,
    MechanismUnavailable,
    TokenError,
    TokenLocked,
    TokenNotFound,
    UnknownKeyReference,
    WrongTokenPin,
)
from sscard.i18n import N_, _
from sscard.keys.algorithms import block_size, kcv
from sscard.keys.entry import KeyEntry, check_ref
from sscard.keys.scheme import KeySlot
from sscard.keys.security_module import KeyMeta, SecurityModule

SOFTHSM2 = "/usr/lib/softhsm/libsofthsm2.so"
SM4_MECHANISMS = N_("SM4 (no CKM_SM4_ECB / CKM_SM4_ECB_ENCRYPT_DATA in this token)")
_SESSION_CARD_KEYS = 64


@dataclass(frozen=True, slots=True)
class TokenKey:
    """Metadata of one key object in the token; the value stays inside."""

    ref: str
    version: int
    algorithm: str
    levels: int
    depth: int
    city: str | None
    kcv: bytes

    @property
    def label(self) -> str:
        return _label(self.ref, self.version, self.algorithm, self.levels, self.depth, self.city)

    def info(self) -> dict[str, Any]:
        """Metadata for listings (same shape as :meth:`KeyEntry.info`)."""
        tier = "root" if self.depth == 0 else ("card" if self.depth == self.levels else "zone")
        return {
            "ref": self.ref,
            "version": self.version,
            "algorithm": self.algorithm,
            "levels": self.levels,
            "depth": self.depth,
            "tier": tier,
            "city": self.city,
            "kcv": self.kcv.hex().upper(),
        }


def _label(ref: str, version: int, alg: str, levels: int, depth: int, city: str | None) -> str:
    return f"sscard:{ref}:v{version}:{alg}:L{levels}:D{depth}:{city or '-'}"


def _parse_label(label: str) -> tuple[str, int, str, int, int, str | None] | None:
    parts = label.split(":")
    if len(parts) != 7 or parts[0] != "sscard":
        return None
    try:
        return (
            parts[1],
            int(parts[2][1:]),
            parts[3],
            int(parts[4][1:]),
            int(parts[5][1:]),
            None if parts[6] == "-" else parts[6],
        )
    except ValueError:
        return None


class _DerivationString(ctypes.Structure):
    """CK_KEY_DERIVATION_STRING_DATA, the parameter of CKM_DES3_ECB_ENCRYPT_DATA."""

    _fields_ = (("pData", ctypes.c_void_p), ("ulLen", ctypes.c_ulong))


def translate(exc: BaseException) -> Exception:
    """Map a python-pkcs11 exception to a typed sscard error (no secrets in the text)."""
    if isinstance(exc, p11e.PinLocked):
        return TokenLocked(_("the token's user PIN is locked; the security officer must reset it"))
    if isinstance(exc, p11e.PinIncorrect | p11e.PinLenRange | p11e.PinInvalid):
        return WrongTokenPin(_("wrong PIN for the PKCS#11 token"))
    if isinstance(exc, p11e.NoSuchToken | p11e.MultipleTokensReturned):
        return TokenNotFound(_("no unique PKCS#11 token with that label"))
    if isinstance(exc, p11e.UserAlreadyLoggedIn):
        return TokenError(_("the token is already open in this process; reuse that Pkcs11Token"))
    if isinstance(exc, p11e.MechanismInvalid):
        return MechanismUnavailable(_("the requested mechanism"))
    return TokenError(_("PKCS#11 token error: {error}").format(error=type(exc).__name__))


class Pkcs11Token:
    """A logged-in session on one token: import, generate and list keys; back a module."""

    def __init__(self, label: str, pin: str, *, module: str = SOFTHSM2) -> None:
        try:
            lib = pkcs11.lib(module)
        except (RuntimeError, OSError, p11e.PKCS11Error):
            raise TokenNotFound(
                _("cannot load PKCS#11 module {module}").format(module=module)
            ) from None
        try:
            self._token = lib.get_token(token_label=label)
            if self._token.flags & TokenFlag.USER_PIN_LOCKED:
                raise p11e.PinLocked()
            self._session = self._token.open(rw=True, user_pin=pin)
        except p11e.PKCS11Error as exc:
            raise translate(exc) from None
        self.label = label
        self._mechanisms = set(self._token.slot.get_mechanisms())
        self._card_keys: OrderedDict[tuple[tuple[bytes, ...], str, int], bytes] = OrderedDict()
        self._index: list[tuple[TokenKey, Any]] | None = None

    def __repr__(self) -> str:
        return f"Pkcs11Token(label={self.label!r})"

    def __enter__(self) -> Pkcs11Token:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Forget cached card keys and close the session."""
        self._card_keys.clear()
        self._index = None
        self._session.close()

    # --- mechanisms ---------------------------------------------------------------

    def require(self, algorithm: str) -> None:
        """Raise :class:`MechanismUnavailable` unless the token can serve ``algorithm``."""
        if algorithm == "sm4":
            raise MechanismUnavailable(
                _(SM4_MECHANISMS), _("SM4 keys need a token with SM4 support")
            )
        for mech in (Mechanism.DES3_ECB, Mechanism.DES3_ECB_ENCRYPT_DATA):
            if mech not in self._mechanisms:
                raise MechanismUnavailable(f"CKM_{mech.name}")

    # --- key objects --------------------------------------------------------------

    def _objects(self) -> list[tuple[TokenKey, Any]]:
        if self._index is None:
            self._index = self._scan()
        return self._index

    def _scan(self) -> list[tuple[TokenKey, Any]]:
        out = []
        for found in list(self._session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})):
            obj: Any = found
            parsed = _parse_label(obj.label or "")
            if parsed is None:
                continue
            ref, version, alg, levels, depth, city = parsed
            kcv_ = obj.encrypt(bytes(8), mechanism=Mechanism.DES3_ECB)[:3]
            out.append((TokenKey(ref, version, alg, levels, depth, city, kcv_), obj))
        return out

    def entries(self) -> list[TokenKey]:
        """Keys in the token, sorted by reference and version (metadata and KCV only)."""
        return sorted((k for k, _obj in self._objects()), key=lambda k: (k.ref, k.version))

    def _find(self, ref: str, version: int | None) -> tuple[TokenKey, Any]:
        matches = [(k, o) for k, o in self._objects() if k.ref == ref]
        if version is not None:
            matches = [(k, o) for k, o in matches if k.version == version]
        if not matches:
            raise UnknownKeyReference(ref, version)
        return max(matches, key=lambda m: m[0].version)

    def get(self, ref: str, version: int | None = None) -> TokenKey:
        """Metadata of ``ref`` at ``version`` (default: the highest held)."""
        return self._find(ref, version)[0]

    def _check_new(self, ref: str, version: int, algorithm: str) -> None:
        check_ref(ref)
        self.require(algorithm)
        if any(k.ref == ref and k.version == version for k, _obj in self._objects()):
            raise KeyExists(
                _("key {ref} version {version} is already in the token").format(
                    ref=ref, version=version
                )
            )

    def import_key(self, entry: KeyEntry) -> TokenKey:
        """Import a root or zone key as a non-extractable, sensitive token object."""
        self._check_new(entry.ref, entry.version, entry.algorithm)
        label = _label(
            entry.ref, entry.version, entry.algorithm, entry.levels, entry.depth, entry.city
        )
        try:
            self._session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.DES2,
                    Attribute.VALUE: entry.value,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.LABEL: label,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.ENCRYPT: True,
                    Attribute.DECRYPT: False,
                    Attribute.DERIVE: True,
                }
            )
        except p11e.PKCS11Error as exc:
            raise translate(exc) from None
        self._index = None
        return self.get(entry.ref, entry.version)

    def generate(self, slot: KeySlot, version: int | None = None) -> TokenKey:
        """Generate a root for ``slot`` inside the token (it never exists outside)."""
        v = slot.version if version is None else version
        self._check_new(slot.ref, v, slot.algorithm)
        try:
            self._session.generate_key(
                KeyType.DES2,
                label=_label(slot.ref, v, slot.algorithm, slot.levels, 0, None),
                store=True,
                template={
                    Attribute.VALUE_LEN: DEFAULT,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.ENCRYPT: True,
                    Attribute.DECRYPT: False,
                    Attribute.DERIVE: True,
                    Attribute.WRAP: False,
                    Attribute.UNWRAP: False,
                    Attribute.SIGN: False,
                    Attribute.VERIFY: False,
                },
            )
        except p11e.PKCS11Error as exc:
            raise translate(exc) from None
        self._index = None
        return self.get(slot.ref, v)

    # --- in-token derivation --------------------------------------------------------

    def _derive(self, obj: Any, factor: bytes, *, extractable: bool) -> Any:
        data = bytes(factor) + bytes(b ^ 0xFF for b in factor)
        buf = ctypes.create_string_buffer(data, len(data))
        param = bytes(_DerivationString(ctypes.addressof(buf), len(data)))
        try:
            return obj.derive_key(
                KeyType.DES2,
                128,
                mechanism=Mechanism.DES3_ECB_ENCRYPT_DATA,
                mechanism_param=param,
                template={
                    Attribute.VALUE_LEN: DEFAULT,
                    Attribute.TOKEN: False,
                    Attribute.SENSITIVE: not extractable,
                    Attribute.EXTRACTABLE: extractable,
                    Attribute.ENCRYPT: True,
                    Attribute.DERIVE: not extractable,
                },
            )
        except p11e.PKCS11Error as exc:
            raise translate(exc) from None
        finally:
            del buf

    def card_encrypt(self, meta: KeyMeta, factors: tuple[bytes, ...], blocks: bytes) -> bytes:
        """ECB-encrypt under the card key, every step inside the token."""
        self.require(meta.algorithm)
        _key, obj = self._find(meta.ref, meta.version)
        temps = []
        try:
            for f in factors:
                obj = self._derive(obj, f, extractable=False)
                temps.append(obj)
            result: bytes = obj.encrypt(blocks, mechanism=Mechanism.DES3_ECB)
            return result
        except p11e.PKCS11Error as exc:
            raise translate(exc) from None
        finally:
            for t in temps:
                t.destroy()

    def card_key(self, meta: KeyMeta, factors: tuple[bytes, ...]) -> bytes:
        """The card-level key, derived in the token; only this card's key ever leaves."""
        self.require(meta.algorithm)
        if not factors:
            raise MechanismUnavailable(
                _("ISO/IEC 9797-1 MAC algorithm 3"),
                _("{ref} is not diversified per card, so it cannot leave the token").format(
                    ref=meta.ref
                ),
            )
        cache_key = (factors, meta.ref, meta.version)
        cached = self._card_keys.get(cache_key)
        if cached is not None:
            self._card_keys.move_to_end(cache_key)
            return cached
        _key, obj = self._find(meta.ref, meta.version)
        temps = []
        try:
            for i, f in enumerate(factors):
                obj = self._derive(obj, f, extractable=i == len(factors) - 1)
                temps.append(obj)
            value = bytes(obj[Attribute.VALUE])
        except p11e.PKCS11Error as exc:
            raise translate(exc) from None
        finally:
            for t in temps:
                t.destroy()
        self._card_keys[cache_key] = value
        if len(self._card_keys) > _SESSION_CARD_KEYS:
            self._card_keys.popitem(last=False)
        return value


class Pkcs11SecurityModule(SecurityModule):
    """A security module whose roots or zone keys are non-extractable objects in a token."""

    def __init__(self, token: Pkcs11Token, *, city: str | None) -> None:
        super().__init__(city=city)
        self._token = token

    def __repr__(self) -> str:
        return f"Pkcs11SecurityModule(token={self._token!r}, city={self.city!r})"

    def _lookup(self, ref: str, version: int | None) -> KeyMeta:
        meta = self._token.get(ref, version)
        self._token.require(meta.algorithm)
        return meta

    def _card_encrypt(self, meta: KeyMeta, factors: tuple[bytes, ...], blocks: bytes) -> bytes:
        if len(blocks) % block_size(meta.algorithm):
            raise InvalidInput(_("data is not block-aligned"), [("data", _("multiple of 8 bytes"))])
        return self._token.card_encrypt(meta, factors, blocks)

    def _card_key(self, meta: KeyMeta, factors: tuple[bytes, ...]) -> bytes:
        return self._token.card_key(meta, factors)


def token_kcv_matches(token_key: TokenKey, entry: KeyEntry) -> bool:
    """True if a token object and a software entry hold the same key (by KCV)."""
    return token_key.kcv == kcv(entry.value, algorithm=entry.algorithm)
