"""Status words: meanings (ISO 7816-4 section 5.6, plus docs/card.md) and tries left.

The status words themselves are :class:`sscard.vocab.SW`; this module says what
any word means.
"""

from __future__ import annotations

from sscard.i18n import N_, _
from sscard.vocab import MORE_DATA_SW1, SW, WRONG_LE_SW1, tries_left

__all__ = ["SW_OK", "describe", "tries_left"]

SW_OK = SW.OK

# Exact status words. Sources: ISO/IEC 7816-4:2020 table 6 (interindustry
# status bytes) and the card spec's "Status words (beyond ISO 7816-4)".
_EXACT: dict[int, str] = {
    SW.OK: N_("success"),
    0x6200: N_("warning: state of non-volatile memory unchanged"),
    0x6281: N_("warning: part of returned data may be corrupted"),
    SW.END_OF_FILE: N_("warning: end of file or record reached before reading Le bytes"),
    SW.FILE_DEACTIVATED: N_("warning: selected file deactivated"),
    0x6284: N_("warning: file control information not formatted correctly"),
    0x6300: N_("warning: state of non-volatile memory changed (authentication failed)"),
    0x6381: N_("warning: file filled up by the last write"),
    0x6400: N_("error: state of non-volatile memory unchanged"),
    0x6500: N_("error: state of non-volatile memory changed"),
    0x6581: N_("memory failure"),
    SW.WRONG_LENGTH: N_("wrong length (Lc or Le)"),
    0x6800: N_("functions in CLA not supported"),
    0x6881: N_("logical channel not supported"),
    0x6882: N_("secure messaging not supported"),
    0x6900: N_("command not allowed"),
    SW.INCOMPATIBLE_FILE: N_("command incompatible with file structure"),
    SW.SECURITY_STATUS_NOT_SATISFIED: N_("security status not satisfied"),
    SW.AUTH_METHOD_BLOCKED: N_("PIN or key blocked"),
    SW.CHALLENGE_UNUSABLE: N_("challenge not usable (none, or already used)"),
    SW.CONDITIONS_NOT_SATISFIED: N_("conditions of use not satisfied"),
    SW.NO_CURRENT_EF: N_("command not allowed (no current EF)"),
    SW.SM_DATA_MISSING: N_("expected secure messaging data objects missing"),
    SW.BAD_MAC: N_("secure messaging data object incorrect (bad MAC)"),
    SW.WRONG_DATA: N_("incorrect parameters in the data field"),
    SW.FUNC_NOT_SUPPORTED: N_("function not supported or card blocked"),
    SW.FILE_NOT_FOUND: N_("file or application not found"),
    SW.RECORD_NOT_FOUND: N_("record not found"),
    0x6A84: N_("not enough memory space in the file"),
    SW.INCORRECT_P1P2: N_("incorrect parameters P1-P2"),
    SW.REFERENCE_NOT_FOUND: N_("referenced data or key not found"),
    SW.FILE_EXISTS: N_("file already exists"),
    SW.WRONG_OFFSET: N_("wrong parameters P1-P2 (offset outside the EF)"),
    SW.INS_NOT_SUPPORTED: N_("instruction code not supported or invalid"),
    SW.CLA_NOT_SUPPORTED: N_("class not supported"),
    SW.NO_PRECISE_DIAGNOSIS: N_("no precise diagnosis"),
    SW.APPLICATION_BLOCKED: N_("application permanently blocked"),
}

# Status words by their first byte, when the exact word is not in _EXACT.
_BY_SW1: dict[int, str] = {
    0x63: N_("warning: state of non-volatile memory changed"),
    0x62: N_("warning: state of non-volatile memory unchanged"),
    0x64: N_("execution error: state of non-volatile memory unchanged"),
    0x65: N_("execution error: state of non-volatile memory changed"),
    0x67: N_("wrong length"),
    0x68: N_("functions in CLA not supported"),
    0x69: N_("command not allowed"),
    0x6A: N_("wrong parameters"),
}
_UNKNOWN = N_("unknown status word")


def describe(sw: int) -> str:
    """A human meaning of ``sw`` in the active language (unknown words say so)."""
    if not 0 <= sw <= 0xFFFF:
        raise ValueError(f"status word must be 0000..FFFF, got {sw!r}")
    if sw in _EXACT:
        return _(_EXACT[sw])
    sw1, sw2 = sw >> 8, sw & 0xFF
    n = tries_left(sw)
    if n is not None:
        return _("wrong PIN or cryptogram, {tries} tries left").format(tries=n)
    if sw1 == MORE_DATA_SW1:
        return _("{count} more response bytes available (GET RESPONSE)").format(count=sw2 or 256)
    if sw1 == WRONG_LE_SW1:
        return _("wrong Le: exactly {count} bytes available").format(count=sw2 or 256)
    return _(_BY_SW1.get(sw1, _UNKNOWN))
