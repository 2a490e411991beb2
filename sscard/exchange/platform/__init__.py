"""The reference exchange platform: a real HTTPS server with mutual TLS (docs/exchange.md).

It behaves like the city platform for development and tests: departments and
their sharing agreements from a config file (:mod:`.config`), events and a
per-department audit in SQLite (:mod:`.store`), the HTTP protocol in
:mod:`.server`.
"""

from __future__ import annotations

from sscard.exchange.platform.config import Department, PlatformConfig, load_config
from sscard.exchange.platform.server import Platform
from sscard.exchange.platform.store import PlatformStore

__all__ = ["Department", "Platform", "PlatformConfig", "PlatformStore", "load_config"]
