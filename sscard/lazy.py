"""Package attributes imported on first use (PEP 562).

A package lists where each public name lives; :func:`lazy_names` gives its module
``__getattr__`` and ``__dir__``, so importing the package costs only what a caller
touches (``sscard --version`` loads no cipher, schema or codec; tests/test_startup.py).
Imports nothing from sscard.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, homes: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: a name of ``homes`` (name → module) is
    imported from its module on first use and kept in the package; any other is an
    AttributeError."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *homes})

    return __getattr__, __dir__
