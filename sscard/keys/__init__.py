"""Keys: algorithms, key scheme, key stores and security modules (docs/card.md, "Keys").

The public functions service-point software and the emulated card call are
:func:`diversify`, :func:`line_mac` and :func:`kcv`; anything that touches a
root or city key goes through a :class:`~sscard.keys.security_module.SecurityModule`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sscard.keys.algorithms import diversify, kcv, line_mac

__all__ = ["ENV_KEYSTORE", "diversify", "kcv", "line_mac"]

ENV_KEYSTORE = "SSCARD_KEYSTORE"
"""The key store to use when none is given (:mod:`sscard.keys.provider`)."""

_ALGORITHMS = ("diversify", "kcv", "line_mac")


def __getattr__(name: str) -> Any:
    """The algorithms (and the ciphers under them) are imported on first use (PEP 562):
    a key scheme or a card read without keys does not load them."""
    if name not in _ALGORITHMS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from sscard.keys import algorithms

    value = getattr(algorithms, name)
    globals()[name] = value
    return value
