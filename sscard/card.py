"""The card session: the social security card as service-point software sees it.

``SocialSecurityCard`` speaks the commands of the card (built by
:mod:`sscard.commands`; docs/card.md) over any transport: it selects files by
their profile ids, reads and decodes records, writes them (plain after
external authentication, or line-protected), runs external and internal
authentication through a :class:`~sscard.keys.security_module.SecurityModule`,
and blocks or unblocks.
It never holds a key: cryptograms and MACs come from the security module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sscard import commands, errors
from sscard.apdu import CommandApdu, ResponseApdu
from sscard.keys.scheme import KeySlot
from sscard.keys.security_module import SecurityModule
from sscard.layout import card_profiles, decode_records, load_profile
from sscard.layout.model import FileSpec, Profile
from sscard.protocol import ApduProtocol
from sscard.sm import LineProtection
from sscard.transport.base import Transport
from sscard.vocab import CLA, INS, SW, FileType, KeyType, Lifecycle


class CardNotGenuine(errors.AuthenticationError):
    """INTERNAL AUTHENTICATE did not prove the card holds its diversified key."""


class KeysRequired(errors.InvalidInput):
    """The operation needs a key store (security module) and none was given."""


class TransportKeyRefused(errors.AuthenticationFailed):
    """A blank card refused the transport key the key store derives for it.

    The card was keyed from another transport root than the one in the key
    store (e.g. the development keys, or another vendor's). Nothing was written.
    """


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
        self.protocol.send(commands.select_ef(spec.fid))

    def _select_df(self, spec: FileSpec, *, force: bool) -> None:
        if self._current_df == spec.id and not force:
            return
        self._current_df = None
        if spec.type == FileType.MF:
            self.protocol.send(commands.select_mf())
        elif spec.df_name is not None:
            # 6283 / 9303: the application is blocked (temporarily / for good), but selected;
            # what may still be done there, the card says command by command.
            response = self.protocol.send(commands.select_by_name(spec.df_name), check=False)
            if response.sw not in (SW.OK, SW.FILE_DEACTIVATED, SW.APPLICATION_BLOCKED):
                raise self._error(response.sw, INS.SELECT)
        else:
            assert spec.parent is not None and spec.fid is not None
            self._select_df(self.profile.file(spec.parent), force=False)
            self._current_df = None
            self.protocol.send(commands.select_child_df(spec.fid))
        self._current_df = spec.id

    def create_file(self, spec: FileSpec) -> bool:
        """CREATE FILE for ``spec`` under its parent unless it exists; True if created.

        Idempotent, so an interrupted personalization can run again.
        """
        assert spec.parent is not None
        self.select(spec.parent)
        if spec.df_name is not None and spec.fid is None:
            probe = commands.select_by_name(spec.df_name)
        else:
            assert spec.fid is not None
            probe = (
                commands.select_child_df(spec.fid) if spec.is_df else commands.select_ef(spec.fid)
            )
        if self.protocol.send(probe, check=False).sw in (SW.OK, SW.FILE_DEACTIVATED):
            self._current_df = spec.id if spec.is_df else spec.parent
            return False
        self.protocol.send(commands.create_file(spec))
        self._current_df = spec.id if spec.is_df else spec.parent
        return True

    def write_key(self, slot: KeySlot, *, under: KeySlot) -> bytes:
        """WRITE KEY ``slot`` into its DF, enciphered and MACed under ``under``; its KCV."""
        security = self._security()
        self.select(slot.df)
        template = commands.write_key(slot)
        challenge = self.get_challenge()
        data = security.write_key(
            self.serial, slot, under=under, header=template.header(), challenge=challenge
        )
        self.protocol.send(template.with_data(data.data))
        return data.kcv

    def reload_pin(self, pin: str) -> None:
        """PIN RELOAD: set the PIN and reset its counter, enciphered and MACed with the RPK."""
        block = encode_pin(pin, self.profile.pin.length)
        security = self._security()
        self.select(self.profile.pin.df)
        slot = self._slot(self.profile.pin.df, KeyType.RPK, 1)
        self.send_protected(commands.pin_reload(block), slot, encipher=True, security=security)

    def end_personalization(self) -> None:
        """END PERSONALIZATION: PERSONALIZATION → ISSUED."""
        self.protocol.send(commands.end_personalization())

    def forget_selection(self) -> None:
        """Call after commands that change the current DF behind the session's back."""
        self._current_df = None

    # --- records ----------------------------------------------------------------------

    def _select_for_records(self, ef: FileSpec) -> None:
        """Select what record commands on ``ef`` need: its DF, and the EF unless it has an SFI."""
        assert ef.parent is not None
        self.select(ef.parent)
        if ef.sfi is None:
            self.select(ef.id)

    def read_record(self, ef_id: str, no: int) -> bytes:
        """One record of EF ``ef_id`` (raw bytes: tag ‖ len ‖ value)."""
        ef = self.profile.ef(ef_id)
        self._select_for_records(ef)
        return self.protocol.send(commands.read_record(ef, no)).data

    def update_record(self, ef_id: str, no: int, data: bytes, *, protected: bool = False) -> None:
        """Write one record; ``protected`` adds the line-protection MAC (STK of the EF's DF)."""
        ef = self.profile.ef(ef_id)
        security = self._security() if protected else None
        self._select_for_records(ef)
        command = commands.update_record(ef, no, data)
        if security is None:
            self.protocol.send(command)
            return
        assert ef.parent is not None
        slot = self._slot(ef.parent, KeyType.STK, 1)
        self.send_protected(command, slot, security=security)

    def read_records(self, ef_id: str) -> dict[tuple[str, int], bytes]:
        """Every record of EF ``ef_id`` the profile declares."""
        ef = self.profile.ef(ef_id)
        return {(ef.id, r.no): self.read_record(ef.id, r.no) for r in ef.records}

    def read_holder(self) -> dict[str, Any]:
        """EF05 and EF06 decoded with the issuance field names (dates ISO)."""
        life = self.lifecycle()
        if life in (Lifecycle.BLANK, Lifecycle.PERSONALIZATION):
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
            self._select_for_records(ef)
        except errors.ApduError:  # a blank card: no application yet
            return None
        response = self.protocol.send(commands.read_record(ef, item.no), check=False)
        if response.sw != SW.OK:
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

    def _slot(self, df: str, type: KeyType | str, id: int) -> KeySlot:
        try:
            return self.profile.key_scheme.find(df, type, id)
        except KeyError:
            raise errors.InvalidInput(
                f"profile {self.profile.name} has no key {df}/{type}/{id:02X}"
            ) from None

    def get_challenge(self) -> bytes:
        """GET CHALLENGE: 8 random bytes, usable once."""
        return self.protocol.send(commands.get_challenge()).data

    def external_authenticate(
        self, df: str, key_id: int = 1, *, key_type: KeyType | str = KeyType.EAK
    ) -> None:
        """EXTERNAL AUTHENTICATE to ``df`` with its key (EAK ``key_id``, MK or TK)."""
        security = self._security()
        slot = self._slot(df, key_type, key_id if key_type == KeyType.EAK else 0)
        self.select(df)
        challenge = self.get_challenge()
        cryptogram = security.external_auth(self.serial, slot, challenge)
        self.protocol.send(commands.external_authenticate(slot.id, cryptogram))

    def authenticate_transport(self) -> None:
        """Open the personalization session with the blank card's transport key.

        A refusal is :class:`TransportKeyRefused` (nothing was written to the card).
        """
        try:
            self.external_authenticate("MF", key_type=KeyType.TK)
        except errors.AuthenticationFailed as exc:
            raise TransportKeyRefused(
                exc.tries_left, exc.sw, command="EXTERNAL AUTHENTICATE"
            ).with_hint(
                "the blank card was keyed from another transport root than the key store's"
            ) from None

    def internal_authenticate(self, key_id: int = 1) -> None:
        """Prove the card is genuine (it holds its diversified IAK); raise if not."""
        security = self._security()
        slot = self._slot("SSSE", KeyType.IAK, key_id)
        self.select("SSSE")
        challenge = os.urandom(8)
        response = self.protocol.send(commands.internal_authenticate(key_id, challenge))
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
        response = self.protocol.send(commands.get_lifecycle(), check=False)
        if response.sw == SW.FUNC_NOT_SUPPORTED:
            return Lifecycle.CARD_BLOCKED
        if response.sw != SW.OK or len(response.data) != 1:
            raise errors.ProtocolError(
                f"the card did not report its lifecycle (SW {response.sw:04X})"
            )
        life = Lifecycle.from_code(response.data[0])
        return life if life is not None else f"UNKNOWN({response.data[0]:02X})"

    def pin_tries_left(self) -> int | None:
        """Tries left on the PIN without spending one; None when no PIN is set yet."""
        self.select(self.profile.pin.df)
        response = self.protocol.send(commands.verify(), check=False)
        if response.tries_left is not None:
            return response.tries_left
        if response.sw == SW.OK:  # verified in this session: the counter is full again
            return self.profile.pin.try_limit
        if response.sw == SW.AUTH_METHOD_BLOCKED:
            return 0
        if response.sw in (SW.CONDITIONS_NOT_SATISFIED, SW.REFERENCE_NOT_FOUND):
            return None
        raise self._error(response.sw, INS.VERIFY)

    def _error(self, sw: int, ins: int) -> errors.ApduError:
        from sscard.protocol import error_for

        return error_for(CommandApdu(CLA.ISO, ins), sw)

    def info(self) -> CardInfo:
        """ATR, serial, profile, lifecycle and PIN tries left."""
        life = self.lifecycle()
        tries = None
        if life in (Lifecycle.ISSUED, Lifecycle.APP_BLOCKED_TEMPORARY):
            tries = self.pin_tries_left()
        return CardInfo(self.protocol.transport.atr, self.serial, self.profile.name, life, tries)

    def block_application(self, *, permanent: bool = False) -> None:
        """APPLICATION BLOCK (MAC with the SSSE line-protection key)."""
        self._send_blocking(commands.application_block(permanent=permanent))

    def unblock_application(self) -> None:
        """APPLICATION UNBLOCK (temporary blocks only)."""
        self._send_blocking(commands.application_unblock())

    def block_card(self) -> None:
        """CARD BLOCK: permanent; every command then answers 6A81."""
        self._send_blocking(commands.card_block())

    def _send_blocking(self, command: CommandApdu) -> None:
        """A block / unblock command in SSSE, MACed with its line-protection key."""
        security = self._security()
        self.select("SSSE")
        slot = self._slot("SSSE", KeyType.STK, 1)
        self.send_protected(command, slot, security=security)


def encode_pin(pin: str, length: int = 6) -> bytes:
    """The packed-BCD form of a PIN of ``length`` digits (spec: VERIFY, 6 digits → 3 bytes).

    The error never repeats the PIN.
    """
    if len(pin) != length or not pin.isascii() or not pin.isdigit():
        raise errors.InvalidInput("invalid PIN", [("pin", f"must be exactly {length} digits")])
    if length % 2:
        raise errors.InvalidInput("invalid PIN", [("pin", "packed BCD needs an even length")])
    return bytes.fromhex(pin)
