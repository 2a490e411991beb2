"""Departments and sharing agreements of the reference platform (regulation art. 5, 8-10).

A config file (JSON, or TOML by its ``.toml`` suffix) lists each department,
the service points (client certificate CNs) that belong to it, and the event
categories its agreement lets it push and pull; schema ``platform-config.json``::

    [departments.labour]
    name = "Labour and social security"
    clients = ["sp-labour-01"]
    push = ["card.issued", "card.replaced", "card.blocked"]
    pull = ["card.blocked", "card.unblocked", "holder.changed"]
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sscard.errors import PlatformConfigError
from sscard.exchange.schema import message_problems
from sscard.i18n import _


@dataclass(frozen=True)
class Department:
    """One department and what its sharing agreement allows."""

    id: str
    name: str
    clients: frozenset[str]
    push: frozenset[str]
    pull: frozenset[str]


@dataclass(frozen=True)
class PlatformConfig:
    """All departments, and which one each client certificate belongs to."""

    departments: dict[str, Department]

    def for_client(self, service_point: str | None) -> Department | None:
        """The department of the service point with this certificate CN, or None."""
        for dept in self.departments.values():
            if service_point in dept.clients:
                return dept
        return None

    @classmethod
    def from_data(cls, data: Any, source: str = "config") -> PlatformConfig:
        """Build from parsed data; :class:`PlatformConfigError` names each bad path."""
        problems = message_problems("platform-config", data)
        if problems:
            raise PlatformConfigError(
                _("invalid platform config {source}").format(source=source), problems
            )
        seen: dict[str, str] = {}
        clash: list[tuple[str, str]] = []
        for dept_id, d in data["departments"].items():
            for client in d["clients"]:
                if client in seen:
                    clash.append(
                        (
                            f"/departments/{dept_id}/clients",
                            _("{client} is also in {department}").format(
                                client=client, department=seen[client]
                            ),
                        )
                    )
                seen[client] = dept_id
        if clash:
            raise PlatformConfigError(
                _("invalid platform config {source}").format(source=source), clash
            )
        return cls(
            {
                dept_id: Department(
                    dept_id,
                    d.get("name", dept_id),
                    frozenset(d["clients"]),
                    frozenset(d["push"]),
                    frozenset(d["pull"]),
                )
                for dept_id, d in data["departments"].items()
            }
        )


def load_config(path: Path) -> PlatformConfig:
    """Read and check a config file (``.toml`` is TOML, anything else JSON)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PlatformConfigError(
            _("cannot read the platform config"),
            [(str(path), exc.strerror or _("unreadable"))],
        ) from None
    try:
        if str(path).endswith(".toml"):
            data: Any = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PlatformConfigError(
            _("cannot parse the platform config"), [(str(path), str(exc))]
        ) from None
    return PlatformConfig.from_data(data, str(path))
