"""Card layout: profiles, record codecs and cardholder data (shared/spec/card.md; docs/layout.md).

The profile is the one source of truth for what is on the card: the
personalization plan, the decoders and the emulated card all read it.
"""

from sscard.layout.codecs import CardId, RecordCodec, codec_for
from sscard.layout.loader import DEFAULT_PROFILE, load_profile, shipped_profiles
from sscard.layout.model import (
    Access,
    AccessCondition,
    AtrTemplate,
    CommandSet,
    FileSpec,
    PinSpec,
    Profile,
    RecordItem,
)

__all__ = [
    "DEFAULT_PROFILE",
    "Access",
    "AccessCondition",
    "AtrTemplate",
    "CardId",
    "CommandSet",
    "FileSpec",
    "PinSpec",
    "Profile",
    "RecordCodec",
    "RecordItem",
    "codec_for",
    "load_profile",
    "shipped_profiles",
]
