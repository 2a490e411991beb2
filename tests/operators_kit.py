"""Operators for tests: one logged-in operator per role, with its own token file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sscard.auth import OperatorStore, login

_tokens: dict[str, Path] = {}
PASSWORD = "correct horse battery staple"


def token_for(role: str) -> Path:
    """The session token file of a logged-in test operator with ``role`` (made once)."""
    if role not in _tokens:
        store = OperatorStore.open()
        try:
            operator_id = f"test.{role}"
            if store.find(operator_id) is None:
                bootstrap = store.is_empty()
                if bootstrap:
                    store.add(
                        "test.issuer", "Test Issuer", "issuer", PASSWORD, bootstrap=True, cost=10
                    )
                if store.find(operator_id) is None:
                    store.add(operator_id, f"Test {role}", role, PASSWORD, cost=10)
            path = Path(tempfile.mkdtemp(prefix="sscard-token-")) / f"{role}.token"
            login(store, operator_id, PASSWORD, path=path)
        finally:
            store.close()
        _tokens[role] = path
    return _tokens[role]


def env_for(role: str) -> dict[str, str]:
    """The environment of a subprocess acting as the test operator with ``role``."""
    return {**os.environ, "SSCARD_OPERATOR_TOKEN": str(token_for(role))}
