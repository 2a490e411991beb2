"""SecurityModule: what the session layers call for card crypto (docs/architecture.md, "keys/").

Callers ask for "the cryptogram / MAC / enciphered block for this card and this
key", never for a key: given the card serial (ATR bytes 9..16), a key reference
(a :class:`~sscard.keys.scheme.KeySlot` or ``"SSSE/EAK/01"``) and data, the
module derives the card's key from the root or zone key it holds (spec "Keys":
root → province → city → serial) and returns only the result. No method returns
a root, zone or card key; :meth:`SecurityModule.write_key` returns the new card
key already enciphered under the card's MK, with its MAC.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

from sscard.errors import InvalidInput, SscardError
from sscard.i18n import _
from sscard.keys.algorithms import (
    block_size,
    card_factors,
    constant_time_equal,
    diversify_path,
    ecb_encrypt,
    kcv,
    line_mac,
    pad,
)
from sscard.keys.psam_scheme import psam_key_record, type_code
from sscard.keys.records import key_record
from sscard.keys.scheme import KeySlot
from sscard.keys.software_store import SoftwareKeyStore
from sscard.vocab import KeyType

KeyRef = KeySlot | str


class KeyMeta(Protocol):
    """What a module needs to know about a stored key (never its value)."""

    @property
    def ref(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def levels(self) -> int: ...
    @property
    def depth(self) -> int: ...
    @property
    def city(self) -> str | None: ...


@dataclass(frozen=True, slots=True, repr=False)
class WriteKeyData:
    """Data field of ``84 D4 01 KID``: ``E_MK(key-record) ‖ MAC_MK``, and the new key's KCV."""

    data: bytes
    kcv: bytes

    def __repr__(self) -> str:
        return f"WriteKeyData(data=<{len(self.data)} bytes>, kcv={self.kcv.hex().upper()})"


class SecurityModule(ABC):
    """Card-level crypto over stored root or zone keys; subclasses supply the key operations."""

    development: bool = False

    @property
    def terminal_number(self) -> str:
        """The terminal number (终端机编号) this module stands for: a PSAM's; else none."""
        return ""

    def __init__(self, *, city: str | None) -> None:
        self.city = city

    def for_city(self, city: str | None) -> SecurityModule:
        """This module bound to the city of one card (the city level of diversification).

        The city comes from the card's own data (docs/keys.md, "Which city"): a root
        store then derives that city's keys; a zone store refuses a card of
        another city. ``None`` keeps the module as it is. The copy shares the
        store or token.
        """
        if city is None or city == self.city:
            return self
        bound = copy.copy(self)
        bound.city = city
        return bound

    # --- what subclasses provide ----------------------------------------------

    @abstractmethod
    def _lookup(self, ref: str, version: int | None) -> KeyMeta:
        """The stored key for ``ref`` / ``version`` (highest if None)."""

    @abstractmethod
    def _card_encrypt(self, meta: KeyMeta, factors: tuple[bytes, ...], blocks: bytes) -> bytes:
        """ECB-encrypt block-aligned data under the card key at the end of ``factors``."""

    @abstractmethod
    def _card_key(self, meta: KeyMeta, factors: tuple[bytes, ...]) -> bytes:
        """The card-level key value; used only inside this module (MAC, WRITE KEY)."""

    def _card_mac(self, meta: KeyMeta, factors: tuple[bytes, ...], data: bytes, iv: bytes) -> bytes:
        return line_mac(self._card_key(meta, factors), data, iv=iv, algorithm=meta.algorithm)

    def _mismatch(self, slot: KeySlot, meta: KeyMeta) -> SscardError:
        """The error for a stored key whose algorithm or levels differ from the profile's."""
        return InvalidInput(
            _("stored key {ref} does not match the profile").format(ref=slot.ref),
            [
                (
                    "key",
                    _("store has {algorithm}, {levels} levels").format(
                        algorithm=meta.algorithm, levels=meta.levels
                    ),
                )
            ],
        )

    # --- resolution ---------------------------------------------------------------

    def _resolve(self, serial: bytes, key: KeyRef) -> tuple[KeyMeta, tuple[bytes, ...]]:
        if isinstance(key, KeySlot):
            meta = self._lookup(key.ref, key.version)
            if meta.algorithm != key.algorithm or meta.levels != key.levels:
                raise self._mismatch(key, meta)
        else:
            meta = self._lookup(key, None)
        city = meta.city if meta.depth > 0 else self.city
        if meta.depth > 0 and self.city is not None and self.city != meta.city:
            raise InvalidInput(
                _(
                    "the key store holds the keys of city {store_city}, "
                    "the card is of city {card_city}"
                ).format(store_city=meta.city, card_city=self.city),
                [
                    (
                        "city",
                        _("use a key store of city {city} or the centre's root store").format(
                            city=self.city
                        ),
                    )
                ],
            )
        if meta.levels > 1 and city is None:
            raise InvalidInput(
                _("the card's city is unknown, so its keys cannot be derived"),
                [("city", _("the card carries no region yet and the profile sets no city"))],
            )
        factors = card_factors(city or "000000", bytes(serial), meta.levels)
        return meta, factors[meta.depth :]

    # --- the API the session layers call ------------------------------------------

    def external_auth(
        self,
        serial: bytes,
        key: KeyRef,
        challenge: bytes,
        *,
        process_factor: bytes | None = None,
    ) -> bytes:
        """The EXTERNAL AUTHENTICATE cryptogram for the card's challenge.

        With ``process_factor`` (3.0 reading, docs/card.md) the cryptogram is made
        under the session key: the card key diversified once more by that factor.
        """
        meta, factors = self._resolve(serial, key)
        if process_factor is not None:
            if len(process_factor) != 8:
                raise InvalidInput(
                    _("bad process factor"), [("process_factor", _("must be 8 bytes"))]
                )
            factors = (*factors, bytes(process_factor))
        block = _challenge_block(challenge, meta.algorithm)
        return self._card_encrypt(meta, factors, block)

    def verify_internal_auth(
        self,
        serial: bytes,
        key: KeyRef,
        challenge: bytes,
        response: bytes,
        *,
        process_factor: bytes | None = None,
    ) -> bool:
        """True if the card's INTERNAL AUTHENTICATE ``response`` proves it holds the IAK."""
        expected = self.external_auth(serial, key, challenge, process_factor=process_factor)
        return constant_time_equal(expected, bytes(response))

    def card_id_mac(self, serial: bytes, key: KeyRef, data: bytes) -> bytes:
        """The 4-byte MAC of a card identification code (docs/card.md) [ours].

        Made under the card's own ``key`` (its IAK: only the card and the holders
        of the city's keys have it), the line MAC with a zero IV, over ``data`` =
        region ‖ RID ‖ card sequence ‖ chip serial, so that a code copied to
        another chip does not verify. No key above the card level leaves a token.
        """
        return self.mac(serial, key, data, iv=bytes(8))

    def verify_card_id_mac(self, serial: bytes, key: KeyRef, data: bytes, mac: bytes) -> bool:
        """Constant-time check of a card identification code's MAC."""
        return constant_time_equal(self.card_id_mac(serial, key, data), bytes(mac))

    def mac(self, serial: bytes, key: KeyRef, data: bytes, *, iv: bytes) -> bytes:
        """The 4-byte line MAC over assembled ``data`` with the challenge as ``iv``."""
        meta, factors = self._resolve(serial, key)
        return self._card_mac(meta, factors, bytes(data), bytes(iv))

    def verify_mac(self, serial: bytes, key: KeyRef, data: bytes, mac: bytes, *, iv: bytes) -> bool:
        """Constant-time check of a MAC (e.g. one the card returned)."""
        return constant_time_equal(self.mac(serial, key, data, iv=iv), bytes(mac))

    def encipher(self, serial: bytes, key: KeyRef, data: bytes) -> bytes:
        """``E_K(len ‖ data ‖ 80 00…)`` under the card key (PIN blocks, records)."""
        meta, factors = self._resolve(serial, key)
        if len(data) > 255:
            raise InvalidInput(_("record too long"), [("data", _("at most 255 bytes"))])
        plain = pad(bytes([len(data)]) + bytes(data), block_size(meta.algorithm))
        return self._card_encrypt(meta, factors, plain)

    def protect(
        self,
        serial: bytes,
        key: KeyRef,
        header: bytes,
        data: bytes = b"",
        *,
        challenge: bytes,
        encipher: bool = False,
    ) -> bytes:
        """The data field of a line-protected command: ``data' ‖ MAC`` (docs/keys.md, "Line MAC").

        ``header`` is CLA INS P1 P2 (e.g. ``84 24 00 00`` for PIN UNBLOCK); with
        ``encipher`` the data is first enciphered (PIN RELOAD's ``E_RPK(03 ‖ PIN ‖ 80…)``).
        The MAC covers header ‖ Lc' ‖ data' with the card's challenge as IV.
        """
        if len(header) != 4:
            raise InvalidInput(_("bad header"), [("header", _("must be CLA INS P1 P2 (4 bytes)"))])
        body = self.encipher(serial, key, data) if encipher else bytes(data)
        lc = len(body) + 4
        if lc > 255:
            raise InvalidInput(_("command too long"), [("data", _("Lc' over 255"))])
        return body + self.mac(serial, key, bytes(header) + bytes([lc]) + body, iv=challenge)

    def write_key(
        self, serial: bytes, target: KeySlot, *, under: KeyRef, header: bytes, challenge: bytes
    ) -> WriteKeyData:
        """WRITE KEY data for ``target``: the card key enciphered under ``under`` plus the MAC.

        ``header`` is CLA INS P1 P2 (``84 D4 01 KID``); the MAC covers header ‖ Lc' ‖
        enciphered record with the card's challenge as IV (docs/keys.md, "Line MAC").
        """
        if len(header) != 4:
            raise InvalidInput(_("bad header"), [("header", _("must be CLA INS P1 P2 (4 bytes)"))])
        t_meta, t_factors = self._resolve(serial, target)
        value = self._card_key(t_meta, t_factors)
        record = key_record(target, value)
        new_kcv = kcv(value, algorithm=target.algorithm)
        del value
        data = self.protect(serial, under, header, record, challenge=challenge, encipher=True)
        return WriteKeyData(data, new_kcv)

    def psam_key(
        self,
        psam_serial: bytes,
        key: KeyRef,
        *,
        under: KeyRef,
        header: bytes,
        challenge: bytes,
        error_limit: int = 15,
    ) -> WriteKeyData:
        """WRITE KEY data that loads the **city-level** ``key`` into a PSAM (docs/keys.md, "PSAM").

        The city key is derived inside this module (root → province → city of the
        bound city), put in a PSAM key record, enciphered and MACed under ``under``
        (the PSAM's transport key, diversified by ``psam_serial``) with the PSAM's
        ``challenge``; only the enciphered record and the key's KCV leave.
        """
        if len(header) != 4:
            raise InvalidInput(_("bad header"), [("header", _("must be CLA INS P1 P2 (4 bytes)"))])
        meta, factors = self._resolve(bytes(8), key)  # the card level is dropped below
        if meta.levels < 1 or not factors:
            raise InvalidInput(
                _("stored key {ref} is not a root or zone key of a card key").format(ref=meta.ref),
                [("key", _("a PSAM takes city-level keys of the card key scheme"))],
            )
        value = self._card_key(meta, factors[:-1])
        record = psam_key_record(
            type_code(meta.ref), meta.version, meta.algorithm, error_limit, value
        )
        new_kcv = kcv(value, algorithm=meta.algorithm)
        del value
        data = self.protect(psam_serial, under, header, record, challenge=challenge, encipher=True)
        return WriteKeyData(data, new_kcv)

    def blank_card_transport_key(self, serial: bytes, slot: KeySlot) -> bytes:
        """The transport key a card vendor loads into the blank card ``serial``.

        The one method that returns a card key, and only a transport key (TK):
        it is what the vendor's pre-personalization does with the transport root
        it shares with the centre, and what ``sscard virtual new --keystore``
        needs to make an emulated blank card. Every other key stays inside.
        """
        if slot.type != KeyType.TK:
            raise InvalidInput(
                _("only a transport key can be given out"),
                [("key", _("{ref} is not a TK").format(ref=slot.ref))],
            )
        meta, factors = self._resolve(serial, slot)
        return self._card_key(meta, factors)

    def card_kcv(self, serial: bytes, key: KeyRef) -> bytes:
        """KCV of one card's key (safe to show: it identifies the key, it does not reveal it)."""
        meta, factors = self._resolve(serial, key)
        return self._card_encrypt(meta, factors, bytes(block_size(meta.algorithm)))[:3]

    def key_info(self, key: KeyRef) -> dict[str, Any]:
        """Metadata of the stored key behind ``key`` (no value)."""
        ref, version = (key.ref, key.version) if isinstance(key, KeySlot) else (key, None)
        m = self._lookup(ref, version)
        return {
            "ref": m.ref,
            "version": m.version,
            "algorithm": m.algorithm,
            "levels": m.levels,
            "depth": m.depth,
            "city": m.city,
        }


def _challenge_block(challenge: bytes, algorithm: str) -> bytes:
    if len(challenge) != 8:
        raise InvalidInput(_("wrong challenge length"), [("challenge", _("must be 8 bytes"))])
    return bytes(challenge) + bytes(block_size(algorithm) - 8)


class SoftwareSecurityModule(SecurityModule):
    """A security module over a :class:`SoftwareKeyStore` (roots or zone keys in memory)."""

    def __init__(self, store: SoftwareKeyStore, *, city: str | None = None) -> None:
        super().__init__(city=city or store.city)
        self._store = store
        self.development = store.development

    def __repr__(self) -> str:
        return f"SoftwareSecurityModule(store={self._store!r}, city={self.city!r})"

    def _lookup(self, ref: str, version: int | None) -> KeyMeta:
        return self._store.get(ref, version)

    def _card_key(self, meta: KeyMeta, factors: tuple[bytes, ...]) -> bytes:
        entry = self._store.get(meta.ref, meta.version)
        return diversify_path(entry.value, factors, algorithm=entry.algorithm)

    def _card_encrypt(self, meta: KeyMeta, factors: tuple[bytes, ...], blocks: bytes) -> bytes:
        return ecb_encrypt(self._card_key(meta, factors), blocks, algorithm=meta.algorithm)


__all__ = [
    "KeyRef",
    "SecurityModule",
    "SoftwareSecurityModule",
    "WriteKeyData",
]
