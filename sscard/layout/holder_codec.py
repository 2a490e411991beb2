"""Holder data ↔ card records of EF05/EF06 (spec/card.md, "EF05", "EF06").

:func:`encode_holder` turns validated issuance input into record bytes keyed by
``(file id, record number)``; :func:`decode_records` turns records read from a
card back into the same field names and value formats (dates ``YYYY-MM-DD``),
so its output is valid issuance input again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from sscard.errors import InvalidInput
from sscard.i18n import _
from sscard.layout.codecs import CardId
from sscard.layout.holder import HOLDER_FIELDS, normalize_holder, validate_holder
from sscard.layout.model import Profile, RecordItem

RecordKey = tuple[str, int]
SERIAL_LENGTH = 8
"""Bytes of a chip serial (GET DATA ``80 CA 00 02``, docs/card.md) [ours]."""


def holder_records(profile: Profile) -> tuple[RecordItem, ...]:
    """The records issuance writes from holder data: constants, the card id, holder fields."""
    return tuple(
        r
        for r in profile.records()
        if r.value is not None or r.encoding == "card-id" or r.field in HOLDER_FIELDS
    )


CardIdSigner = Callable[[bytes], bytes]
"""``mac input → 4-byte MAC`` of the card identification code: at issuance the
security module's :meth:`~sscard.keys.security_module.SecurityModule.card_id_mac`."""


def encode_holder(
    profile: Profile, holder: Mapping[str, Any], serial: bytes, sign: CardIdSigner
) -> dict[RecordKey, bytes]:
    """Record bytes for one card: ``{(file id, record no): tag ‖ len ‖ value}``.

    ``serial`` is the chip serial; the card identification code is the holder's
    region ‖ RID ‖ card sequence (from ``serial``) ‖ ``sign(mac input)``.

    Validates ``holder`` first (:class:`~sscard.errors.InvalidInput` listing every
    problem) and stores its normalized form (:func:`normalize_holder`). Optional
    fields that are absent (``name_ext``) are left out, so the record stays
    never-written.
    """
    validate_holder(holder, profile)
    holder = normalize_holder(holder)
    if len(serial) != SERIAL_LENGTH:
        raise InvalidInput(
            _("invalid card serial"),
            [("serial", _("must be {length} bytes").format(length=SERIAL_LENGTH))],
        )
    out: dict[RecordKey, bytes] = {}
    for item in holder_records(profile):
        value: Any
        if item.value is not None:
            value = item.constant
        elif item.encoding == "card-id":
            unsigned = CardId(holder["region"], CardId.sequence_of(serial), b"")
            value = unsigned._replace(mac=bytes(sign(unsigned.mac_input(serial))))
        elif item.field in holder:
            value = _to_card(item, holder[item.field])
        else:
            continue
        out[(item.file, item.no)] = item.codec.encode(value)
    return out


def decode_records(
    profile: Profile, records: Mapping[RecordKey, bytes], *, holder_only: bool = True
) -> dict[str, Any]:
    """Field values of records read from a card; never-written records are left out.

    With ``holder_only`` (default) the result has only issuance-input fields; else
    it adds ``card_id`` (hex), the profile constants and every other record's field.
    Raises :class:`~sscard.errors.RecordDecodeError` naming a malformed record.
    """
    found: dict[str, Any] = {}
    for (file_id, no), raw in records.items():
        try:
            item = profile.ef(file_id).record(no)
        except KeyError:
            raise InvalidInput(
                _("record not in the profile"),
                [
                    (
                        _("{file} record {no}").format(file=file_id, no=no),
                        _("not in {profile}").format(profile=profile.name),
                    )
                ],
            ) from None
        value = item.codec.decode(bytes(raw))
        if value is None:
            continue
        if isinstance(value, CardId):
            found["region"] = value.region
            if not holder_only:
                found["card_id"] = value.hex
        elif item.field in HOLDER_FIELDS or not holder_only:
            found[item.field] = _from_card(value)
    order = {f: i for i, f in enumerate(HOLDER_FIELDS)}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _to_card(item: RecordItem, value: Any) -> Any:
    if item.encoding == "bcd-date":
        return dt.date.fromisoformat(value)
    if item.encoding == "binary":
        return bytes.fromhex(value)
    return value


def _from_card(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex().upper()
    return value
