"""Card crypto as pure functions over bytes (docs/card.md "Keys"; docs/keys.md "Algorithms").

Both profiles: ``"3des"`` (two-key 3DES, 8-byte blocks) and ``"sm4"`` (SM4,
16-byte blocks); every key is 16 bytes. Block cipher work is done by
``cryptography``; this module only chains blocks. Cipher contexts are cached
per key, per thread (diversification: one per key for all threads, see
``_shared``). ECB contexts are stateless between block-aligned calls; the cached
CBC context's chaining value is tracked and compensated. So a MAC or a
diversification costs one or two native calls.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from sscard.errors import InvalidInput, WrongKeyLength
from sscard.i18n import _

Algorithm = Literal["3des", "sm4"]
ALGORITHMS: tuple[str, ...] = ("3des", "sm4")
KEY_LENGTH = 16
FACTOR_LENGTH = 8
MAC_LENGTH = 4
KCV_LENGTH = 3
_BLOCK: dict[str, int] = {"3des": 8, "sm4": 16}
_CACHE_LIMIT = 512


def block_size(algorithm: str) -> int:
    """Block size in bytes of ``algorithm`` (8 for 3DES, 16 for SM4)."""
    try:
        return _BLOCK[algorithm]
    except KeyError:
        raise InvalidInput(
            _("unknown algorithm"), [("algorithm", _("must be '3des' or 'sm4'"))]
        ) from None


def check_key(key: bytes, algorithm: str) -> None:
    """Raise :class:`WrongKeyLength` unless ``key`` is a 16-byte key for ``algorithm``."""
    if type(key) is bytes and len(key) == KEY_LENGTH and algorithm in _BLOCK:
        return  # the hot path
    block_size(algorithm)
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_LENGTH:
        got = len(key) if isinstance(key, bytes | bytearray) else 0
        raise WrongKeyLength(algorithm, got)


# --- cached cipher contexts ---------------------------------------------------

_local = threading.local()
# diversify's ECB encryptors, one per key check_key accepted, shared by all
# threads: {algorithm: {key: update}}. cryptography releases the GIL inside update
# and guards each context with a borrow flag, so a thread that reaches a context
# another thread is using gets RuntimeError ("Already borrowed") before anything
# changes; it then uses a context of its own for that call.
_shared: dict[str, dict[bytes, Callable[[bytes], bytes]]] = {a: {} for a in _BLOCK}


def _contexts() -> dict[tuple[Any, ...], Any]:
    cache: dict[tuple[Any, ...], Any] | None = getattr(_local, "cache", None)
    if cache is None or len(cache) > _CACHE_LIMIT:
        cache = {}
        _local.cache = cache
    return cache


def _cipher_algorithm(algorithm: str, key: bytes) -> Any:
    if algorithm == "sm4":
        return algorithms.SM4(key)
    if algorithm == "des":  # single DES (the retail MAC's halves): K ‖ K ‖ K
        return TripleDES(key * 3)
    return TripleDES(key + key[:8])  # two-key 3DES: K1 ‖ K2 ‖ K1


def _ecb(algorithm: str, key: bytes, encrypt: bool = True) -> CipherContext:
    if type(key) is not bytes:
        key = bytes(key)
    cache = _contexts()
    k = (algorithm, key, encrypt)
    ctx: CipherContext | None = cache.get(k)
    if ctx is None:
        cipher = Cipher(_cipher_algorithm(algorithm, bytes(key)), modes.ECB())
        ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        cache[k] = ctx
    return ctx


class _Cbc:
    """A reusable CBC encryptor: the IV of each call is folded into the first block."""

    __slots__ = ("ctx", "last")

    def __init__(self, algorithm: str, key: bytes) -> None:
        n = 8 if algorithm == "des" else _BLOCK[algorithm]
        self.last = bytes(n)
        self.ctx = Cipher(_cipher_algorithm(algorithm, key), modes.CBC(self.last)).encryptor()

    def last_block(self, iv: bytes, data: bytes) -> bytes:
        n = len(self.last)
        mask = int.from_bytes(iv, "big") ^ int.from_bytes(self.last, "big")
        first = (int.from_bytes(data[:n], "big") ^ mask).to_bytes(n, "big")
        out = self.ctx.update(first + data[n:])
        self.last = out[-n:]
        return self.last


def _cbc(algorithm: str, key: bytes) -> _Cbc:
    cache = _contexts()
    k = ("cbc", algorithm, bytes(key))
    ctx: _Cbc | None = cache.get(k)
    if ctx is None:
        ctx = _Cbc(algorithm, bytes(key))
        cache[k] = ctx
    return ctx


# --- primitives ---------------------------------------------------------------


def ecb_encrypt(key: bytes, data: bytes, *, algorithm: str) -> bytes:
    """ECB-encrypt block-aligned ``data`` under ``key``."""
    check_key(key, algorithm)
    _check_aligned(data, algorithm)
    return _ecb(algorithm, key).update(data)


def ecb_decrypt(key: bytes, data: bytes, *, algorithm: str) -> bytes:
    """ECB-decrypt block-aligned ``data`` under ``key``."""
    check_key(key, algorithm)
    _check_aligned(data, algorithm)
    return _ecb(algorithm, key, encrypt=False).update(data)


def pad(data: bytes, block: int) -> bytes:
    """ISO/IEC 9797-1 padding method 2: ``80`` then ``00`` up to a multiple of ``block``."""
    return data + b"\x80" + bytes(-(len(data) + 1) % block)


def _check_aligned(data: bytes, algorithm: str) -> None:
    if len(data) % _BLOCK[algorithm]:
        raise InvalidInput(
            _("data is not block-aligned"),
            [
                (
                    "data",
                    _("length must be a multiple of {size} bytes").format(size=_BLOCK[algorithm]),
                )
            ],
        )


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare MACs and cryptograms without leaking where they differ."""
    return hmac.compare_digest(a, b)


# --- diversification (spec "Keys") --------------------------------------------

_INVERT = bytes(b ^ 0xFF for b in range(256))


def diversify(key: bytes, factor: bytes, *, algorithm: str) -> bytes:
    """One diversification level: the child of ``key`` for the 8-byte ``factor``.

    3DES: ``E_K(F) ‖ E_K(F ⊕ FF…FF)``; SM4: ``E_K(F ‖ (F ⊕ FF…FF))`` (spec "Keys").
    Both are one ECB call over ``F ‖ ~F``.
    """
    if len(factor) != FACTOR_LENGTH:
        raise _factor_length_error(factor)
    try:  # hot path: bytes in, the shared encryptor of a key already validated
        return _shared[algorithm][key](factor + factor.translate(_INVERT))
    except (KeyError, TypeError, AttributeError, RuntimeError):
        return _diversify_slow(key, factor, algorithm)


def _diversify_slow(key: bytes, factor: bytes, algorithm: str) -> bytes:
    """diversify for a new key, a buffer that is not bytes, or an encryptor in use."""
    check_key(key, algorithm)
    key, factor = bytes(key), bytes(factor)
    data = factor + factor.translate(_INVERT)
    table = _shared[algorithm]
    update = table.get(key)
    if update is None:
        if len(table) >= _CACHE_LIMIT:
            table = _shared[algorithm] = {}
        update = table.setdefault(key, _ecb_encryptor(algorithm, key))
    try:
        return update(data)
    except RuntimeError:  # another thread is inside this encryptor right now
        return _ecb_encryptor(algorithm, key)(data)


def _ecb_encryptor(algorithm: str, key: bytes) -> Callable[[bytes], bytes]:
    return Cipher(_cipher_algorithm(algorithm, key), modes.ECB()).encryptor().update


def _factor_length_error(factor: bytes) -> InvalidInput:
    return InvalidInput(
        _("wrong diversification factor length"),
        [
            (
                "factor",
                _("must be {length} bytes, got {got}").format(
                    length=FACTOR_LENGTH, got=len(factor)
                ),
            )
        ],
    )


def diversify_path(key: bytes, factors: Sequence[bytes], *, algorithm: str) -> bytes:
    """Apply :func:`diversify` once per factor, in order (root → … → card)."""
    for factor in factors:
        key = diversify(key, factor, algorithm=algorithm)
    return bytes(key)


def province_factor(city: str) -> bytes:
    """L1 factor: ``ASCII(2-digit province) ‖ "0000" ‖ "sh"`` from a 6-digit city code."""
    _check_city(city)
    return (city[:2] + "0000sh").encode("ascii")


def city_factor(city: str) -> bytes:
    """L2 factor: ``ASCII(6-digit city code) ‖ "sx"``."""
    _check_city(city)
    return (city + "sx").encode("ascii")


def card_factors(city: str, serial: bytes, levels: int = 3) -> tuple[bytes, ...]:
    """The last ``levels`` factors of (province, city, card serial) for one card."""
    if len(serial) != FACTOR_LENGTH:
        raise InvalidInput(
            _("wrong card serial length"),
            [("serial", _("must be {length} bytes, got {got}").format(length=8, got=len(serial)))],
        )
    if not 0 <= levels <= 3:
        raise InvalidInput(_("wrong number of levels"), [("levels", _("must be 0..3"))])
    full = (province_factor(city), city_factor(city), bytes(serial))
    return full[3 - levels :]


def _check_city(city: str) -> None:
    if not (isinstance(city, str) and len(city) == 6 and city.isascii() and city.isdigit()):
        raise InvalidInput(
            _("invalid city code"),
            [("city", _("must be a 6-digit administrative division code"))],
        )


# --- MAC, encipherment, cryptograms (spec "Commands") -------------------------


def line_mac(key: bytes, data: bytes, *, iv: bytes, algorithm: str) -> bytes:
    """The 4-byte line-protection MAC over already-assembled ``data`` (padding inside).

    3DES: ISO/IEC 9797-1 MAC algorithm 3, padding method 2 (single-DES CBC under
    K_L, last block DES⁻¹ under K_R then DES under K_L). SM4: SM4-CBC-MAC.
    ``iv`` is the 8-byte challenge (zero-extended for SM4) or a full block.
    """
    check_key(key, algorithm)
    n = _BLOCK[algorithm]
    if len(iv) == FACTOR_LENGTH and n == 16:
        iv = bytes(iv) + bytes(8)
    if len(iv) != n:
        raise InvalidInput(
            _("wrong IV length"), [("iv", _("must be 8 or {size} bytes").format(size=n))]
        )
    padded = pad(bytes(data), n)
    if algorithm == "sm4":
        return _cbc("sm4", key).last_block(iv, padded)[:MAC_LENGTH]
    k_left, k_right = bytes(key[:8]), bytes(key[8:])
    y = _cbc("des", k_left).last_block(iv, padded)
    y = _ecb("des", k_right, encrypt=False).update(y)
    return _ecb("des", k_left).update(y)[:MAC_LENGTH]


def verify_line_mac(key: bytes, data: bytes, mac: bytes, *, iv: bytes, algorithm: str) -> bool:
    """True if ``mac`` is the line MAC of ``data`` (constant-time comparison)."""
    return constant_time_equal(line_mac(key, data, iv=iv, algorithm=algorithm), bytes(mac))


def encipher_record(key: bytes, data: bytes, *, algorithm: str) -> bytes:
    """Encipher a key record or PIN block: ECB over ``len ‖ data ‖ 80 00…``.

    docs/keys.md, "Encipherment": the ``80`` is always appended, then ``00`` to the block size.
    """
    if len(data) > 255:
        raise InvalidInput(_("record too long"), [("data", _("at most 255 bytes"))])
    return ecb_encrypt(
        key, pad(bytes([len(data)]) + bytes(data), block_size(algorithm)), algorithm=algorithm
    )


def decipher_record(key: bytes, blob: bytes, *, algorithm: str) -> bytes:
    """Inverse of :func:`encipher_record`; :class:`InvalidInput` if the layout is wrong.

    A wrong key also lands here (the length byte or padding is then wrong in all
    but a tiny fraction of cases); callers authenticate with the MAC first.
    """
    plain = ecb_decrypt(key, blob, algorithm=algorithm)
    if not plain:
        raise InvalidInput(_("enciphered record is empty"), [("data", _("no blocks"))])
    length = plain[0]
    rest = plain[1 + length :]
    ok = 1 + length <= len(plain) and rest[:1] == b"\x80" and not any(rest[1:])
    ok = ok and len(rest) <= block_size(algorithm)
    if not ok:
        raise InvalidInput(_("enciphered record does not decipher"), [("data", _("bad layout"))])
    return plain[1 : 1 + length]


def auth_cryptogram(key: bytes, challenge: bytes, *, algorithm: str) -> bytes:
    """EXTERNAL/INTERNAL AUTHENTICATE cryptogram over an 8-byte challenge.

    3DES: ``3DES-ECB(R8)`` (8 bytes); SM4: ``SM4-ECB(R8 ‖ 00×8)`` (16 bytes).
    """
    if len(challenge) != FACTOR_LENGTH:
        raise InvalidInput(_("wrong challenge length"), [("challenge", _("must be 8 bytes"))])
    block = bytes(challenge) + bytes(block_size(algorithm) - FACTOR_LENGTH)
    return ecb_encrypt(key, block, algorithm=algorithm)


def kcv(key: bytes, *, algorithm: str) -> bytes:
    """Key check value: the first 3 bytes of ``E_K(00…00)`` (one block)."""
    return ecb_encrypt(key, bytes(block_size(algorithm)), algorithm=algorithm)[:KCV_LENGTH]


def xor(a: bytes, b: bytes) -> bytes:
    """Bytewise XOR of two equal-length strings (key components)."""
    if len(a) != len(b):
        raise InvalidInput(
            _("lengths differ"), [("component", _("all components must be 16 bytes"))]
        )
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")
