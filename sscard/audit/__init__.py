"""Tamper-evident audit trail of operator actions (regulation art. 13-14; docs/operators.md).

Library callers (issuance, PIN reset/unblock, block, sync, the CLI) call
:func:`record`; pass ``conn`` to write inside your own ``BEGIN IMMEDIATE``
transaction so the action and its audit record commit together::

    from sscard import audit
    audit.record("card.issue", operator=op, card_serial=serial, card_number=number,
                 outcome="ok", conn=conn)
"""

from sscard.audit.checkpoint import (
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
from sscard.audit.log import OUTCOMES, Actor, AuditRecord, all_records, record, records
from sscard.audit.schema import ensure_schema
from sscard.audit.verify import VerifyReport, verify, witness_problem

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
