"""Status words: meanings (ISO 7816-4 section 5.6, plus docs/card.md) and tries left.

The status words themselves are :class:`sscard.vocab.SW`; this module says what
any word means.
"""

from __future__ import annotations

from sscard.vocab import MORE_DATA_SW1, SW, WRONG_LE_SW1, tries_left

__all__ = ["SW_OK", "describe", "tries_left"]

SW_OK = SW.OK

# Exact status words. Sources: ISO/IEC 7816-4:2020 table 6 (interindustry
# status bytes) and the card spec's "Status words (beyond ISO 7816-4)".
_EXACT: dict[int, str] = {
    SW.OK: "success",
    0x6200: "warning: state of non-volatile memory unchanged",
    0x6281: "warning: part of returned data may be corrupted",
    SW.END_OF_FILE: "warning: end of file or record reached before reading Le bytes",
    SW.FILE_DEACTIVATED: "warning: selected file deactivated",
    0x6284: "warning: file control information not formatted correctly",
    0x6300: "warning: state of non-volatile memory changed (authentication failed)",
    0x6381: "warning: file filled up by the last write",
    0x6400: "error: state of non-volatile memory unchanged",
    0x6500: "error: state of non-volatile memory changed",
    0x6581: "memory failure",
    SW.WRONG_LENGTH: "wrong length (Lc or Le)",
    0x6800: "functions in CLA not supported",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6900: "command not allowed",
    SW.INCOMPATIBLE_FILE: "command incompatible with file structure",
    SW.SECURITY_STATUS_NOT_SATISFIED: "security status not satisfied",
    SW.AUTH_METHOD_BLOCKED: "PIN or key blocked",
    SW.CHALLENGE_UNUSABLE: "challenge not usable (none, or already used)",
    SW.CONDITIONS_NOT_SATISFIED: "conditions of use not satisfied",
    SW.NO_CURRENT_EF: "command not allowed (no current EF)",
    SW.SM_DATA_MISSING: "expected secure messaging data objects missing",
    SW.BAD_MAC: "secure messaging data object incorrect (bad MAC)",
    SW.WRONG_DATA: "incorrect parameters in the data field",
    SW.FUNC_NOT_SUPPORTED: "function not supported or card blocked",
    SW.FILE_NOT_FOUND: "file or application not found",
    SW.RECORD_NOT_FOUND: "record not found",
    0x6A84: "not enough memory space in the file",
    SW.INCORRECT_P1P2: "incorrect parameters P1-P2",
    SW.REFERENCE_NOT_FOUND: "referenced data or key not found",
    SW.FILE_EXISTS: "file already exists",
    SW.WRONG_OFFSET: "wrong parameters P1-P2 (offset outside the EF)",
    SW.INS_NOT_SUPPORTED: "instruction code not supported or invalid",
    SW.CLA_NOT_SUPPORTED: "class not supported",
    SW.NO_PRECISE_DIAGNOSIS: "no precise diagnosis",
    SW.APPLICATION_BLOCKED: "application permanently blocked",
}


def describe(sw: int) -> str:
    """A human meaning of ``sw`` (never raises; unknown words say so)."""
    if not 0 <= sw <= 0xFFFF:
        raise ValueError(f"status word must be 0000..FFFF, got {sw!r}")
    if sw in _EXACT:
        return _EXACT[sw]
    sw1, sw2 = sw >> 8, sw & 0xFF
    n = tries_left(sw)
    if n is not None:
        return f"wrong PIN or cryptogram, {n} tries left"
    if sw1 == MORE_DATA_SW1:
        return f"{sw2 or 256} more response bytes available (GET RESPONSE)"
    if sw1 == WRONG_LE_SW1:
        return f"wrong Le: exactly {sw2 or 256} bytes available"
    if sw1 == 0x63:
        return "warning: state of non-volatile memory changed"
    if sw1 == 0x62:
        return "warning: state of non-volatile memory unchanged"
    if sw1 == 0x64:
        return "execution error: state of non-volatile memory unchanged"
    if sw1 == 0x65:
        return "execution error: state of non-volatile memory changed"
    if sw1 == 0x67:
        return "wrong length"
    if sw1 == 0x68:
        return "functions in CLA not supported"
    if sw1 == 0x69:
        return "command not allowed"
    if sw1 == 0x6A:
        return "wrong parameters"
    return "unknown status word"
