"""Operators, roles and sessions through the library (regulation art. 15; docs/operators.md)."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from sscard import audit, db
from sscard.auth import OperatorStore, login, logout, require
from sscard.auth.roles import PERMISSIONS, ROLES
from sscard.auth.session import current_operator
from sscard.cli.exit_codes import exit_code_for
from sscard.errors import (
    BootstrapRefused,
    InvalidInput,
    LoginFailed,
    NotAuthorized,
    NotLoggedIn,
)
from tests.operatorkit import PASSWORD, Installation, record


def _store() -> OperatorStore:
    return OperatorStore.open()


def test_bootstrap_only_while_empty_and_only_an_issuer(installation: Installation) -> None:
    store = _store()
    with pytest.raises(InvalidInput):
        store.add("a1", "A", "service", PASSWORD, bootstrap=True, cost=10)
    store.add("admin", "Li Na", "issuer", PASSWORD, bootstrap=True, cost=10)
    with pytest.raises(BootstrapRefused) as exc:
        store.add("intruder", "X", "issuer", PASSWORD, bootstrap=True, cost=10)
    assert exit_code_for(exc.value) == 6
    assert [o.id for o in store.list()] == ["admin"]


def test_credentials_are_scrypt_hashes_never_the_password(installation: Installation) -> None:
    store = _store()
    store.add("admin", "Li Na", "issuer", PASSWORD, bootstrap=True, cost=10)
    (cred,) = store.conn.execute("SELECT credential FROM operators").fetchone()
    assert cred.startswith("scrypt$10$") and PASSWORD not in cred
    store.close()
    for f in installation.data_dir.iterdir():
        assert PASSWORD.encode() not in f.read_bytes()


def test_wrong_password_unknown_and_disabled_operators_cannot_log_in(
    installation: Installation,
) -> None:
    installation.add("admin", "issuer")
    installation.add("zhang", "service")
    store = _store()
    for who, pw in (("admin", "Tr0ub4dor&3"), ("nobody", PASSWORD)):
        with pytest.raises(LoginFailed) as exc:
            login(store, who, pw)
        assert pw not in str(exc.value)
    store.disable("zhang")
    with pytest.raises(LoginFailed):
        login(store, "zhang", PASSWORD)
    logins = audit.records(store.conn, action="operator.login")
    assert [(r.operator, r.outcome, r.error) for r in logins] == [
        ("admin", "refused", "LoginFailed"),
        (None, "refused", "LoginFailed"),  # an unknown id is not recorded: it may be a password
        ("zhang", "refused", "LoginFailed"),
    ]


def test_login_writes_a_0600_token_and_logout_ends_the_session(
    installation: Installation,
) -> None:
    installation.add("admin", "issuer")
    store = _store()
    session = login(store, "admin", PASSWORD, ttl=timedelta(minutes=30))
    assert session.path == installation.token
    assert oct(os.stat(installation.token).st_mode & 0o777) == "0o600"
    token = installation.token.read_text().strip()
    assert token not in installation.store.read_bytes().decode("latin-1")  # only its hash
    assert current_operator(store).id == "admin"
    assert logout(store) is not None
    assert not installation.token.exists()
    with pytest.raises(NotLoggedIn):
        current_operator(store)
    # a copy of the old token is worthless after logout
    installation.token.write_text(token)
    installation.token.chmod(0o600)
    with pytest.raises(NotLoggedIn):
        current_operator(store)


def test_a_token_readable_by_others_is_refused(installation: Installation) -> None:
    installation.login("admin", "issuer")
    installation.token.chmod(0o644)
    with pytest.raises(NotLoggedIn, match="readable by others"):
        current_operator(_store())


def test_expired_session_and_disable_and_password_change_end_sessions(
    installation: Installation,
) -> None:
    installation.login("zhang", "service")
    store = _store()
    store.conn.execute("UPDATE operator_sessions SET expires = '2000-01-01T00:00:00.000000Z'")
    with pytest.raises(NotLoggedIn, match="expired"):
        current_operator(store)
    installation.login("zhang", "service")
    store.set_password("zhang", "a new password", cost=10)
    with pytest.raises(NotLoggedIn):
        current_operator(store)
    login(store, "zhang", "a new password")
    installation.add("admin", "issuer")
    store.disable("zhang")
    with pytest.raises(NotLoggedIn):
        current_operator(store)


def test_session_lifetime_is_bounded(installation: Installation) -> None:
    installation.add("admin", "issuer")
    with pytest.raises(InvalidInput):
        login(_store(), "admin", PASSWORD, ttl=timedelta(hours=13))


def test_kiosk_cannot_reset_a_pin_and_the_refusal_is_audited(installation: Installation) -> None:
    installation.add("admin", "issuer")
    installation.login("kiosk-07", "kiosk")
    store = _store()
    with pytest.raises(NotAuthorized) as exc:
        require("pin.reset", store=store, card_number="310115199001011234")
    assert exit_code_for(exc.value) == 6
    assert (exc.value.operator, exc.value.role, exc.value.action) == (
        "kiosk-07",
        "kiosk",
        "pin.reset",
    )
    assert require("pin.change", store=store).id == "kiosk-07"
    (rec,) = audit.records(store.conn, action="pin.reset")
    assert (rec.operator, rec.role, rec.outcome, rec.error, rec.card_number) == (
        "kiosk-07",
        "kiosk",
        "refused",
        "NotAuthorized",
        "310115199001011234",
    )


def test_service_cannot_generate_keys_and_nobody_logged_in_is_refused_too(
    installation: Installation,
) -> None:
    installation.add("admin", "issuer")
    svc = installation.add("zhang", "service")
    store = _store()
    with pytest.raises(NotAuthorized):
        require("keys.generate", svc, store=store)
    with pytest.raises(NotLoggedIn):
        require("keys.generate", store=store)  # nobody logged in
    rows = [(r.operator, r.error) for r in audit.records(store.conn, action="keys.generate")]
    assert rows == [("zhang", "NotAuthorized"), (None, "NotLoggedIn")]


def test_a_stale_operator_object_cannot_outlive_a_disable(installation: Installation) -> None:
    installation.add("admin", "issuer")
    svc = installation.add("zhang", "service")
    store = _store()
    store.disable("zhang")
    with pytest.raises(NotLoggedIn):
        require("pin.reset", svc, store=store)


def test_role_check_by_role_name_and_unknown_actions_are_bugs(installation: Installation) -> None:
    installation.add("admin", "issuer")
    store = _store()
    op = store.get("admin")
    assert require("issuer", op, store=store) == op
    with pytest.raises(NotAuthorized):
        require("auditor", op, store=store)
    with pytest.raises(ValueError):
        require("pin.rest", op, store=store)


def test_every_action_belongs_to_a_known_role() -> None:
    for action, roles in PERMISSIONS.items():
        assert roles and roles <= set(ROLES), action
    # least privilege: a kiosk may change a PIN and nothing else
    assert [a for a, r in PERMISSIONS.items() if "kiosk" in r] == ["pin.change"]


def test_audit_record_refuses_secret_looking_details(installation: Installation) -> None:
    with pytest.raises(ValueError):
        record("pin.reset", operator=None, outcome="ok", detail={"new_pin": "123456"})


def test_store_file_is_shared_with_the_caller_transaction(installation: Installation) -> None:
    installation.add("admin", "issuer")
    store = _store()
    conn = store.conn
    conn.execute("CREATE TABLE cards (number TEXT)")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO cards VALUES ('1')")
    audit.record(
        "card.issue", operator=store.get("admin"), outcome="ok", card_number="1", conn=conn
    )
    conn.execute("ROLLBACK")
    assert audit.records(conn, action="card.issue") == []  # rolled back together
    with pytest.raises(db.IntegrityError):
        conn.execute("INSERT INTO operators (id) VALUES ('x')")
