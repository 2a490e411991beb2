"""Tamper-evident audit trail of operator actions (regulation art. 13-14; docs/operators.md).

Library callers (issuance, PIN reset/unblock, block, sync, the CLI) call
:func:`record`; pass ``conn`` to write inside your own ``BEGIN IMMEDIATE``
transaction so the action and its audit record commit together::

    from sscard import audit
    audit.record("card.issue", operator=op, card_serial=serial, card_number=number,
                 outcome="ok", conn=conn)
"""

from typing import TYPE_CHECKING

# The schema module loads with the package: it registers the audit tables, so the
# store (sscard.db.open_store) checks them with every other module's.
from sscard.audit.schema import ensure_schema
from sscard.lazy import lazy_names

if TYPE_CHECKING:
    from sscard.audit.integrity import (
        VerifyReport,
        verify,
        witness_problem,
    )
    from sscard.audit.log import (
        OUTCOMES,
        Actor,
        AuditRecord,
        all_records,
        record,
        records,
    )
    from sscard.audit.signing import (
        AUTO_EVERY,
        KEY_REF,
        Checkpoint,
        CheckpointSigner,
        auto_signer,
        checkpoint,
        checkpoints,
        head,
        init_key,
        latest,
        open_signer,
        use_signer,
    )

_HOMES: dict[str, str] = {
    "AUTO_EVERY": "sscard.audit.signing",
    "KEY_REF": "sscard.audit.signing",
    "Checkpoint": "sscard.audit.signing",
    "CheckpointSigner": "sscard.audit.signing",
    "auto_signer": "sscard.audit.signing",
    "checkpoint": "sscard.audit.signing",
    "checkpoints": "sscard.audit.signing",
    "head": "sscard.audit.signing",
    "init_key": "sscard.audit.signing",
    "latest": "sscard.audit.signing",
    "open_signer": "sscard.audit.signing",
    "use_signer": "sscard.audit.signing",
    "OUTCOMES": "sscard.audit.log",
    "Actor": "sscard.audit.log",
    "AuditRecord": "sscard.audit.log",
    "all_records": "sscard.audit.log",
    "record": "sscard.audit.log",
    "records": "sscard.audit.log",
    "VerifyReport": "sscard.audit.integrity",
    "verify": "sscard.audit.integrity",
    "witness_problem": "sscard.audit.integrity",
}
"""Where each public name lives (imported on first use): a command that only appends
records loads neither the checkpoint signer nor the verifier (issue 19, start-up)."""

__getattr__, __dir__ = lazy_names(__name__, _HOMES)

__all__ = [
    "AUTO_EVERY",
    "KEY_REF",
    "OUTCOMES",
    "Actor",
    "AuditRecord",
    "Checkpoint",
    "CheckpointSigner",
    "VerifyReport",
    "all_records",
    "auto_signer",
    "checkpoint",
    "checkpoints",
    "ensure_schema",
    "head",
    "init_key",
    "latest",
    "open_signer",
    "record",
    "records",
    "use_signer",
    "verify",
    "witness_problem",
]
