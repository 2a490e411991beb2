"""Operators for tests (docs/operators.md): a logged-in issuer for the whole test session,
and a fresh installation per test for tests about operators, roles and the audit trail."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sscard import audit
from sscard.auth import Operator, OperatorStore, login
from sscard.db import open_store

PASSWORD = "operator password 1"
SESSION_ISSUER = "test-issuer"


def add_operator(operator_id: str, role: str, *, password: str = PASSWORD) -> Operator:
    """Add an operator to the current installation (cheap scrypt cost), or return it."""
    store = OperatorStore.open()
    try:
        found = store.find(operator_id)
        if found is not None:
            return found
        first = store.is_empty() and role == "issuer"
        return store.add(operator_id, operator_id, role, password, bootstrap=first, cost=10)
    finally:
        store.close()


def record(action: str, **fields: Any) -> audit.AuditRecord:
    """One audit record in the current installation's local store."""
    conn = open_store()
    try:
        return audit.record(action, conn=conn, **fields)
    finally:
        conn.close()


def login_as(operator_id: str, role: str) -> Operator:
    """Make ``operator_id`` (created if needed) the logged-in operator."""
    add_operator(operator_id, role)
    store = OperatorStore.open()
    try:
        return login(store, operator_id, PASSWORD).operator
    finally:
        store.close()


@pytest.fixture(scope="session", autouse=True)
def session_issuer() -> Iterator[Operator]:
    """Every test runs as a logged-in issuer unless it sets up its own installation."""
    if OperatorStore.open().find(SESSION_ISSUER) is None:
        add_operator(SESSION_ISSUER, "issuer")
    yield login_as(SESSION_ISSUER, "issuer")


class Installation:
    """A fresh sscard installation (data dir, store, token) for one test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.token = root / "operator.token"
        self.store = self.data_dir / "sscard.db"

    def add(self, operator_id: str, role: str) -> Operator:
        return add_operator(operator_id, role)

    def login(self, operator_id: str, role: str) -> Operator:
        return login_as(operator_id, role)

    def env(self) -> dict[str, str]:
        """Environment for an ``sscard`` subprocess in this installation."""
        return {**os.environ}


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Installation:
    """A fresh installation with nobody logged in (own data dir and token file)."""
    inst = Installation(tmp_path / "install")
    monkeypatch.setenv("SSCARD_DATA_DIR", str(inst.data_dir))
    monkeypatch.setenv("SSCARD_OPERATOR_TOKEN", str(inst.token))
    monkeypatch.delenv("SSCARD_STORE", raising=False)
    return inst


# --- subprocesses acting as an operator of a given role -----------------------------

_tokens: dict[str, Path] = {}


def token_for(role: str) -> Path:
    """The session token file of a logged-in test operator with ``role`` (made once)."""
    if role not in _tokens:
        operator_id = f"test-{role}-sub"
        add_operator(operator_id, role)
        path = Path(tempfile.mkdtemp(prefix="sscard-token-")) / f"{role}.token"
        store = OperatorStore.open()
        try:
            login(store, operator_id, PASSWORD, path=path)
        finally:
            store.close()
        _tokens[role] = path
    return _tokens[role]


def env_for(role: str) -> dict[str, str]:
    """The environment of a subprocess acting as the test operator with ``role``."""
    return {**os.environ, "SSCARD_OPERATOR_TOKEN": str(token_for(role))}


def login_in_store(store: Path, role: str = "service") -> Path:
    """A logged-in operator in a separate installation's store ``store``; its token file."""
    token = store.with_suffix(".token")
    operators = OperatorStore.open(store)
    try:
        if operators.find("sp-operator") is None:
            operators.add("sp-operator", "Service point operator", role, PASSWORD, cost=10)
        login(operators, "sp-operator", PASSWORD, path=token)
    finally:
        operators.close()
    return token


def env_in_store(store: Path, role: str = "issuer") -> dict[str, str]:
    """The environment of a subprocess acting, with ``--store store``, as an operator with
    ``role`` of that store (operators, checks and audit records all live in the store)."""
    operator_id = f"test-{role}-store"
    token = store.with_name(f"{store.name}.{role}.token")
    operators = OperatorStore.open(store)
    try:
        if operators.find(operator_id) is None:
            first = operators.is_empty() and role == "issuer"
            operators.add(operator_id, operator_id, role, PASSWORD, bootstrap=first, cost=10)
        login(operators, operator_id, PASSWORD, path=token)
    finally:
        operators.close()
    return {**os.environ, "SSCARD_OPERATOR_TOKEN": str(token)}


def audit_records(action: str) -> list[audit.AuditRecord]:
    """The audit records of ``action`` (or of every action starting with it) in the
    current installation's store."""
    store = OperatorStore.open()
    try:
        return audit.records(store.conn, action=action)
    finally:
        store.close()
