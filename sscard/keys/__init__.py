"""Keys: algorithms, key scheme, key stores and security modules (docs/card.md, "Keys").

The public functions service-point software and the emulated card call are
:func:`diversify`, :func:`line_mac` and :func:`kcv`; anything that touches a
root or city key goes through a :class:`~sscard.keys.security_module.SecurityModule`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sscard.lazy import lazy_names

if TYPE_CHECKING:
    from sscard.keys.algorithms import diversify, kcv, line_mac

__all__ = ["ENV_KEYSTORE", "diversify", "kcv", "line_mac"]

ENV_KEYSTORE = "SSCARD_KEYSTORE"
"""The key store to use when none is given (:mod:`sscard.keys.provider`)."""

# The algorithms (and the ciphers under them) are imported on first use: a key scheme
# or a card read without keys does not load them.
__getattr__, __dir__ = lazy_names(
    __name__, dict.fromkeys(("diversify", "kcv", "line_mac"), "sscard.keys.algorithms")
)
