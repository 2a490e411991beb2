"""Status words: meanings (ISO 7816-4 section 5.6, plus shared/spec/card.md) and tries left."""

from __future__ import annotations

SW_OK = 0x9000

# Exact status words. Sources: ISO/IEC 7816-4:2020 table 6 (interindustry
# status bytes) and the card spec's "Status words (beyond ISO 7816-4)".
_EXACT: dict[int, str] = {
    0x9000: "success",
    0x6200: "warning: state of non-volatile memory unchanged",
    0x6281: "warning: part of returned data may be corrupted",
    0x6282: "warning: end of file or record reached before reading Le bytes",
    0x6283: "warning: selected file deactivated",
    0x6284: "warning: file control information not formatted correctly",
    0x6300: "warning: state of non-volatile memory changed (authentication failed)",
    0x6381: "warning: file filled up by the last write",
    0x6400: "error: state of non-volatile memory unchanged",
    0x6500: "error: state of non-volatile memory changed",
    0x6581: "memory failure",
    0x6700: "wrong length (Lc or Le)",
    0x6800: "functions in CLA not supported",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6900: "command not allowed",
    0x6981: "command incompatible with file structure",
    0x6982: "security status not satisfied",
    0x6983: "PIN or key blocked",
    0x6984: "challenge not usable (none, or already used)",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6987: "expected secure messaging data objects missing",
    0x6988: "secure messaging data object incorrect (bad MAC)",
    0x6A80: "incorrect parameters in the data field",
    0x6A81: "function not supported or card blocked",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A84: "not enough memory space in the file",
    0x6A86: "incorrect parameters P1-P2",
    0x6A88: "referenced data or key not found",
    0x6A89: "file already exists",
    0x6B00: "wrong parameters P1-P2 (offset outside the EF)",
    0x6D00: "instruction code not supported or invalid",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
    0x9303: "application permanently blocked",
}


def tries_left(sw: int) -> int | None:
    """Tries left encoded in a ``63Cx`` status word (x is a hex nibble: 63CA is 10)."""
    if sw & 0xFFF0 == 0x63C0:
        return sw & 0x0F
    return None


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
    if sw1 == 0x61:
        return f"{sw2 or 256} more response bytes available (GET RESPONSE)"
    if sw1 == 0x6C:
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
