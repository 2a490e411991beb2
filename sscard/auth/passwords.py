"""Operator credentials: scrypt hashes (regulation art. 15, identity authentication).

A stored credential is ``scrypt$LOG2N$R$P$SALT$HASH`` (hex), 32-byte hash,
16-byte random salt. Verification uses the parameters stored with the hash,
so the cost can be raised later without invalidating existing passwords.
"""

from __future__ import annotations

import hashlib
import hmac

from sscard.errors import InvalidInput
from sscard.i18n import _

MIN_PASSWORD = 8
DEFAULT_COST = 15  # log2(N): 32 MiB, ~0.1 s
_MIN_COST, _MAX_COST = 10, 20


def _scrypt(password: str, salt: bytes, log2n: int, r: int, p: int) -> bytes:
    n = 1 << log2n
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=64 * 1024 * 1024 + 128 * r * n * 2,
        dklen=32,
    )


def check_password(password: str) -> None:
    """Refuse a password too short to keep (:class:`InvalidInput`, no echo of the value)."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(
            _("password too short"),
            [("password", _("at least {count} characters").format(count=MIN_PASSWORD))],
        )


def hash_password(password: str, *, cost: int = DEFAULT_COST) -> str:
    """A new credential string for ``password``."""
    check_password(password)
    if not _MIN_COST <= cost <= _MAX_COST:
        raise InvalidInput(
            _("bad cost"),
            [("kdf-cost", _("between {low} and {high}").format(low=_MIN_COST, high=_MAX_COST))],
        )
    import secrets  # hashing a new password only: a check needs no randomness

    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, cost, 8, 1)
    return f"scrypt${cost}$8$1${salt.hex()}${digest.hex()}"


def verify_password(password: str, credential: str) -> bool:
    """Whether ``password`` matches ``credential`` (constant-time compare)."""
    try:
        scheme, cost, r, p, salt, digest = credential.split("$")
        params = int(cost), int(r), int(p)
        salt_b, digest_b = bytes.fromhex(salt), bytes.fromhex(digest)
    except ValueError:
        return False
    if scheme != "scrypt" or not _MIN_COST <= params[0] <= _MAX_COST:
        return False
    if not (1 <= params[1] <= 16 and 1 <= params[2] <= 4):
        return False
    return hmac.compare_digest(_scrypt(password, salt_b, *params), digest_b)


def dummy_verify(password: str) -> None:
    """Spend the time of one verification (unknown operator: no timing oracle)."""
    _scrypt(password, b"\x00" * 16, DEFAULT_COST, 8, 1)
