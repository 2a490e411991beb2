"""Token files for subprocesses acting as a test operator of a given role."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sscard.auth import OperatorStore, login
from tests.operatorkit import PASSWORD, add_operator

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
