"""Card layout: profiles, record codecs and cardholder data (docs/card.md; docs/layout.md).

The profile is the one source of truth for what is on the card: the
personalization plan, the decoders and the emulated card all read it.
"""

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
