"""The one transmit pipeline (docs/architecture.md, "Transmit pipeline").

``CommandApdu → [secure messaging] → encode → transport → [61xx GET RESPONSE /
6Cxx resend] → ResponseApdu → typed error on SW ≠ 9000 unless raw SW asked for``.

Each step is a small callable ``step(command, send) -> ResponseApdu`` that may
change the command, call ``send`` (the rest of the pipeline) zero or more times,
and change the response, in the manner of yubikit's APDU processors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol as TypingProtocol

from sscard import errors
from sscard.apdu import (
    REDACTED,
    CommandApdu,
    ResponseApdu,
    _new_object,
    _set_data,
    _set_sw,
    command_name,
)
from sscard.i18n import _
from sscard.log import TRACE
from sscard.transport.base import Transport
from sscard.vocab import INS, MORE_DATA_SW1, SM_CLASS_BIT, SW, WRONG_LE_SW1, tries_left

log = logging.getLogger("sscard.apdu")

Send = Callable[[CommandApdu], ResponseApdu]

# T=0 GET RESPONSE loops stop here: a card that keeps answering 61xx is broken.
MAX_GET_RESPONSE = 256


class Step(TypingProtocol):
    """One composable step of the transmit pipeline."""

    def __call__(self, command: CommandApdu, send: Send) -> ResponseApdu: ...


class SecureMessaging(TypingProtocol):
    """What a secure-messaging scheme provides (sscard.sm implements it)."""

    def wrap(self, command: CommandApdu) -> CommandApdu: ...

    def unwrap(self, command: CommandApdu, response: ResponseApdu) -> ResponseApdu: ...


class SecureMessagingStep:
    """Wraps commands and unwraps responses with a :class:`SecureMessaging` scheme."""

    def __init__(self, scheme: SecureMessaging) -> None:
        self.scheme = scheme

    def __call__(self, command: CommandApdu, send: Send) -> ResponseApdu:
        wrapped = self.scheme.wrap(command)
        return self.scheme.unwrap(wrapped, send(wrapped))


def t0_step(command: CommandApdu, send: Send) -> ResponseApdu:
    """T=0 response handling: 6Cxx → resend with Le = xx; 61xx → GET RESPONSE, concatenate."""
    return _t0_follow_up(command, send(command), send)


def _t0_follow_up(command: CommandApdu, response: ResponseApdu, send: Send) -> ResponseApdu:
    """The rest of :func:`t0_step` once the card answered ``command`` with ``response``."""
    if response.sw1 == WRONG_LE_SW1:
        exact = response.sw2 or 256
        response = send(
            CommandApdu(command.cla, command.ins, command.p1, command.p2, command.data, exact)
        )
    if response.sw1 != MORE_DATA_SW1:
        return response
    chunks = [response.data]
    for _attempt in range(MAX_GET_RESPONSE):
        # GET RESPONSE uses the command's channel bits in CLA (ISO 7816-4 5.4.1).
        response = send(
            CommandApdu(command.cla & 0x03, INS.GET_RESPONSE, 0, 0, b"", response.sw2 or 256)
        )
        chunks.append(response.data)
        if response.sw1 != MORE_DATA_SW1:
            return ResponseApdu(b"".join(chunks), response.sw)
    raise errors.ProtocolError(
        _(
            "{command}: the card kept answering 61xx after {count} GET RESPONSE "
            "commands; reinsert the card"
        ).format(command=command.name, count=MAX_GET_RESPONSE)
    )


def _hex_command(command: CommandApdu, raw: bytes) -> str:
    if command.sensitive and command.data:
        # Keep the header and length bytes, hide the data and Le.
        head = 7 if command.is_extended else 5
        return f"{raw[:head].hex().upper()} {REDACTED}"
    return raw.hex().upper()


def _hex_response(command: CommandApdu, raw: bytes) -> str:
    if (
        command.ins == INS.INTERNAL_AUTHENTICATE and len(raw) > 2
    ):  # INTERNAL AUTHENTICATE: the cryptogram
        return f"{REDACTED} {raw[-2:].hex().upper()}"
    return raw.hex().upper()


def error_for(command: CommandApdu, sw: int) -> errors.ApduError:
    """The typed error for a status word, knowing which command got it."""
    name = command_name(command.ins)
    ins = command.ins
    # VERIFY, CHANGE PIN (80 5E) and a plain ISO CHANGE REFERENCE DATA (00 24) are PIN
    # commands; with the secure-messaging bit in CLA (84 5E, 84 24) a key is at stake.
    pin_command = ins == INS.VERIFY or (
        ins in (INS.CHANGE_PIN, INS.PIN_UNBLOCK) and not command.cla & SM_CLASS_BIT
    )
    n = tries_left(sw)
    if n is not None:
        if pin_command:
            return errors.PinIncorrect(n, sw, command=name)
        return errors.AuthenticationFailed(n, sw, command=name)
    if sw == SW.AUTH_METHOD_BLOCKED:
        return (
            errors.PinBlocked(sw, command=name)
            if pin_command
            else errors.KeyBlocked(sw, command=name)
        )
    cls = _SW_ERRORS.get(sw) or _SW1_ERRORS.get(sw >> 8, errors.ApduError)
    return cls(sw, command=name)


_SW_ERRORS: dict[int, type[errors.ApduError]] = {
    SW.SECURITY_STATUS_NOT_SATISFIED: errors.SecurityStatusNotSatisfied,
    SW.CHALLENGE_UNUSABLE: errors.ChallengeUnusable,
    SW.CONDITIONS_NOT_SATISFIED: errors.ConditionsNotSatisfied,
    SW.SM_DATA_MISSING: errors.BadMac,
    SW.BAD_MAC: errors.BadMac,
    SW.FUNC_NOT_SUPPORTED: errors.CardBlocked,
    SW.FILE_NOT_FOUND: errors.FileNotFound,
    SW.RECORD_NOT_FOUND: errors.RecordNotFound,
    SW.WRONG_DATA: errors.WrongParameters,
    SW.INCORRECT_P1P2: errors.WrongParameters,
    SW.WRONG_OFFSET: errors.WrongParameters,
    SW.WRONG_LENGTH: errors.WrongLength,
    SW.INS_NOT_SUPPORTED: errors.InstructionNotSupported,
    SW.CLA_NOT_SUPPORTED: errors.InstructionNotSupported,
    SW.APPLICATION_BLOCKED: errors.ApplicationBlocked,
}
_SW1_ERRORS: dict[int, type[errors.ApduError]] = {WRONG_LE_SW1: errors.WrongLength}


class ApduProtocol:
    """Sends :class:`CommandApdu` values over a :class:`Transport` through the steps.

    ``steps`` run outermost first; the default is just T=0 handling. Add a
    secure-messaging step with :meth:`with_secure_messaging`.
    """

    def __init__(self, transport: Transport, steps: Sequence[Step] = (t0_step,)) -> None:
        self.transport = transport
        self._steps: tuple[Step, ...] = tuple(steps)
        self._t0_only = self._steps == (t0_step,)
        self._send: Send = self._build()

    def _build(self) -> Send:
        send: Send = self._exchange
        for step in reversed(self._steps):
            send = _bind(step, send)
        return send

    def with_secure_messaging(self, scheme: SecureMessaging) -> ApduProtocol:
        """A protocol on the same transport whose commands go through ``scheme`` first."""
        return self.with_step(SecureMessagingStep(scheme))

    def with_step(self, step: Step) -> ApduProtocol:
        """A protocol on the same transport with ``step`` in front of the others."""
        return ApduProtocol(self.transport, (step, *self._steps))

    def _exchange(self, command: CommandApdu) -> ResponseApdu:
        raw = command.encode()
        if log.isEnabledFor(TRACE):
            return self._exchange_traced(command, raw)
        return _parse_response(self.transport.transmit(raw))

    def _exchange_traced(self, command: CommandApdu, raw: bytes) -> ResponseApdu:
        log.log(TRACE, "> %s", _hex_command(command, raw))
        reply = self.transport.transmit(raw)
        log.log(TRACE, "< %s", _hex_response(command, reply))
        return _parse_response(reply)

    def send(self, command: CommandApdu, *, check: bool = True) -> ResponseApdu:
        """Send ``command``; raise the typed error for SW ≠ 9000 unless ``check`` is False."""
        if self._t0_only:  # the default pipeline (t0_step over _exchange) inline: the hot path
            raw = command._encoded or command.encode()  # a command sent before is encoded
            if _trace_on(TRACE):
                response = self._exchange_traced(command, raw)
            else:
                reply = self.transport.transmit(raw)
                if reply[-2:] == _SW_OK_BYTES and type(reply) is bytes:
                    # 9000, the common answer: ResponseApdu.parse's work, done in place
                    # (one call less after every round trip; bench/transmit.py).
                    response = _new_object(ResponseApdu)
                    _set_data(response, reply[:-2])
                    _set_sw(response, _SW_OK)
                    return response
                response = _parse_response(reply)
            if response.sw == _SW_OK:
                return response
            response = _t0_follow_up(command, response, self._exchange)  # 61xx, 6Cxx
        else:
            response = self._send(command)
        if check and response.sw != _SW_OK:
            raise error_for(command, response.sw)
        return response

    def transmit(
        self,
        cla: int,
        ins: int,
        p1: int = 0,
        p2: int = 0,
        data: bytes = b"",
        le: int | None = None,
        *,
        check: bool = True,
    ) -> ResponseApdu:
        """Shorthand for ``send(CommandApdu(...))``."""
        return self.send(CommandApdu(cla, ins, p1, p2, data, le), check=check)


_SW_OK = int(SW.OK)  # a plain int: comparing with it skips the enum attribute lookup
_SW_OK_BYTES = b"\x90\x00"
_trace_on = log.isEnabledFor  # bound once: the hot path skips the attribute lookup
_parse_response = ResponseApdu.parse


def _bind(step: Step, send: Send) -> Send:
    def bound(command: CommandApdu) -> ResponseApdu:
        return step(command, send)

    return bound
