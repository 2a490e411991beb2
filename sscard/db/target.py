"""Which store: a file path (SQLite) or a ``postgresql://`` URL (a centre's server).

One setting chooses the store (``--store`` / ``$SSCARD_STORE``): a path, or a
URL. A password never belongs in that setting: libpq reads it from
``~/.pgpass``, ``$PGPASSFILE`` or ``$PGPASSWORD`` (PostgreSQL documentation,
"The Password File"), so the URL is safe to show; :attr:`StoreTarget.display`
drops a password anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

from sscard.errors import InvalidInput
from sscard.i18n import _

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_PG_SCHEMES = ("postgresql", "postgres")


class StoreTarget(NamedTuple):
    """A parsed store setting: the engine and where (a path, or a libpq URL)."""

    engine: str
    location: str
    display: str
    has_password: bool = False

    @property
    def path(self) -> Path:
        """The SQLite file (only for ``engine == "sqlite"``)."""
        return Path(self.location)

    def __str__(self) -> str:
        return self.display


def parse_target(value: str | Path) -> StoreTarget:
    """Parse a store setting; :class:`InvalidInput` for a URL sscard cannot use."""
    if isinstance(value, Path):
        return StoreTarget(SQLITE, str(value), str(value))
    text = value.strip()
    if "://" not in text:
        return StoreTarget(SQLITE, text, text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        path = unquote(parts.path)
        if parts.netloc or not path:
            raise _unusable(_("an SQLite URL is sqlite:///ABSOLUTE/PATH"))
        return StoreTarget(SQLITE, path, path)
    if scheme not in _PG_SCHEMES:
        raise _unusable(
            _("unknown kind of store {scheme!r}: a file path or postgresql://…").format(
                scheme=parts.scheme
            )
        )
    has_password = parts.password is not None or "password=" in parts.query.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    user = f"{parts.username}@" if parts.username else ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # urllib: not a number, or out of range
        raise _unusable(_("the port is not a number from 0 to 65535")) from None
    query = "&".join(
        q for q in parts.query.split("&") if q and not q.lower().startswith("password=")
    )
    display = urlunsplit(("postgresql", f"{user}{host}{port}", parts.path, query, ""))
    return StoreTarget(POSTGRESQL, text, display, has_password)


def _unusable(why: str) -> InvalidInput:
    return InvalidInput(_("cannot use this store"), [("store", why)])
