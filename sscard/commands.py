"""The card's commands as :class:`~sscard.apdu.CommandApdu` values, built from the profile.

One place says which bytes each command of the social security card is: the
card session (:mod:`sscard.card`) sends these, and the personalization plan
(:mod:`sscard.issuance.plan`) carries them in its steps, so ``--dry-run``
shows what is sent.

Commands whose data the security module computes at run time (a cryptogram
over the card's challenge, a key record enciphered under the card's keys) are
built as *templates*: header and Le as sent, no data. :func:`wire_template`
gives the line-protected form of a command as it goes on the wire (SM class
bit set, data to be computed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sscard.apdu import CommandApdu
from sscard.vocab import CLA, INS, SM_CLASS_BIT

if TYPE_CHECKING:
    from sscard.keys.scheme import KeySlot
    from sscard.layout.model import FileSpec

MF_FID = b"\x3f\x00"
_NO_FCI = 0x0C  # SELECT P2: no response data
_LIFECYCLE_TAG = 0x01  # GET DATA 80 CA 00 01 [ours]
_CHIP_SERIAL_TAG = 0x02  # GET DATA 80 CA 00 02 [ours]


def select_mf() -> CommandApdu:
    """SELECT the MF by its FID."""
    return CommandApdu(CLA.ISO, INS.SELECT, 0x00, _NO_FCI, MF_FID)


def select_child_df(fid: bytes) -> CommandApdu:
    """SELECT a DF under the current DF by FID."""
    return CommandApdu(CLA.ISO, INS.SELECT, 0x01, _NO_FCI, fid)


def select_ef(fid: bytes) -> CommandApdu:
    """SELECT an EF under the current DF by FID."""
    return CommandApdu(CLA.ISO, INS.SELECT, 0x02, _NO_FCI, fid)


def select_by_name(df_name: bytes) -> CommandApdu:
    """SELECT a DF by its name."""
    return CommandApdu(CLA.ISO, INS.SELECT, 0x04, _NO_FCI, df_name)


def select_application(df_name: bytes) -> CommandApdu:
    """SELECT a DF by name and ask for its FCI (recognition reads the algorithm indicator)."""
    return CommandApdu(CLA.ISO, INS.SELECT, 0x04, 0x00, df_name, le=256)


def create_file(spec: FileSpec) -> CommandApdu:
    """CREATE FILE under the current DF, with the FCP of ``spec``."""
    from sscard.layout.fcp import build_fcp  # issuance only: a read creates no file

    return CommandApdu(CLA.PROPRIETARY, INS.CREATE_FILE, 0x00, 0x00, build_fcp(spec))


def record_p2(ef: FileSpec) -> int:
    """P2 of READ / UPDATE RECORD: by SFI when the EF has one, else the current EF."""
    return (ef.sfi << 3) | 0x04 if ef.sfi is not None else 0x04


def read_record(ef: FileSpec, no: int) -> CommandApdu:
    """READ RECORD ``no`` of ``ef``."""
    return CommandApdu(CLA.ISO, INS.READ_RECORD, no, record_p2(ef), le=256)


def read_item(ef: FileSpec, tag: int, length: int) -> CommandApdu:
    """READ RECORD by record identifier, as terminals read EF05 / EF06 (docs/card.md):
    P1 = the item's tag, P2 = SFI << 3 (or 00: the current EF), Le = tag ‖ len ‖ value."""
    p2 = ef.sfi << 3 if ef.sfi is not None else 0x00
    return CommandApdu(CLA.ISO, INS.READ_RECORD, tag, p2, le=length + 2)


def update_record(ef: FileSpec, no: int, data: bytes) -> CommandApdu:
    """UPDATE RECORD ``no`` of ``ef`` (plain; line protection sets the SM bit)."""
    return CommandApdu(CLA.ISO, INS.UPDATE_RECORD, no, record_p2(ef), bytes(data))


def get_challenge() -> CommandApdu:
    """GET CHALLENGE: 8 bytes."""
    return CommandApdu(CLA.ISO, INS.GET_CHALLENGE, 0x00, 0x00, le=8)


def external_authenticate(key_id: int, cryptogram: bytes = b"") -> CommandApdu:
    """EXTERNAL AUTHENTICATE with key ``key_id`` (0: TK or MK); a template without data."""
    return CommandApdu(CLA.ISO, INS.EXTERNAL_AUTHENTICATE, 0x00, key_id, cryptogram)


def internal_authenticate(key_id: int, challenge: bytes = b"") -> CommandApdu:
    """INTERNAL AUTHENTICATE with the IAK ``key_id``; a template without the challenge."""
    return CommandApdu(CLA.ISO, INS.INTERNAL_AUTHENTICATE, 0x00, key_id, challenge, le=256)


def write_key(slot: KeySlot, protected_record: bytes = b"") -> CommandApdu:
    """WRITE KEY ``slot``, enciphered and MACed; a template without the record."""
    return CommandApdu(CLA.PROPRIETARY_SM, INS.WRITE_KEY, 0x01, slot.id, protected_record)


def verify(pin_block: bytes = b"") -> CommandApdu:
    """VERIFY the PIN; without data it asks for the tries left."""
    return CommandApdu(CLA.ISO, INS.VERIFY, 0x00, 0x00, pin_block)


def change_pin(old_block: bytes, new_block: bytes) -> CommandApdu:
    """CHANGE PIN: old ‖ FF ‖ new."""
    return CommandApdu(CLA.PROPRIETARY, INS.CHANGE_PIN, 0x01, 0x00, old_block + b"\xff" + new_block)


def pin_reload(pin_block: bytes = b"") -> CommandApdu:
    """PIN RELOAD before line protection (which enciphers the block and adds the MAC)."""
    return CommandApdu(CLA.PROPRIETARY, INS.PIN_RELOAD, 0x00, 0x00, pin_block)


def pin_unblock() -> CommandApdu:
    """PIN UNBLOCK before line protection."""
    return CommandApdu(CLA.PROPRIETARY, INS.PIN_UNBLOCK, 0x00, 0x00)


def application_block(*, permanent: bool = False) -> CommandApdu:
    """APPLICATION BLOCK before line protection (P2 01: permanent)."""
    return CommandApdu(CLA.PROPRIETARY, INS.APPLICATION_BLOCK, 0x00, int(permanent))


def application_unblock() -> CommandApdu:
    """APPLICATION UNBLOCK before line protection."""
    return CommandApdu(CLA.PROPRIETARY, INS.APPLICATION_UNBLOCK, 0x00, 0x00)


def card_block() -> CommandApdu:
    """CARD BLOCK before line protection."""
    return CommandApdu(CLA.PROPRIETARY, INS.CARD_BLOCK, 0x00, 0x00)


def end_personalization() -> CommandApdu:
    """END PERSONALIZATION: PERSONALIZATION → ISSUED."""
    return CommandApdu(CLA.PROPRIETARY, INS.END_PERSONALIZATION, 0x00, 0x00)


def get_lifecycle() -> CommandApdu:
    """GET DATA of the lifecycle byte [ours]."""
    return CommandApdu(CLA.PROPRIETARY, INS.GET_DATA, 0x00, _LIFECYCLE_TAG, le=1)


def get_chip_serial() -> CommandApdu:
    """GET DATA of the 8-byte chip serial, the card level of key diversification [ours]."""
    return CommandApdu(CLA.PROPRIETARY, INS.GET_DATA, 0x00, _CHIP_SERIAL_TAG, le=8)


def wire_template(command: CommandApdu) -> CommandApdu:
    """``command`` as line protection sends it: SM class bit set, data left to compute."""
    return CommandApdu(
        command.cla | SM_CLASS_BIT, command.ins, command.p1, command.p2, le=command.le
    )
