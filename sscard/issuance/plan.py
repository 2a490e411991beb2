"""The personalization plan: from a profile, holder data and a card serial to a list of steps.

One source of truth: the file tree, keys and records all come from the
profile (``sscard.layout``). Every step is idempotent, so running the plan
again on a card that was torn at any APDU finishes the job (issue 6). The plan
is data: ``describe()`` gives each step with secrets redacted (``--dry-run``).

Order (docs/card.md):

1. EXTERNAL AUTHENTICATE with the blank card's transport key (TK session);
2. CREATE FILE for every DF and EF in profile order, each DF followed by its
   keys (WRITE KEY, enciphered and MACed under the TK [ours]);
3. UPDATE RECORD for every holder and card record;
4. PIN RELOAD with the initial PIN (enciphered under the RPK);
5. verification: read back every record, INTERNAL AUTHENTICATE, EXTERNAL
   AUTHENTICATE with one derived key per DF;
6. END PERSONALIZATION.

Each step carries the :class:`~sscard.apdu.CommandApdu` it sends, built by
:mod:`sscard.commands` exactly as the card session builds it. A step whose
data the security module computes at run time (a cryptogram over the card's
challenge, an enciphered key record or PIN block with its MAC) carries the
command as a *template*: header and Le as sent, no data, and ``computed``
naming what fills the data field. ``describe()`` renders every command from
these values: hex for what is known, ``<computed part>`` for templates,
``<field>`` for holder data, ``<redacted>`` for commands that carry secrets.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sscard import commands, errors
from sscard.apdu import REDACTED, CommandApdu
from sscard.card import SocialSecurityCard
from sscard.i18n import _
from sscard.keys.scheme import KeySlot
from sscard.layout import encode_holder
from sscard.layout.holder_codec import CardIdSigner
from sscard.layout.model import FileSpec, Profile
from sscard.national import NationalCode
from sscard.vocab import FileType, KeyType


class VerificationFailed(errors.OperationFailed):
    """Read-back or authentication after personalization did not match what was written."""

    national = NationalCode.DATA_DIFFER_FROM_CARD


@dataclass(frozen=True, repr=False)
class Step:
    """One step: what it does in words, the command it sends, and how it runs.

    ``command`` is the APDU as sent, or with ``computed`` set, its template (the
    data field is computed at run time and named by ``computed``). ``label``
    names data shown as ``<label>`` rather than as bytes (holder data).
    """

    phase: str
    description: str
    command: CommandApdu
    run: Callable[[SocialSecurityCard], None]
    computed: str | None = None
    label: str | None = None

    def __repr__(self) -> str:
        return f"Step({self.phase}, {self.text()})"

    def text(self) -> str:
        """The command as ``--dry-run`` shows it: ``CLA INS P1 P2 [Lc data] [Le]``."""
        cmd = self.command
        parts = [f"{b:02X}" for b in cmd.header()]
        if self.computed is not None:
            parts.append(f"<{self.computed}>")
        elif cmd.data:
            parts.append(f"{len(cmd.data):02X}")
            if cmd.sensitive:
                parts.append(REDACTED)
            elif self.label is not None:
                parts.append(f"<{self.label}>")
            else:
                parts.append(cmd.data.hex().upper())
        if cmd.le is not None and self.computed is None:
            parts.append(f"{cmd.le & 0xFF:02X}")
        return " ".join(parts)


@dataclass(frozen=True)
class PersonalizationPlan:
    """The steps that turn one blank card into an issued social security card."""

    profile: Profile
    serial: bytes
    steps: tuple[Step, ...]
    records: Mapping[tuple[str, int], bytes]
    city: str | None = None  # the holder's region: the city level of the card's keys

    def describe(self) -> list[dict[str, str]]:
        """Each step as ``{"phase", "description", "command"}`` (no secrets)."""
        return [
            {"phase": s.phase, "description": s.description, "command": s.text()}
            for s in self.steps
        ]

    def run(
        self,
        card: SocialSecurityCard,
        *,
        progress: Callable[[int, Step], None] | None = None,
        start: int = 0,
        phases: Collection[str] | None = None,
    ) -> None:
        """Run the steps from ``start`` (only those of ``phases``, when given) on ``card``.

        The card's serial must match the plan's; its city (the city level of its
        keys, docs/keys.md "Which city") is set from the holder's region first.
        """
        if card.serial != self.serial:
            raise errors.InvalidInput(
                _("wrong card"),
                [
                    (
                        "serial",
                        _("plan is for {plan_serial}, card is {card_serial}").format(
                            plan_serial=self.serial.hex().upper(),
                            card_serial=card.serial.hex().upper(),
                        ),
                    )
                ],
            )
        card.forget_selection()
        card.city = self.city
        steps = [s for s in self.steps[start:] if phases is None or s.phase in phases]
        for i, step in enumerate(steps, start):
            if progress is not None:
                progress(i, step)
            step.run(card)


def _tk(profile: Profile) -> KeySlot:
    return profile.key_scheme.find("MF", KeyType.TK, 0)


def build_plan(
    profile: Profile,
    holder: Mapping[str, Any],
    serial: bytes,
    *,
    pin: str,
    sign: CardIdSigner,
) -> PersonalizationPlan:
    """The plan for one card. ``holder`` is validated first (nothing runs if it is invalid).

    ``sign`` makes the MAC of the card identification code (the session's
    :meth:`~sscard.card.SocialSecurityCard.sign_card_id`).
    """
    records = encode_holder(profile, holder, serial, sign)
    tk = _tk(profile)
    steps: list[Step] = [
        Step(
            "open",
            _("authenticate with the blank card's transport key"),
            commands.external_authenticate(tk.id),
            lambda c: c.authenticate_transport(),
            computed="cryptogram",
        )
    ]
    for spec in profile.files:
        if spec.type != FileType.MF:
            steps.append(
                Step(
                    "create",
                    _("create {file}").format(file=spec.id),
                    commands.create_file(spec),
                    _create(spec),
                )
            )
        if spec.is_df:
            for slot in profile.key_scheme.in_df(spec.id):
                if slot.type == KeyType.TK:
                    continue
                steps.append(
                    Step(
                        "keys",
                        _(
                            "load key {ref} v{version} ({algorithm}, diversified for this card)"
                        ).format(ref=slot.ref, version=slot.version, algorithm=slot.algorithm),
                        commands.write_key(slot),
                        _write_key(slot, tk),
                        computed="enciphered key record + MAC",
                    )
                )
    for (ef, no), data in sorted(records.items()):
        spec = profile.ef(ef)
        item = spec.record(no)
        steps.append(
            Step(
                "records",
                _("write {ef} record {no} ({field})").format(ef=ef, no=no, field=item.field),
                commands.update_record(spec, no, data),
                _update(ef, no, data),
                label=item.field,
            )
        )
    steps.append(
        Step(
            "pin",
            _("set the initial PIN"),
            commands.wire_template(commands.pin_reload()),
            lambda c: c.reload_pin(pin),
            computed="enciphered PIN block + MAC",
        )
    )
    for (ef, no), expected in sorted(records.items()):
        spec = profile.ef(ef)
        steps.append(
            Step(
                "verify",
                _("read back {ef} record {no} ({field}) and compare").format(
                    ef=ef, no=no, field=spec.record(no).field
                ),
                commands.read_record(spec, no),
                _read_back(ef, no, expected),
            )
        )
    steps.append(
        Step(
            "verify",
            _("internal authentication: the card proves it holds its key"),
            commands.internal_authenticate(1),
            lambda c: c.internal_authenticate(1),
            computed="challenge",
        )
    )
    for spec in profile.files:
        eak = next((s for s in profile.key_scheme.in_df(spec.id) if s.type == KeyType.EAK), None)
        if spec.is_df and eak is not None:
            steps.append(
                Step(
                    "verify",
                    _("external authentication to {df} with {ref}").format(df=spec.id, ref=eak.ref),
                    commands.external_authenticate(eak.id),
                    _ext_auth(spec.id, eak.id),
                    computed="cryptogram",
                )
            )
    steps.append(
        Step(
            "close",
            _("end personalization (card becomes ISSUED)"),
            commands.end_personalization(),
            lambda c: c.end_personalization(),
        )
    )
    city = str(holder["region"]) if holder.get("region") else None
    return PersonalizationPlan(profile, bytes(serial), tuple(steps), records, city)


def _create(spec: FileSpec) -> Callable[[SocialSecurityCard], None]:
    def run(card: SocialSecurityCard) -> None:
        card.create_file(spec)

    return run


def _write_key(slot: KeySlot, under: KeySlot) -> Callable[[SocialSecurityCard], None]:
    def run(card: SocialSecurityCard) -> None:
        card.write_key(slot, under=under)

    return run


def _update(ef: str, no: int, data: bytes) -> Callable[[SocialSecurityCard], None]:
    def run(card: SocialSecurityCard) -> None:
        card.update_record(ef, no, data)

    return run


def _read_back(ef: str, no: int, expected: bytes) -> Callable[[SocialSecurityCard], None]:
    def run(card: SocialSecurityCard) -> None:
        if card.read_record(ef, no) != expected:
            raise VerificationFailed(
                _(
                    "{ef} record {no} reads back different from what was written; "
                    "the card may be faulty: run the issuance again or use another card"
                ).format(ef=ef, no=no)
            )

    return run


def _ext_auth(df: str, key_id: int) -> Callable[[SocialSecurityCard], None]:
    def run(card: SocialSecurityCard) -> None:
        card.external_authenticate(df, key_id)

    return run
