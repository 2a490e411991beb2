"""Keys: algorithms, key scheme, key stores and security modules (docs/card.md, "Keys").

The public functions service-point software and the emulated card call are
:func:`diversify`, :func:`line_mac` and :func:`kcv`; anything that touches a
root or city key goes through a :class:`~sscard.keys.security_module.SecurityModule`.
"""

from sscard.keys.algorithms import diversify, kcv, line_mac

__all__ = ["diversify", "kcv", "line_mac"]
