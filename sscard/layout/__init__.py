"""Card layout: profiles, record codecs and cardholder data (docs/card.md; docs/layout.md).

The profile is the one source of truth for what is on the card: the
personalization plan, the decoders and the emulated card all read it.

The names below are imported from their modules when first used (PEP 562), so
``from sscard.layout import escape_controls`` does not load the profile loader,
the codecs or jsonschema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sscard.lazy import lazy_names

if TYPE_CHECKING:
    from sscard.layout.codecs import CardId, RecordCodec, codec_for
    from sscard.layout.controls import control_problem, escape_controls, escape_json_controls
    from sscard.layout.holder import (
        HOLDER_FIELDS,
        holder_problems,
        holder_schema,
        normalize_holder,
        validate_holder,
    )
    from sscard.layout.holder_codec import decode_records, encode_holder, holder_records
    from sscard.layout.holder_io import HolderRow, read_holders, validate_rows
    from sscard.layout.loader import DEFAULT_PROFILE, card_profiles, load_profile, shipped_profiles
    from sscard.layout.model import (
        Access,
        AccessCondition,
        CommandSet,
        FileSpec,
        PinSpec,
        Profile,
        RecordItem,
    )

_HOMES: dict[str, str] = {
    "CardId": "sscard.layout.codecs",
    "RecordCodec": "sscard.layout.codecs",
    "codec_for": "sscard.layout.codecs",
    "control_problem": "sscard.layout.controls",
    "escape_controls": "sscard.layout.controls",
    "escape_json_controls": "sscard.layout.controls",
    "HOLDER_FIELDS": "sscard.layout.holder",
    "holder_problems": "sscard.layout.holder",
    "holder_schema": "sscard.layout.holder",
    "normalize_holder": "sscard.layout.holder",
    "validate_holder": "sscard.layout.holder",
    "decode_records": "sscard.layout.holder_codec",
    "encode_holder": "sscard.layout.holder_codec",
    "holder_records": "sscard.layout.holder_codec",
    "HolderRow": "sscard.layout.holder_io",
    "read_holders": "sscard.layout.holder_io",
    "validate_rows": "sscard.layout.holder_io",
    "DEFAULT_PROFILE": "sscard.layout.loader",
    "card_profiles": "sscard.layout.loader",
    "load_profile": "sscard.layout.loader",
    "shipped_profiles": "sscard.layout.loader",
    "Access": "sscard.layout.model",
    "AccessCondition": "sscard.layout.model",
    "CommandSet": "sscard.layout.model",
    "FileSpec": "sscard.layout.model",
    "PinSpec": "sscard.layout.model",
    "Profile": "sscard.layout.model",
    "RecordItem": "sscard.layout.model",
}
"""Where each public name lives (imported on first use)."""


__getattr__, __dir__ = lazy_names(__name__, _HOMES)

__all__ = [
    "DEFAULT_PROFILE",
    "HOLDER_FIELDS",
    "Access",
    "AccessCondition",
    "CardId",
    "CommandSet",
    "FileSpec",
    "HolderRow",
    "PinSpec",
    "Profile",
    "RecordCodec",
    "RecordItem",
    "card_profiles",
    "codec_for",
    "control_problem",
    "decode_records",
    "encode_holder",
    "escape_controls",
    "escape_json_controls",
    "holder_problems",
    "holder_records",
    "holder_schema",
    "load_profile",
    "normalize_holder",
    "read_holders",
    "shipped_profiles",
    "validate_holder",
    "validate_rows",
]
