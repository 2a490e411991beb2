"""Line protection as a step of the transmit pipeline (docs/keys.md, "Algorithms").

:class:`LineProtection` takes a plain command (``00``/``80`` class), asks the
card for a challenge, and sends it with the secure-messaging class bit set
(``04``/``84``) and ``data' ‖ MAC`` as data: the MAC covers CLA INS P1 P2 Lc'
data' with the challenge as IV; with ``encipher`` the data is first enciphered
(``len ‖ data ‖ 80 …``, PIN RELOAD). The MAC and the encipherment come from
the :class:`~sscard.keys.security_module.SecurityModule`, for this card's
serial and key slot: the step never sees a key. A status word other than 9000
raises the typed error of the command as it was sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sscard.apdu import CommandApdu, ResponseApdu
from sscard.keys.scheme import KeySlot
from sscard.protocol import Send, error_for
from sscard.vocab import CLA, INS, SM_CLASS_BIT, SW

if TYPE_CHECKING:
    from sscard.keys.security_module import SecurityModule

__all__ = ["GET_CHALLENGE", "SM_CLASS_BIT", "LineProtection"]

GET_CHALLENGE = CommandApdu(CLA.ISO, INS.GET_CHALLENGE, 0x00, 0x00, le=8)


class LineProtection:
    """A pipeline step: MAC (and optionally encipher) the command with one card key."""

    def __init__(
        self, security: SecurityModule, serial: bytes, slot: KeySlot, *, encipher: bool = False
    ) -> None:
        self.security = security
        self.serial = bytes(serial)
        self.slot = slot
        self.encipher = encipher

    def __repr__(self) -> str:
        return f"LineProtection({self.slot.ref}, encipher={self.encipher})"

    def __call__(self, command: CommandApdu, send: Send) -> ResponseApdu:
        answer = send(GET_CHALLENGE)
        if answer.sw != SW.OK:
            raise error_for(GET_CHALLENGE, answer.sw)
        cla = command.cla | SM_CLASS_BIT
        header = bytes((cla, command.ins, command.p1, command.p2))
        data = self.security.protect(
            self.serial,
            self.slot,
            header,
            command.data,
            challenge=answer.data,
            encipher=self.encipher,
        )
        wrapped = CommandApdu(cla, command.ins, command.p1, command.p2, data, command.le)
        response = send(wrapped)
        if response.sw != SW.OK:
            # Typed for the command as sent: 6983 on 84 5E is the reload key, not the PIN.
            raise error_for(wrapped, response.sw)
        return response
