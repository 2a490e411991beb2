"""PSAM issuance at the issuing centre (docs/keys.md, "PSAM").

A blank PSAM arrives from its vendor keyed with a transport key (PTK): the
centre's transport root diversified by the PSAM serial, like a blank card's TK.
The centre opens the PSAM's issuance session with EXTERNAL AUTHENTICATE under
the PTK, loads the city-level keys a service point of one kind needs (each
enciphered and MACed under the PTK: no key crosses the wire in clear), writes
the terminal number and ends the issuance.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sscard import errors
from sscard.apdu import CommandApdu
from sscard.i18n import _
from sscard.keys.psam_module import Psam
from sscard.keys.psam_scheme import kind_refs, psam_key_record, type_code
from sscard.keys.scheme import KeySlot
from sscard.keys.security_module import SecurityModule
from sscard.layout.model import Profile
from sscard.protocol import ApduProtocol
from sscard.transport.base import Transport
from sscard.vocab import CLA, INS, KeyType

TERMINAL_FID = bytes.fromhex("0016")
TERMINAL_DIGITS = 12


@dataclass(frozen=True)
class LoadedKey:
    """One key loaded into the PSAM: reference, version, KCV (never the value)."""

    ref: str
    version: int
    kcv: bytes

    def to_json(self) -> dict[str, object]:
        return {"ref": self.ref, "version": self.version, "kcv": self.kcv.hex().upper()}


@dataclass(frozen=True)
class PsamIssued:
    """What ``sscard psam issue`` did."""

    serial: bytes
    terminal_number: str
    kind: str
    city: str
    keys: tuple[LoadedKey, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "psam_serial": self.serial.hex().upper(),
            "terminal_number": self.terminal_number,
            "kind": self.kind,
            "city": self.city,
            "keys": [k.to_json() for k in self.keys],
        }


def check_terminal_number(terminal: str, city: str) -> str:
    """12 digits, the first 6 the PSAM's city [ours]; a clear error otherwise."""
    if len(terminal) != TERMINAL_DIGITS or not terminal.isascii() or not terminal.isdigit():
        raise errors.InvalidInput(
            _("invalid terminal number"),
            [("terminal", _("must be {digits} digits").format(digits=TERMINAL_DIGITS))],
        )
    if not terminal.startswith(city):
        raise errors.InvalidInput(
            _("invalid terminal number"),
            [
                (
                    "terminal",
                    _("must start with the PSAM's city {city} (docs/keys.md, 'PSAM')").format(
                        city=city
                    ),
                )
            ],
        )
    return terminal


def issue_psam(
    transport: Transport,
    security: SecurityModule,
    profile: Profile,
    *,
    kind: str,
    city: str,
    terminal: str,
) -> PsamIssued:
    """Issue the blank PSAM in ``transport`` for a service point of ``kind`` in ``city``."""
    refs = [r for r in kind_refs(kind) if _in_profile(profile, r)]
    check_terminal_number(terminal, city)
    module = security.for_city(city)
    tk = profile.key_scheme.find("MF", KeyType.TK, 0)
    psam, serial = _issuance_session(transport, module, tk)
    loaded = []
    for ref in refs:
        code = type_code(ref)
        header = bytes((CLA.PROPRIETARY_SM, INS.WRITE_KEY, 0x01, code))
        challenge = psam.send(CommandApdu(CLA.ISO, INS.GET_CHALLENGE, 0, 0, le=8)).data
        data = module.psam_key(serial, ref, under=tk, header=header, challenge=challenge)
        psam.send(CommandApdu(CLA.PROPRIETARY_SM, INS.WRITE_KEY, 0x01, code, data.data))
        loaded.append(LoadedKey(ref, module.key_info(ref)["version"], data.kcv))
    psam.send(CommandApdu(CLA.ISO, INS.SELECT, 0x00, 0x00, TERMINAL_FID))
    psam.send(CommandApdu(CLA.ISO, INS.UPDATE_BINARY, 0x00, 0x00, bytes.fromhex(terminal)))
    psam.send(CommandApdu(CLA.PROPRIETARY, INS.END_PERSONALIZATION, 0x00, 0x00))
    return PsamIssued(bytes(serial), terminal, kind, city, tuple(loaded))


def withdraw_psam(transport: Transport, security: SecurityModule, profile: Profile) -> PsamIssued:
    """Withdraw the PSAM in ``transport`` from service: every key it holds is deleted
    (WRITE KEY with error limit 00 [ours], under its transport key); the terminal
    number stays, so the audit trail still names the PSAM."""
    tk = profile.key_scheme.find("MF", KeyType.TK, 0)
    held = Psam(transport)  # its key directory and terminal number, as 'psam info' reads them
    psam, serial = _issuance_session(transport, security, tk)
    removed = []
    for key in held.keys:
        header = bytes((CLA.PROPRIETARY_SM, INS.WRITE_KEY, 0x01, key.type_code))
        challenge = psam.send(CommandApdu(CLA.ISO, INS.GET_CHALLENGE, 0, 0, le=8)).data
        record = psam_key_record(key.type_code, key.version, key.algorithm, 0, os.urandom(16))
        data = security.protect(serial, tk, header, record, challenge=challenge, encipher=True)
        psam.send(CommandApdu(CLA.PROPRIETARY_SM, INS.WRITE_KEY, 0x01, key.type_code, data))
        removed.append(LoadedKey(key.ref, key.version, key.kcv))
    psam.send(CommandApdu(CLA.PROPRIETARY, INS.END_PERSONALIZATION, 0x00, 0x00))
    return PsamIssued(serial, held.terminal_number, "withdrawn", "", tuple(removed))


def _issuance_session(
    transport: Transport, module: SecurityModule, tk: KeySlot
) -> tuple[ApduProtocol, bytes]:
    """Open the PSAM's issuance session: EXTERNAL AUTHENTICATE under its transport key."""
    if not transport.connected:
        transport.connect()
    psam = ApduProtocol(transport)
    serial = psam.send(CommandApdu(CLA.PROPRIETARY, INS.GET_DATA, 0x00, 0x02, le=8)).data
    challenge = psam.send(CommandApdu(CLA.ISO, INS.GET_CHALLENGE, 0, 0, le=8)).data
    cryptogram = module.external_auth(serial, tk, challenge)
    psam.send(CommandApdu(CLA.ISO, INS.EXTERNAL_AUTHENTICATE, 0x00, 0x00, cryptogram))
    return psam, bytes(serial)


def _in_profile(profile: Profile, ref: str) -> bool:
    df, type_, key_id = ref.split("/")
    try:
        profile.key_scheme.find(df, type_, int(key_id, 16))
    except KeyError:
        return False
    return True
