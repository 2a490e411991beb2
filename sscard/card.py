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
from typing import TYPE_CHECKING, Any, NamedTuple

from sscard import commands, errors
from sscard.apdu import CommandApdu, ResponseApdu
from sscard.i18n import _
from sscard.keys.scheme import KeySlot
from sscard.layout import card_profiles, decode_records, load_profile
from sscard.layout.codecs import CardId
from sscard.layout.holder_codec import SERIAL_LENGTH
from sscard.layout.model import FileSpec, Profile, RecordItem
from sscard.national import NationalCode
from sscard.protocol import ApduProtocol
from sscard.sm import LineProtection
from sscard.transport.base import Transport
from sscard.vocab import CLA, INS, SW, Algorithm, FileType, KeyType, Lifecycle

if TYPE_CHECKING:
    from sscard.basic_info import BasicInfo
    from sscard.keys.security_module import SecurityModule

NAME_EXTENSION_TAG = 0x4E
"""EF06 item 4E, the name extension: a 2.0 card may lack it."""

READ_KEY_ID = 0x0A
"""KID of RKSSSE, the 3.0 read key (``00 82 00 0A``; docs/card.md)."""


class CardNotGenuine(errors.AuthenticationError):
    """INTERNAL AUTHENTICATE did not prove the card holds its diversified key."""

    national = NationalCode.INTERNAL_AUTHENTICATION_FAILED


class KeysRequired(errors.InvalidInput):
    """The operation needs a key store (security module) and none was given."""

    national = NationalCode.NO_PSAM


class TransportKeyRefused(errors.AuthenticationFailed):
    """A blank card refused the transport key the key store derives for it.

    The card was keyed from another transport root than the one in the key
    store (e.g. the development keys, or another vendor's). Nothing was written.
    """


class CardNotIssued(errors.OperationFailed):
    """The card has not been personalized yet (BLANK or PERSONALIZATION)."""

    national = NationalCode.WRONG_CARD_TYPE


class UnknownCard(errors.InvalidInput):
    """The card is not a social security card sscard knows (algorithm, spec version)."""

    national = NationalCode.WRONG_CARD_TYPE


class Recognition(NamedTuple):
    """What the card says about itself (docs/card.md, "Recognising a card")."""

    profile: Profile | None  # None: no social security application yet (a blank card)
    algorithm: Algorithm | None = None
    spec_version: str | None = None


def recognize(protocol: ApduProtocol) -> Recognition:
    """SELECT SSSE, read its algorithm indicator (FCI ``9F0C``; absent = DES) and the
    spec version (EF05 item 03), and pick the shipped profile of that generation.

    The ATR plays no part: vendors' ATRs differ. A card without the application
    (blank, or its application blocked for good) gives ``Recognition(None)``.
    """
    base = load_profile()
    ssse = base.df("SSSE")
    assert ssse.df_name is not None
    response = protocol.send(commands.select_application(ssse.df_name), check=False)
    if response.sw not in (SW.OK, SW.FILE_DEACTIVATED):
        return Recognition(None)
    indicator = algorithm_indicator(response.data)
    algorithm = Algorithm.from_indicator(indicator)
    ef05 = base.ef("EF05")
    item = next(r for r in ef05.records if r.field == "spec_version")
    read = protocol.send(commands.read_item(ef05, item.tag, item.length), check=False)
    version = None
    if read.sw == SW.OK:
        try:
            version = item.codec.decode(read.data)
        except errors.SscardError:
            version = None
    if version is None:  # the application is still being personalized (or was torn then)
        return Recognition(None, algorithm)
    for name in card_profiles():
        profile = load_profile(name)
        if (
            algorithm is not None
            and profile.algorithm == algorithm
            and (profile.generation == version[:1])
        ):
            return Recognition(profile, algorithm, version)
    shown = f"{indicator:02X}" if indicator is not None else _("absent (DES)")
    raise UnknownCard(
        _(
            "the card's application has algorithm indicator {indicator} and spec version "
            "{version}; no card profile ({profiles}) fits"
        ).format(
            indicator=shown,
            version=version or _("unreadable"),
            profiles=", ".join(card_profiles()),
        )
    ).with_hint(_("is this a social security card of a generation sscard supports (2.0, 3.0)?"))


def algorithm_indicator(fci: bytes) -> int | None:
    """The xx of ``9F0C 03 86 01 xx`` anywhere in an FCI; None when absent."""
    at = bytes(fci).find(b"\x9f\x0c\x03\x86\x01")
    if at < 0 or at + 6 > len(fci):
        return None
    return fci[at + 5]


class CardInfo(NamedTuple):
    """What ``sscard info`` shows."""

    atr: bytes
    serial: bytes | None  # None: a card blocked for good answers no command (6A81)
    profile: str | None  # None: a blank card, its profile comes with issuance
    lifecycle: str
    pin_tries_left: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "atr": self.atr.hex().upper(),
            "serial": self.serial.hex().upper() if self.serial is not None else None,
            "profile": self.profile,
            "lifecycle": self.lifecycle,
            "pin_tries_left": self.pin_tries_left,
        }


class SocialSecurityCard:
    """One card in one reader. ``security`` is needed for authentication and protected writes.

    The card is recognised from its own data (:func:`recognize`); ``profile`` is the
    profile to issue a blank card with, or a custom profile of the card's generation.
    """

    def __init__(
        self,
        protocol: ApduProtocol,
        profile: Profile | None = None,
        *,
        security: SecurityModule | None = None,
    ) -> None:
        self.protocol = protocol
        self._current_df: str | None = None
        found = recognize(protocol)
        self.recognized: Profile | None = found.profile
        if found.profile is not None:
            self._current_df = "SSSE"
            if profile is not None and (
                profile.algorithm != found.profile.algorithm
                or profile.generation != found.profile.generation
            ):
                raise UnknownCard(
                    _(
                        "the card is a {card_profile} card ({algorithm}, spec version "
                        "{version}); profile {profile} is for another generation"
                    ).format(
                        card_profile=found.profile.name,
                        algorithm=found.algorithm,
                        version=found.spec_version,
                        profile=profile.name,
                    )
                ).with_hint(_("leave out the profile: the card says which profile it follows"))
            self.recognized = profile or found.profile
        self.spec_version = found.spec_version  # EF05 item 03 as the card said it
        self.profile: Profile = self.recognized or profile or load_profile()
        if found.profile is None and found.algorithm not in (None, self.profile.algorithm):
            raise UnknownCard(  # a personalization begun with another profile
                _(
                    "the card's application uses {card_algorithm}; profile {profile} "
                    "uses {algorithm}"
                ).format(
                    card_algorithm=found.algorithm,
                    profile=self.profile.name,
                    algorithm=self.profile.algorithm,
                )
            ).with_hint(_("name the profile the card's personalization began with"))
        self._serial: bytes | None = None
        self._read_open = False  # 3.0 read authentication done in the current SSSE session
        self.security = security
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
        serial = self._serial.hex().upper() if self._serial is not None else "?"
        return f"SocialSecurityCard(serial={serial}, profile={self.profile.name})"

    @property
    def serial(self) -> bytes:
        """The chip serial (GET DATA, docs/card.md): the card's identity in the stores and
        the card level of its key diversification. Read once per session."""
        if self._serial is None:
            data = self.protocol.send(commands.get_chip_serial()).data
            if len(data) != SERIAL_LENGTH:
                raise errors.ProtocolError(
                    _("the card answered a {length}-byte chip serial ({expected} expected)").format(
                        length=len(data), expected=SERIAL_LENGTH
                    )
                )
            self._serial = bytes(data)
        return self._serial

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
        self._read_open = False
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
        serial = self.serial  # before the challenge: any other command uses it up
        self.select(slot.df)
        template = commands.write_key(slot)
        challenge = self.get_challenge()
        data = security.write_key(
            serial, slot, under=under, header=template.header(), challenge=challenge
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

    def sign_card_id(self, data: bytes) -> bytes:
        """The MAC of this chip's card identification code (issuance; docs/card.md).

        ``data`` is the MAC input, region first: the security module works for that
        region's city (or the profile's ``key_city``).
        """
        if self.security is None:
            raise KeysRequired(_("issuing a card needs the card's keys: a key store is needed"))
        module = self.security.for_city(self.profile.key_city or bytes(data[:3]).hex())
        return module.card_id_mac(self.serial, self._slot("SSSE", KeyType.IAK, 1), data)

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
        """One record of EF ``ef_id`` (raw bytes: tag ‖ len ‖ value).

        A 3.0 card that refuses a basic-information record (6982) gets the read
        authentication, then the read again; a card still in personalization
        grants the read without it."""
        ef = self.profile.ef(ef_id)
        self._select_for_records(ef)
        command = commands.read_record(ef, no)
        response = self.protocol.send(command, check=False)
        if response.sw == SW.SECURITY_STATUS_NOT_SATISFIED and not self._read_open:
            item = next((r for r in ef.records if r.no == no), None)
            if item is not None and self._needs_read_auth((item,)):
                self._open_for_reading((item,))
                self._select_for_records(ef)
                response = self.protocol.send(command, check=False)
        if response.sw != SW.OK:
            raise self._error(response.sw, INS.READ_RECORD)
        return response.data

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
        self._open_for_reading(ef.records)
        return {(ef.id, r.no): self.read_record(ef.id, r.no) for r in ef.records}

    def read_item(self, ef_id: str, tag: int, *, missing_ok: bool = False) -> bytes | None:
        """The item ``tag`` of EF ``ef_id`` (tag ‖ len ‖ value), read by record identifier
        as terminals do; authenticates first on a 3.0 card when the item needs it.
        ``missing_ok``: None when the card lacks the record (a 2.0 card's name extension)."""
        item = self.profile.record_by_tag(ef_id, tag)
        ef = self.profile.ef(ef_id)
        self._open_for_reading((item,))
        self._select_for_records(ef)
        response = self.protocol.send(commands.read_item(ef, tag, item.length), check=False)
        if missing_ok and response.sw == SW.RECORD_NOT_FOUND:
            return None
        if response.sw != SW.OK:
            raise self._error(response.sw, INS.READ_RECORD)
        return response.data

    def _open_for_reading(self, items: tuple[RecordItem, ...]) -> None:
        """3.0 cards: the read authentication, once per SSSE session, when an item needs it."""
        if self._read_open or not self._needs_read_auth(items):
            return
        if self.security is None or not self._has_slot("SSSE", KeyType.RK, READ_KEY_ID):
            raise KeysRequired(
                _(
                    "this card (spec version 3) lets its basic information be read only after "
                    "authentication with the read key RKSSSE: a key store is needed"
                )
            ).with_hint(_("give a key store with the city's keys (or a zone store)"))
        self.authenticate_for_reading()

    def _needs_read_auth(self, items: tuple[RecordItem, ...]) -> bool:
        """Whether reading ``items`` (of EF05 / EF06) needs the 3.0 read authentication."""
        return any(
            i.file in ("EF05", "EF06")
            and not any(c.kind == "free" for c in self.profile.record_readers(i))
            for i in items
        )

    def authenticate_for_reading(self) -> None:
        """The 3.0 read authentication (docs/card.md, "3.0 cards"): INTERNAL AUTHENTICATE
        with process factor ‖ random, then EXTERNAL AUTHENTICATE with RKSSSE under a
        session key from a second process factor."""
        security = self._security()
        iak = self._slot("SSSE", KeyType.IAK, 1)
        rk = self._slot("SSSE", KeyType.RK, READ_KEY_ID)
        serial = self.serial  # before the challenges: any other command uses them up
        self.select("SSSE")
        random = self.get_challenge()
        factor = self.get_challenge()
        response = self.protocol.send(commands.internal_authenticate(iak.id, factor + random))
        if not security.verify_internal_auth(
            serial, iak, random, response.data, process_factor=factor
        ):
            raise CardNotGenuine(
                _(
                    "INTERNAL AUTHENTICATE failed: the card does not hold the key it should; "
                    "it may be counterfeit or personalized with other keys"
                )
            )
        factor = self.get_challenge()
        challenge = self.get_challenge()
        cryptogram = security.external_auth(serial, rk, challenge, process_factor=factor)
        self.protocol.send(commands.external_authenticate(rk.id, cryptogram))
        self._read_open = True

    def read_basic_info(self, *, terminal_number: str = "", terminal_device: str = "") -> BasicInfo:
        """The national basic-information read (``iReadCardBas``; docs/card.md): EF05 items
        01, 03, 05, 06, 07 and EF06 08, 09, 4E by record identifier, authenticating first
        on a 3.0 card; the card identification code is checked (:meth:`card_id`)."""
        from sscard.basic_info import BasicInfo

        self._require_issued_application()

        def value(ef: str, tag: int) -> Any:
            raw = self.read_item(ef, tag, missing_ok=tag == NAME_EXTENSION_TAG)
            if raw is None:
                return None
            return self.profile.record_by_tag(ef, tag).codec.decode(raw)

        card_id = self.card_id(self.read_item("EF05", 0x01))
        number = value("EF05", 0x07)
        version = self.spec_version or value("EF05", 0x03)  # recognition read it already
        issued, expires = value("EF05", 0x05), value("EF05", 0x06)
        ssn, name, extension = value("EF06", 0x08), value("EF06", 0x09), value("EF06", 0x4E)
        return BasicInfo(
            region=card_id.region,
            ssn=ssn or "",
            card_number=number or "",
            card_id=card_id.hex,
            name=(name or "") + (extension or ""),
            atr=bytes(self.protocol.transport.atr).hex().upper(),
            spec_version=version or "",
            issue_date=issued.strftime("%Y%m%d") if issued else "",
            expiry_date=expires.strftime("%Y%m%d") if expires else "",
            terminal_number=terminal_number
            or (self.security.terminal_number if self.security else ""),
            terminal_device=terminal_device,
        )

    def _require_issued_application(self) -> None:
        """Refuse a card with no social security application (blank) before reading it."""
        if self.recognized is None:
            life = self.lifecycle()
            raise CardNotIssued(
                _(
                    "the card has no readable social security application (lifecycle {lifecycle})"
                ).format(lifecycle=life)
            ).with_hint(_("a blank card must be issued first; a blocked one cannot be read"))

    def card_id(self, raw: bytes | None = None) -> CardId:
        """The card identification code (EF05 item 01), checked: well formed always, and
        its MAC when a security module is present
        (:class:`~sscard.errors.BadCardIdentificationCode`, national −20)."""
        item = self.profile.record_by_tag("EF05", 0x01)
        data = raw if raw is not None else self.read_item("EF05", 0x01)
        try:
            value = item.codec.decode(bytes(data or b""))
        except errors.SscardError:
            value = None
        if not isinstance(value, CardId):
            shown = bytes(data or b"").hex().upper()
            if shown:
                text = _(
                    "{code} is malformed: it must be region (BCD) ‖ D156000005 ‖ "
                    "card sequence ‖ MAC"
                ).format(code=shown)
            else:
                text = _(
                    "nothing is malformed: it must be region (BCD) ‖ D156000005 ‖ "
                    "card sequence ‖ MAC"
                )
            raise errors.BadCardIdentificationCode(text)
        if not self._city_known:  # spare read_city() its own read of the same record
            self._city, self._city_known = self.profile.key_city or value.region, True
        if self.security is not None:
            serial = self.serial
            module = self.security.for_city(self.profile.key_city or value.region)
            slot = self._slot("SSSE", KeyType.IAK, 1)
            if value.sequence != CardId.sequence_of(serial) or not module.verify_card_id_mac(
                serial, slot, value.mac_input(serial), value.mac
            ):
                raise errors.BadCardIdentificationCode(
                    _(
                        "{code} does not verify: it was not made for this chip with this "
                        "city's keys (a forged or copied code)"
                    ).format(code=value.hex)
                )
        return value

    def read_holder(self) -> dict[str, Any]:
        """EF05 and EF06 decoded with the issuance field names (dates ISO).

        The card identification code (a free read) is checked first, as terminals
        do (:meth:`card_id`): a malformed or forged one stops the read (national −20).
        """
        life = self.lifecycle()
        if life in (Lifecycle.BLANK, Lifecycle.PERSONALIZATION):
            raise CardNotIssued(
                _("the card {serial} is not issued yet (lifecycle {lifecycle})").format(
                    serial=self.serial.hex().upper(), lifecycle=life
                )
            ).with_hint(_("issue it first"))
        item = self.profile.record_by_tag("EF05", 0x01)
        raw = self.read_record("EF05", item.no)
        self.card_id(raw)
        records: dict[tuple[str, int], bytes] = {("EF05", item.no): raw}
        for ef_id in ("EF05", "EF06"):
            rest = tuple(r for r in self.profile.ef(ef_id).records if (ef_id, r.no) not in records)
            self._open_for_reading(rest)
            records.update({(ef_id, r.no): self.read_record(ef_id, r.no) for r in rest})
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
            raise KeysRequired(_("this operation needs the card's keys: a key store is needed"))
        return self.security.for_city(self.read_city())

    def _has_slot(self, df: str, type: KeyType, id: int) -> bool:
        try:
            self.profile.key_scheme.find(df, type, id)
        except KeyError:
            return False
        return True

    def _slot(self, df: str, type: KeyType | str, id: int) -> KeySlot:
        try:
            return self.profile.key_scheme.find(df, type, id)
        except KeyError:
            raise errors.InvalidInput(
                _("profile {profile} has no key {df}/{type}/{id:02X}").format(
                    profile=self.profile.name, df=df, type=type, id=id
                )
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
        serial = self.serial  # before the challenge: any other command uses it up
        self.select(df)
        challenge = self.get_challenge()
        cryptogram = security.external_auth(serial, slot, challenge)
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
                _("the blank card was keyed from another transport root than the key store's")
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
                _(
                    "INTERNAL AUTHENTICATE failed: the card does not hold the key it should; "
                    "it may be counterfeit or personalized with other keys"
                )
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
                _("the card did not report its lifecycle (SW {sw:04X})").format(sw=response.sw)
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
        if self.recognized is None:
            self._refuse_a_psam()
        life = self.lifecycle()
        tries = None
        if life in (Lifecycle.ISSUED, Lifecycle.APP_BLOCKED_TEMPORARY):
            tries = self.pin_tries_left()
        name = self.recognized.name if self.recognized is not None else None
        serial = None if life == Lifecycle.CARD_BLOCKED else self.serial
        return CardInfo(self.protocol.transport.atr, serial, name, life, tries)

    def _refuse_a_psam(self) -> None:
        """A PSAM in the card's reader would pass for a blank card: it answers READ BINARY
        of its EF 0015 (serial ‖ version ‖ algorithms), which no social security card has."""
        probe = CommandApdu(CLA.ISO, INS.READ_BINARY, 0x95, 0x00, le=14)
        response = self.protocol.send(probe, check=False)
        if response.sw == SW.OK and len(response.data) == 14:
            raise UnknownCard(
                _(
                    "the card in the reader is a PSAM (serial {serial}), not a social security card"
                ).format(serial=response.data[:8].hex().upper())
            ).with_hint(_("a PSAM is shown with 'psam info'; put the cardholder's card in"))

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
        raise errors.InvalidInput(
            _("invalid PIN"),
            [("pin", _("must be exactly {length} digits").format(length=length))],
        )
    if length % 2:
        raise errors.InvalidInput(_("invalid PIN"), [("pin", _("packed BCD needs an even length"))])
    return bytes.fromhex(pin)
