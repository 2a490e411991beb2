"""The personalization plan: from a profile, holder data and a card serial to a list of steps.

One source of truth: the file tree, keys and records all come from the
profile (``sscard.layout``). Every step is idempotent, so running the plan
again on a card that was torn at any APDU finishes the job (issue 6). The plan
is data: ``describe()`` gives each step with secrets redacted (``--dry-run``).

Order (shared/spec/card.md, "Lifecycle", "Commands"):

1. EXTERNAL AUTHENTICATE with the blank card's transport key (TK session);
2. CREATE FILE for every DF and EF in profile order, each DF followed by its
   keys (WRITE KEY, enciphered and MACed under the TK [ours]);
3. UPDATE RECORD for every holder and card record;
4. PIN RELOAD with the initial PIN (enciphered under the RPK);
5. verification: read back every record, INTERNAL AUTHENTICATE, EXTERNAL
   AUTHENTICATE with one derived key per DF;
6. END PERSONALIZATION.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sscard import errors
from sscard.card import SocialSecurityCard
from sscard.keys.scheme import KeySlot
from sscard.layout import encode_holder
from sscard.layout.model import FileSpec, Profile


class VerificationFailed(errors.OperationFailed):
    """Read-back or authentication after personalization did not match what was written."""


@dataclass(frozen=True)
class Step:
    """One step: what it does in words, the command it sends (secrets redacted), and how."""

    phase: str
    description: str
    command: str
    run: Callable[[SocialSecurityCard], None]


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
            {"phase": s.phase, "description": s.description, "command": s.command}
            for s in self.steps
        ]

    def run(
        self,
        card: SocialSecurityCard,
        *,
        progress: Callable[[int, Step], None] | None = None,
        start: int = 0,
    ) -> None:
        """Run the steps from ``start`` on ``card`` (whose serial must match)."""
        if card.serial != self.serial:
            raise errors.InvalidInput(
                "wrong card",
                [
                    (
                        "serial",
                        f"plan is for {self.serial.hex().upper()}, card is "
                        f"{card.serial.hex().upper()}",
                    )
                ],
            )
        card.city = self.city
        for i, step in enumerate(self.steps[start:], start):
            if progress is not None:
                progress(i, step)
            step.run(card)


def _tk(profile: Profile) -> KeySlot:
    return profile.key_scheme.find("MF", "TK", 0)


def _fcp_text(spec: FileSpec) -> str:
    return f"80 E0 00 00 <FCP of {spec.id}>"


def build_plan(
    profile: Profile,
    holder: Mapping[str, Any],
    serial: bytes,
    *,
    pin: str,
) -> PersonalizationPlan:
    """The plan for one card. ``holder`` is validated first (nothing runs if it is invalid)."""
    records = encode_holder(profile, holder, serial)
    tk = _tk(profile)
    steps: list[Step] = [
        Step(
            "open",
            "authenticate with the blank card's transport key",
            "00 82 00 00 <cryptogram>",
            lambda c: c.authenticate_transport(),
        )
    ]
    for spec in profile.files:
        if spec.type != "mf":
            steps.append(Step("create", f"create {spec.id}", _fcp_text(spec), _create(spec)))
        if spec.is_df:
            for slot in profile.key_scheme.in_df(spec.id):
                if slot.type == "TK":
                    continue
                steps.append(
                    Step(
                        "keys",
                        f"load key {slot.ref} v{slot.version} ({slot.algorithm}, diversified "
                        "for this card)",
                        f"84 D4 01 {slot.id:02X} <enciphered key record + MAC>",
                        _write_key(slot, tk),
                    )
                )
    for (ef, no), data in sorted(records.items()):
        item = profile.ef(ef).record(no)
        steps.append(
            Step(
                "records",
                f"write {ef} record {no} ({item.field})",
                f"00 DC {no:02X} 04 {len(data):02X} <{item.field}>",
                _update(ef, no, data),
            )
        )
    steps.append(
        Step(
            "pin",
            "set the initial PIN",
            "84 5E 00 00 <enciphered PIN block + MAC>",
            lambda c: c.reload_pin(pin),
        )
    )
    steps.append(
        Step("verify", "read back every record and compare", "00 B2 ...", _read_back(records))
    )
    steps.append(
        Step(
            "verify",
            "internal authentication: the card proves it holds its key",
            "00 88 00 01 08 <challenge>",
            lambda c: c.internal_authenticate(),
        )
    )
    for spec in profile.files:
        if spec.is_df and any(s.type == "EAK" for s in profile.key_scheme.in_df(spec.id)):
            eak = next(s for s in profile.key_scheme.in_df(spec.id) if s.type == "EAK")
            steps.append(
                Step(
                    "verify",
                    f"external authentication to {spec.id} with {eak.ref}",
                    f"00 82 00 {eak.id:02X} <cryptogram>",
                    _ext_auth(spec.id, eak.id),
                )
            )
    steps.append(
        Step(
            "close",
            "end personalization (card becomes ISSUED)",
            "80 EA 00 00",
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


def _read_back(
    records: Mapping[tuple[str, int], bytes],
) -> Callable[[SocialSecurityCard], None]:
    def run(card: SocialSecurityCard) -> None:
        for (ef, no), expected in sorted(records.items()):
            if card.read_record(ef, no) != expected:
                raise VerificationFailed(
                    f"{ef} record {no} reads back different from what was written; "
                    "the card may be faulty: run the issuance again or use another card"
                )

    return run


def _ext_auth(df: str, key_id: int) -> Callable[[SocialSecurityCard], None]:
    def run(card: SocialSecurityCard) -> None:
        card.external_authenticate(df, key_id)

    return run
