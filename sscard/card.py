"""The card session: the social security card as service-point software sees it.

``SocialSecurityCard`` speaks the commands of shared/spec/card.md over any
transport: it selects files by their profile ids, reads and decodes records,
writes them (plain after external authentication, or line-protected), runs
external and internal authentication through a
:class:`~sscard.keys.security_module.SecurityModule`, and blocks or unblocks.
It never holds a key: cryptograms and MACs come from the security module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sscard import errors
from sscard.apdu import CommandApdu, ResponseApdu
from sscard.keys.scheme import KeySlot
from sscard.keys.security_module import SecurityModule
from sscard.layout import card_profiles, decode_records, load_profile
from sscard.layout.fcp import build_fcp
from sscard.layout.model import FileSpec, Profile
from sscard.protocol import ApduProtocol
from sscard.sm import LineProtection
from sscard.transport.base import Transport

# GET DATA 80 CA 00 01 → lifecycle byte [ours] (docs/card.md).
LIFECYCLES = {
    0x01: "BLANK",
    0x02: "PERSONALIZATION",
    0x03: "ISSUED",
    0x04: "APP_BLOCKED_TEMPORARY",
    0x05: "APP_BLOCKED_PERMANENT",
}


class CardNotGenuine(errors.AuthenticationError):
    """INTERNAL AUTHENTICATE did not prove the card holds its diversified key."""


class KeysRequired(errors.InvalidInput):
    """The operation needs a key store (security module) and none was given."""


class CardNotIssued(errors.OperationFailed):
    """The card has not been personalized yet (BLANK or PERSONALIZATION)."""


class UnknownCard(errors.InvalidInput):
    """The ATR matches no card profile."""


def profile_for_atr(atr: bytes) -> Profile:
    """The shipped profile whose ATR template matches ``atr``."""
    for name in card_profiles():
        profile = load_profile(name)
        if profile.atr_template.serial(atr) is not None:
            return profile
    raise UnknownCard(
        f"the card's ATR {atr.hex().upper()} matches no card profile "
        f"({', '.join(card_profiles())}); is this a social security card?"
    )


@dataclass(frozen=True)
class CardInfo:
    """What ``sscard info`` shows."""

    atr: bytes
    serial: bytes
    profile: str
    lifecycle: str
    pin_tries_left: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "atr": self.atr.hex().upper(),
            "serial": self.serial.hex().upper(),
            "profile": self.profile,
            "lifecycle": self.lifecycle,
            "pin_tries_left": self.pin_tries_left,
        }


class SocialSecurityCard:
    """One card in one reader. ``security`` is needed for authentication and protected writes."""

    def __init__(
        self,
        protocol: ApduProtocol,
        profile: Profile | None = None,
        *,
        security: SecurityModule | None = None,
    ) -> None:
        self.protocol = protocol
        atr = protocol.transport.atr
        self.profile = profile or profile_for_atr(atr)
        serial = self.profile.atr_template.serial(atr)
        if serial is None:
            raise UnknownCard(f"the card's ATR does not match profile {self.profile.name}")
        self.serial: bytes = serial
        self.security = security
        self._current_df: str | None = None
        self._city: str | None = self.profile.key_city
        self._city_known = self._city is not None

    @classmethod
    def open(
        cls,
        transport: Transport,
        profile: Profile | None = None,
        *,
        security: SecurityModule | None = None,
    ) -> SocialSecurityCard:
        """Connect (if needed) and start a session."""
        if not transport.connected:
            transport.connect()
        return cls(ApduProtocol(transport), profile, security=security)

    def __repr__(self) -> str:
        return (
            f"SocialSecurityCard(serial={self.serial.hex().upper()}, profile={self.profile.name})"
        )

    # --- selection --------------------------------------------------------------------

    def select(self, file_id: str, *, force: bool = False) -> None:
        """Make DF ``file_id`` (or the DF of EF ``file_id`` and the EF) current.

        Selecting a DF clears its security state on the card, so an already
        current DF is not selected again unless ``force``.
        """
        spec = self.profile.file(file_id)
        if spec.is_df:
            self._select_df(spec, force=force)
            return
        assert spec.parent is not None
        self._select_df(self.profile.file(spec.parent), force=False)
        assert spec.fid is not None
        self.protocol.send(CommandApdu(0x00, 0xA4, 0x02, 0x0C, spec.fid))  # EF under current DF

    def _select_df(self, spec: FileSpec, *, force: bool) -> None:
        if self._current_df == spec.id and not force:
            return
        self._current_df = None
        if spec.type == "mf":
            self.protocol.send(CommandApdu(0x00, 0xA4, 0x00, 0x0C, b"\x3f\x00"))
        elif spec.df_name is not None:
            # 6283 / 9303: the application is blocked (temporarily / for good), but selected;
            # what may still be done there, the card says command by command.
            response = self.protocol.send(
                CommandApdu(0x00, 0xA4, 0x04, 0x0C, spec.df_name), check=False
            )
            if response.sw not in (0x9000, 0x6283, 0x9303):
                raise self._error(response.sw, 0xA4)
        else:
            assert spec.parent is not None and spec.fid is not None
            self._select_df(self.profile.file(spec.parent), force=False)
            self._current_df = None
            self.protocol.send(CommandApdu(0x00, 0xA4, 0x01, 0x0C, spec.fid))  # child DF
        self._current_df = spec.id

    def create_file(self, spec: FileSpec) -> bool:
        """CREATE FILE for ``spec`` under its parent unless it exists; True if created.

        Idempotent, so an interrupted personalization can run again.
        """
        assert spec.parent is not None
        self.select(spec.parent)
        if spec.df_name is not None and spec.fid is None:
            probe = CommandApdu(0x00, 0xA4, 0x04, 0x0C, spec.df_name)
        else:
            assert spec.fid is not None
            p1 = 0x01 if spec.is_df else 0x02  # child DF / EF under the current DF
            probe = CommandApdu(0x00, 0xA4, p1, 0x0C, spec.fid)
        if self.protocol.send(probe, check=False).sw in (0x9000, 0x6283):
            self._current_df = spec.id if spec.is_df else spec.parent
            return False
        self.protocol.send(CommandApdu(0x80, 0xE0, 0x00, 0x00, build_fcp(spec)))
        self._current_df = spec.id if spec.is_df else spec.parent
        return True

    def write_key(self, slot: KeySlot, *, under: KeySlot) -> bytes:
        """WRITE KEY ``slot`` into its DF, enciphered and MACed under ``under``; its KCV."""
        security = self._security()
        self.select(slot.df)
        header = bytes((0x84, 0xD4, 0x01, slot.id))
        challenge = self.get_challenge()
        data = security.write_key(
            self.serial, slot, under=under, header=header, challenge=challenge
        )
        self.protocol.send(CommandApdu(0x84, 0xD4, 0x01, slot.id, data.data))
        return data.kcv

    def reload_pin(self, pin: str) -> None:
        """PIN RELOAD: set the PIN and reset its counter, enciphered and MACed with the RPK."""
        block = encode_pin(pin, self.profile.pin.length)
        security = self._security()
        self.select(self.profile.pin.df)
        slot = self._slot(self.profile.pin.df, "RPK", 1)
        self.send_protected(
            CommandApdu(0x80, 0x5E, 0x00, 0x00, block), slot, encipher=True, security=security
        )

    def end_personalization(self) -> None:
        """END PERSONALIZATION: PERSONALIZATION → ISSUED."""
        self.protocol.send(CommandApdu(0x80, 0xEA, 0x00, 0x00))

    def forget_selection(self) -> None:
        """Call after commands that change the current DF behind the session's back."""
        self._current_df = None

    # --- records ----------------------------------------------------------------------

    def _record_p2(self, ef: FileSpec) -> int:
        assert ef.parent is not None
        self.select(ef.parent)
        if ef.sfi is not None:
            return (ef.sfi << 3) | 0x04
        self.select(ef.id)
        return 0x04

    def read_record(self, ef_id: str, no: int) -> bytes:
        """One record of EF ``ef_id`` (raw bytes: tag ‖ len ‖ value)."""
        ef = self.profile.ef(ef_id)
        p2 = self._record_p2(ef)
        return self.protocol.send(CommandApdu(0x00, 0xB2, no, p2, le=256)).data

    def update_record(self, ef_id: str, no: int, data: bytes, *, protected: bool = False) -> None:
        """Write one record; ``protected`` adds the line-protection MAC (STK of the EF's DF)."""
        ef = self.profile.ef(ef_id)
        security = self._security() if protected else None
        p2 = self._record_p2(ef)
        if security is None:
            self.protocol.send(CommandApdu(0x00, 0xDC, no, p2, bytes(data)))
            return
        assert ef.parent is not None
        slot = self._slot(ef.parent, "STK", 1)
        self.send_protected(CommandApdu(0x00, 0xDC, no, p2, bytes(data)), slot, security=security)

    def read_records(self, ef_id: str) -> dict[tuple[str, int], bytes]:
        """Every record of EF ``ef_id`` the profile declares."""
        ef = self.profile.ef(ef_id)
        return {(ef.id, r.no): self.read_record(ef.id, r.no) for r in ef.records}

    def read_holder(self) -> dict[str, Any]:
        """EF05 and EF06 decoded with the issuance field names (dates ISO)."""
        life = self.lifecycle()
        if life in ("BLANK", "PERSONALIZATION"):
            raise CardNotIssued(
                f"the card {self.serial.hex().upper()} is not issued yet (lifecycle {life})"
            ).with_hint("issue it first")
        records: dict[tuple[str, int], bytes] = {}
        for ef_id in ("EF05", "EF06"):
            records.update(self.read_records(ef_id))
        return decode_records(self.profile, records)

    # --- authentication ---------------------------------------------------------------

    @property
    def city(self) -> str | None:
        """The city level of this card's key diversification, once known (docs/keys.md)."""
        return self._city

    @city.setter
    def city(self, value: str | None) -> None:
        """Set by issuance from the holder's region, before the card carries it."""
        self._city = self.profile.key_city or value
        self._city_known = True

    def read_city(self) -> str | None:
        """The card's city: the profile's ``key_city``, else the region of its card id.

        The region is the first part of the card identification code (EF05
        record 01, free read; docs/card.md), written at issuance from the
        holder's ``region``. ``None`` on a card that carries none yet.
        """
        if self._city_known:
            return self._city
        self._city_known = True
        item = next((r for r in self.profile.records() if r.encoding == "card-id"), None)
        if item is None:
            return None
        ef = next(f for f in self.profile.files if item in f.records)
        try:
            p2 = self._record_p2(ef)
        except errors.ApduError:  # a blank card: no application yet
            return None
        response = self.protocol.send(CommandApdu(0x00, 0xB2, item.no, p2, le=256), check=False)
        if response.sw != 0x9000:
            return None
        try:
            value = item.codec.decode(response.data)
        except errors.SscardError:
            return None
        self._city = getattr(value, "region", None)
        return self._city

    def _security(self) -> SecurityModule:
        """The security module bound to this card's city.

        Call it before selecting the DF a command works in: learning the city may
        read EF05, which selects SSSE (and would clear another DF's security state).
        """
        if self.security is None:
            raise KeysRequired("this operation needs the card's keys: a key store is needed")
        return self.security.for_city(self.read_city())

    def _slot(self, df: str, type: str, id: int) -> KeySlot:
        try:
            return self.profile.key_scheme.find(df, type, id)
        except KeyError:
            raise errors.InvalidInput(
                f"profile {self.profile.name} has no key {df}/{type}/{id:02X}"
            ) from None

    def get_challenge(self) -> bytes:
        """GET CHALLENGE: 8 random bytes, usable once."""
        return self.protocol.send(CommandApdu(0x00, 0x84, 0x00, 0x00, le=8)).data

    def external_authenticate(self, df: str, key_id: int = 1, *, key_type: str = "EAK") -> None:
        """EXTERNAL AUTHENTICATE to ``df`` with its key (EAK ``key_id``, MK or TK)."""
        security = self._security()
        slot = self._slot(df, key_type, key_id if key_type == "EAK" else 0)
        self.select(df)
        challenge = self.get_challenge()
        cryptogram = security.external_auth(self.serial, slot, challenge)
        self.protocol.send(CommandApdu(0x00, 0x82, 0x00, slot.id, cryptogram))

    def authenticate_transport(self) -> None:
        """Open the personalization session with the blank card's transport key."""
        self.external_authenticate("MF", key_type="TK")

    def internal_authenticate(self, key_id: int = 1) -> None:
        """Prove the card is genuine (it holds its diversified IAK); raise if not."""
        security = self._security()
        slot = self._slot("SSSE", "IAK", key_id)
        self.select("SSSE")
        challenge = os.urandom(8)
        response = self.protocol.send(CommandApdu(0x00, 0x88, 0x00, key_id, challenge, le=256))
        if not security.verify_internal_auth(self.serial, slot, challenge, response.data):
            raise CardNotGenuine(
                "INTERNAL AUTHENTICATE failed: the card does not hold the key it should; "
                "it may be counterfeit or personalized with other keys"
            )

    def send_protected(
        self,
        command: CommandApdu,
        slot: KeySlot,
        *,
        encipher: bool = False,
        security: SecurityModule | None = None,
    ) -> ResponseApdu:
        """Send ``command`` line-protected with ``slot`` (``sscard.sm.LineProtection``).

        Pass ``security`` (from :meth:`_security`, taken before selecting) when the
        current DF is not SSSE.
        """
        module = security or self._security()
        step = LineProtection(module, self.serial, slot, encipher=encipher)
        return self.protocol.with_step(step).send(command)

    # --- state ------------------------------------------------------------------------

    def lifecycle(self) -> str:
        """BLANK, PERSONALIZATION, ISSUED, APP_BLOCKED_*, or CARD_BLOCKED."""
        response = self.protocol.send(CommandApdu(0x80, 0xCA, 0x00, 0x01, le=1), check=False)
        if response.sw == 0x6A81:
            return "CARD_BLOCKED"
        if response.sw != 0x9000 or len(response.data) != 1:
            raise errors.ProtocolError(
                f"the card did not report its lifecycle (SW {response.sw:04X})"
            )
        return LIFECYCLES.get(response.data[0], f"UNKNOWN({response.data[0]:02X})")

    def pin_tries_left(self) -> int | None:
        """Tries left on the PIN without spending one; None when no PIN is set yet."""
        self.select(self.profile.pin.df)
        response = self.protocol.send(CommandApdu(0x00, 0x20, 0x00, 0x00), check=False)
        if response.tries_left is not None:
            return response.tries_left
        if response.sw == 0x6983:
            return 0
        if response.sw in (0x6985, 0x6A88):
            return None
        raise self._error(response.sw, 0x20)

    def _error(self, sw: int, ins: int) -> errors.ApduError:
        from sscard.protocol import error_for

        return error_for(CommandApdu(0x00, ins), sw)

    def info(self) -> CardInfo:
        """ATR, serial, profile, lifecycle and PIN tries left."""
        life = self.lifecycle()
        tries = None
        if life in ("ISSUED", "APP_BLOCKED_TEMPORARY"):
            tries = self.pin_tries_left()
        return CardInfo(self.protocol.transport.atr, self.serial, self.profile.name, life, tries)

    def block_application(self, *, permanent: bool = False) -> None:
        """APPLICATION BLOCK (MAC with the SSSE line-protection key)."""
        security = self._security()
        self.select("SSSE")
        slot = self._slot("SSSE", "STK", 1)
        self.send_protected(CommandApdu(0x80, 0x1E, 0x00, int(permanent)), slot, security=security)

    def unblock_application(self) -> None:
        """APPLICATION UNBLOCK (temporary blocks only)."""
        security = self._security()
        self.select("SSSE")
        slot = self._slot("SSSE", "STK", 1)
        self.send_protected(CommandApdu(0x80, 0x18, 0x00, 0x00), slot, security=security)

    def block_card(self) -> None:
        """CARD BLOCK: permanent; every command then answers 6A81."""
        security = self._security()
        self.select("SSSE")
        slot = self._slot("SSSE", "STK", 1)
        self.send_protected(CommandApdu(0x80, 0x16, 0x00, 0x00), slot, security=security)


def encode_pin(pin: str, length: int = 6) -> bytes:
    """The packed-BCD form of a PIN of ``length`` digits (spec: VERIFY, 6 digits → 3 bytes).

    The error never repeats the PIN.
    """
    if len(pin) != length or not pin.isascii() or not pin.isdigit():
        raise errors.InvalidInput("invalid PIN", [("pin", f"must be exactly {length} digits")])
    if length % 2:
        raise errors.InvalidInput("invalid PIN", [("pin", "packed BCD needs an even length")])
    return bytes.fromhex(pin)
