"""Operator roles and the actions each may perform (regulation art. 15: access permissions).

One table, :data:`PERMISSIONS`, says which roles may do which action; the CLI,
the library (:func:`sscard.auth.require`) and docs/operators.md all follow it.
Action names are ``area.verb`` and are also what the audit trail records.
"""

from __future__ import annotations

from collections.abc import Mapping

from sscard.i18n import N_

ISSUER = "issuer"
SERVICE = "service"
KIOSK = "kiosk"
AUDITOR = "auditor"
ROLES: tuple[str, ...] = (ISSUER, SERVICE, KIOSK, AUDITOR)

ROLE_DESCRIPTIONS: Mapping[str, str] = {
    ISSUER: N_("issuing centre staff: issue cards, key ceremony, operators, restore"),
    SERVICE: N_("service point staff: read cards, PIN reset/unblock, block/unblock, sync"),
    KIOSK: N_("self-service kiosk: the cardholder's PIN change only"),
    AUDITOR: N_("read and verify the audit trail"),
}
"""What each role is for (English; show them translated: ``_(ROLE_DESCRIPTIONS[role])``)."""

_I, _S, _K, _A = ISSUER, SERVICE, KIOSK, AUDITOR

PERMISSIONS: Mapping[str, frozenset[str]] = {
    # cards (art. 16)
    "card.issue": frozenset({_I}),
    "card.read": frozenset({_I, _S}),
    "card.apdu": frozenset({_I}),  # raw APDUs (sscard apdu): bypasses every policy, issuer only
    "card.block": frozenset({_S}),
    "card.unblock": frozenset({_S}),
    "holder.update": frozenset({_S}),
    "pin.change": frozenset({_K}),
    "pin.reset": frozenset({_S}),
    "pin.unblock": frozenset({_S}),
    # exchange platform (art. 11)
    "sync.run": frozenset({_I, _S}),
    # key ceremony (art. 15, 16)
    "keys.init": frozenset({_I}),
    "keys.generate": frozenset({_I}),
    "keys.rotate": frozenset({_I}),
    "keys.split": frozenset({_I}),
    "keys.combine": frozenset({_I}),
    "keys.import-transport": frozenset({_I}),
    "psam.issue": frozenset({_I}),
    "psam.withdraw": frozenset({_I}),
    "keys.export-zone": frozenset({_I}),
    "keys.token-import": frozenset({_I}),
    # operators (art. 15)
    "operator.add": frozenset({_I}),
    "operator.list": frozenset({_I, _A}),
    "operator.disable": frozenset({_I}),
    "operator.passwd": frozenset({_I}),  # another operator's password; one's own needs no role
    # audit trail (art. 13, 14)
    "audit.read": frozenset({_A}),
    "audit.verify": frozenset({_A, _I}),
    "audit.checkpoint": frozenset({_A, _I}),
    "audit.init-key": frozenset({_I}),
    # backups (art. 15)
    "backup.create": frozenset({_I, _S, _A}),
    "backup.restore": frozenset({_I}),
    # the store (docs/store.md): upgrading a centre's store stops older stations
    "store.upgrade": frozenset({_I}),
}

# Actions recorded in the audit trail that no role "performs" (no permission check).
EVENTS: tuple[str, ...] = (
    "operator.bootstrap",
    "operator.login",
    "operator.logout",
    "operator.passwd.own",
    "store.init",
)


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`, else :class:`ValueError`."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return role


def allowed(role: str, role_or_action: str) -> bool:
    """Whether ``role`` may do ``role_or_action`` (an action name, or a role name itself).

    An unknown action is a programming error (:class:`ValueError`), never a
    silent allow or deny.
    """
    if role_or_action in ROLES:
        return role == role_or_action
    try:
        return role in PERMISSIONS[role_or_action]
    except KeyError:
        raise ValueError(f"unknown action {role_or_action!r} (see sscard.auth.roles)") from None


def actions_for(role: str) -> list[str]:
    """The actions ``role`` may do, sorted."""
    return sorted(a for a, roles in PERMISSIONS.items() if role in roles)
