"""Shared pieces of the exchange tests: a test CA, a platform on loopback, sample payloads."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sscard import db
from sscard.exchange import outbox, sync, tls
from sscard.exchange.ca import Issued, init_ca
from sscard.exchange.client import PlatformClient
from sscard.exchange.events import new_event_id
from sscard.exchange.platform import Platform, PlatformConfig
from sscard.layout.cardno import complete

SSN = "11010519491231002X"  # GB 11643 published example

CONFIG: dict[str, Any] = {
    "departments": {
        "labour": {
            "name": "Labour and social security",
            "clients": ["sp-labour"],
            "push": ["card.issued", "card.replaced", "card.blocked", "pin.reset", "holder.changed"],
            "pull": ["card.blocked", "card.unblocked", "holder.changed"],
        },
        "police": {
            "clients": ["sp-police"],
            "push": ["card.blocked", "card.unblocked", "holder.changed"],
            "pull": [],
        },
    }
}


def issued(n: int, serial: str = "0011223344556677") -> dict[str, Any]:
    """A card.issued payload for card number n."""
    return {
        "card_serial": serial,
        "card_number": complete(f"A{n:07d}"),
        "ssn": SSN,
        "profile": "national-3",
    }


def blocked(card_number: str, reason: str = "lost") -> dict[str, Any]:
    """A card.blocked payload: reported lost, not on the card."""
    return {"card_number": card_number, "reason": reason, "on_card": False}


def pulled(
    seq: int,
    category: str,
    at: str,
    payload: dict[str, Any],
    *,
    department: str = "police",
    service_point: str = "sp-police",
) -> dict[str, Any]:
    """One item of a pull (docs/exchange.md): a department's event with its sequence number."""
    event = {
        "id": new_event_id(),
        "service_point": service_point,
        "occurred_at": at,
        "category": category,
        "payload": payload,
    }
    return {"seq": seq, "department": department, "event": event}


@dataclass
class Pki:
    """Certificates of one test CA, by name (ca, server, service points)."""

    dir: Path
    files: dict[str, Issued]

    def client(self, name: str) -> Any:
        return tls.client_context(
            self.files[name].cert, self.files[name].key, self.files["ca"].cert
        )

    def server(self) -> Any:
        s = self.files["server"]
        return tls.server_context(s.cert, s.key, self.files["ca"].cert)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    return Pki(d, init_ca(d, ["sp-labour", "sp-police", "sp-stranger"]))


@pytest.fixture(scope="session")
def foreign_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Another CA, unknown to the platform, with a client of the same name."""
    d = tmp_path_factory.mktemp("foreign")
    return Pki(d, init_ca(d, ["sp-labour"]))


@pytest.fixture
def platform(pki: Pki, tmp_path: Path) -> Iterator[Platform]:
    p = Platform(PlatformConfig.from_data(CONFIG), tmp_path / "platform.db", pki.server()).start()
    yield p
    p.stop()


def open_store(path: Path) -> sqlite3.Connection:
    conn = db.open_db(path)
    sync.ensure_schema(conn)
    return conn


def client_for(platform: Platform, pki: Pki, name: str) -> PlatformClient:
    return PlatformClient(platform.url, pki.client(name), timeout=10)


def fill(conn: sqlite3.Connection, n: int, service_point: str = "sp-labour") -> list[str]:
    """Enqueue n card.issued events in one transaction; their ids."""
    with db.transaction(conn):
        return [
            outbox.enqueue(conn, "card.issued", issued(i), service_point=service_point)
            for i in range(n)
        ]


def client_env(url: str, pki: Pki, name: str, store: Path, role: str = "service") -> dict[str, str]:
    """The environment of service point ``name``: the platform, its TLS identity, its own
    store with a logged-in operator of ``role``."""
    from tests.operatorkit import login_in_store

    return {
        "SSCARD_PLATFORM_URL": url,
        "SSCARD_EXCHANGE_CERT": str(pki.files[name].cert),
        "SSCARD_EXCHANGE_KEY": str(pki.files[name].key),
        "SSCARD_EXCHANGE_CA": str(pki.files["ca"].cert),
        "SSCARD_STORE": str(store),
        "SSCARD_OPERATOR_TOKEN": str(login_in_store(store, role)),
    }
