"""Verifying the audit trail: the hash chain and the signed checkpoints (regulation art. 14).

:func:`verify` walks every record in ``seq`` order and checks that the
sequence has no gap, that each record follows the one before (``prev_hash``)
and that its content matches its hash; then that every checkpoint names a
record whose hash is the one signed and, given a signer, that its MAC is good.
The report names the first broken record; records after the last verified
checkpoint are protected by the chain only (``unsigned_tail``). Given the
head the exchange platform witnessed (signed or not), the trail must still reach its
record with the same hash: a cut tail fails (:class:`AuditTrailTruncated`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sscard.audit.log import GENESIS, AuditRecord, all_records, record_hash
from sscard.audit.signing import Checkpoint, CheckpointSigner, checkpoints
from sscard.db import Connection
from sscard.errors import AuditLogBroken, AuditTrailTruncated
from sscard.i18n import _


@dataclass
class VerifyReport:
    """The result of :func:`verify`; ``problem`` is the first break found, or None."""

    records: int = 0
    checkpoints: int = 0
    checkpoints_verified: int = 0
    last_verified_seq: int = 0
    witnessed_seq: int | None = None
    problem: AuditLogBroken | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the trail is intact (as far as the key given can tell)."""
        return self.problem is None

    @property
    def verified_to(self) -> int:
        """The last record of the intact part of the trail."""
        if self.problem is None:
            return self.records
        return max(0, min(self.records, (self.problem.seq or 1) - 1))

    @property
    def unsigned_tail(self) -> int:
        """Records after the last verified checkpoint (protected by the chain only)."""
        return self.records - self.last_verified_seq

    def info(self) -> dict[str, object]:
        """For JSON output."""
        return {
            "ok": self.ok,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "checkpoints_verified": self.checkpoints_verified,
            "last_verified_seq": self.last_verified_seq,
            "unsigned_tail": self.unsigned_tail,
            "verified_to": self.verified_to,
            "witnessed_seq": self.witnessed_seq,
            "first_broken_record": None if self.problem is None else self.problem.seq,
            "problem": None if self.problem is None else self.problem.problem,
            "notes": self.notes,
        }


def _chain(rows: list[AuditRecord]) -> tuple[dict[int, str], AuditLogBroken | None]:
    heads: dict[int, str] = {0: GENESIS}
    prev_hash = GENESIS
    for expected, rec in enumerate(rows, start=1):
        if rec.seq != expected:
            what = (
                _("record {seq} is missing (deleted?)")
                if rec.seq > expected
                else _("record {seq} is out of sequence")
            )
            return heads, AuditLogBroken(expected, what.format(seq=expected))
        if rec.prev_hash != prev_hash:
            return heads, AuditLogBroken(
                rec.seq,
                _("does not follow record {seq} (a record was deleted, inserted or moved)").format(
                    seq=rec.seq - 1
                ),
            )
        why = rec.unreadable()
        if why is not None:
            return heads, AuditLogBroken(rec.seq, _("unreadable: {why} (edited)").format(why=why))
        if record_hash(rec.prev_hash, rec.content()) != rec.hash:
            return heads, AuditLogBroken(rec.seq, _("content does not match its hash (edited)"))
        heads[rec.seq] = rec.hash
        prev_hash = rec.hash
    return heads, None


def _check_point(
    cp: Checkpoint, heads: dict[int, str], signer: CheckpointSigner | None, count: int
) -> AuditLogBroken | None:
    if signer is not None and not signer.valid(cp):
        why = (
            _("checkpoint {id} covering this record: bad signature")
            if signer.knows(cp.key_id)
            else _("checkpoint {id} covering this record: signed by a key not in this key store")
        )
        return AuditLogBroken(cp.seq, why.format(id=cp.id))
    if cp.seq > count:
        return AuditLogBroken(
            count + 1,
            _("records {first}..{last} are missing (checkpoint {id} covers them)").format(
                first=count + 1, last=cp.seq, id=cp.id
            ),
        )
    if heads.get(cp.seq) != cp.hash:
        return AuditLogBroken(
            cp.seq,
            _(
                "differs from what checkpoint {id} signed: records up to {seq} were rewritten"
            ).format(id=cp.id, seq=cp.seq),
        )
    return None


def witness_problem(seq: int, hash: str, local: str | None, ends_at: int) -> AuditLogBroken | None:
    """The local trail against the head the platform witnessed (record ``seq`` with
    ``hash``): ``local`` is this trail's hash of record ``seq`` and ``ends_at`` its last
    record. :class:`AuditTrailTruncated` when the trail ends before ``seq``; an
    :class:`AuditLogBroken` when the record differs; None when the trail still holds it.
    """
    if seq > ends_at:
        return AuditTrailTruncated(seq, ends_at)
    if local != hash:
        return AuditLogBroken(
            seq,
            _(
                "differs from the record the platform witnessed: records up to {seq} were rewritten"
            ).format(seq=seq),
        )
    return None


def _check_witnessed(
    cp: Checkpoint, heads: dict[int, str], signer: CheckpointSigner | None, count: int
) -> AuditLogBroken | None:
    problem = witness_problem(cp.seq, cp.hash, heads.get(cp.seq), count)
    if problem is None and signer is not None and cp.signed and not signer.valid(cp):
        return AuditLogBroken(
            cp.seq, _("the checkpoint the platform witnessed has a bad signature")
        )
    return problem


def verify(
    conn: Connection,
    signer: CheckpointSigner | None = None,
    witnessed: Checkpoint | None = None,
) -> VerifyReport:
    """Verify the audit trail in ``conn``; never raises for a broken trail (see the report).

    ``witnessed``: the head the exchange platform holds for this service
    point (:meth:`sscard.exchange.client.PlatformClient.audit_head`), signed
    or not; its signature is checked when it has one and a signer is given.
    """
    rows = all_records(conn)
    cps = checkpoints(conn)
    report = VerifyReport(records=len(rows), checkpoints=len(cps))
    heads, chain_problem = _chain(rows)
    problems: list[AuditLogBroken] = [chain_problem] if chain_problem else []
    if witnessed is not None:
        report.witnessed_seq = witnessed.seq
        broken = _check_witnessed(witnessed, heads, signer, len(rows))
        if broken is not None:
            problems.append(broken)
    for cp in cps:
        broken = _check_point(cp, heads, signer, len(rows))
        if broken is not None:
            problems.append(broken)
        elif signer is not None:
            report.checkpoints_verified += 1
            report.last_verified_seq = max(report.last_verified_seq, cp.seq)
    if problems:
        report.problem = min(problems, key=lambda p: p.seq or 0)
        truncated = [p for p in problems if isinstance(p, AuditTrailTruncated)]
        if truncated and (chain_problem is None or chain_problem.seq == truncated[0].seq):
            report.problem = truncated[0]  # the clearer name for a cut tail
    if signer is None and cps:
        report.notes.append(
            _(
                "{count} checkpoint signature(s) not checked: give the key store to check them"
            ).format(count=len(cps))
        )
    if signer is not None and signer.development:
        report.notes.append(_("checked with the DEVELOPMENT checkpoint key (published)"))
    if not cps:
        report.notes.append(
            _(
                "no signed checkpoint yet: 'sscard audit checkpoint' makes one "
                "($SSCARD_AUDIT_KEYSTORE makes them automatic)"
            )
        )
    return report
