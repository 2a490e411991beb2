"""Typed errors of the sscard library (one root: :class:`SscardError`).

Messages say what went wrong and what to do; they never contain command data,
PINs, keys or cryptograms. Status-word errors carry the status word and, where
the card reported one, the number of tries left (ISO 7816-4 ``63Cx``).

Every error class lives under one of the categories below (``TransportError``,
``AuthenticationError``, ``BlockedError``, ``InvalidInput``, ``OperationFailed``),
which the CLI maps to stable exit codes (docs/cli.md); new errors subclass the
category they belong to.

Every error carries ``national_code``, the error code of the national terminal
interface (:mod:`sscard.national`; docs/cli.md, "National error codes"): the
code of its most specific class that names one (``national``), else that of its
category, taken in the exit-code order (a class under two categories takes the
earlier one); a status-word error without a named code reports its status word.

Messages speak in library terms ("a key store is needed"), never of command-line
options; an error may carry a ``hint``, a plain-language suggestion of what to
do next, which a front end can replace with its own (the CLI names its options).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar, Self

from sscard.i18n import _
from sscard.national import UNCLASSIFIED, NationalCode, code_for_sw, sw_code
from sscard.vocab import SW, tries_left_sw


class SscardError(Exception):
    """Root of every error sscard raises on purpose.

    ``hint``: what to do about it, in plain words (None when the message says it all).
    """

    hint: str | None = None
    national: ClassVar[int | None] = None
    """This class's national error code; None: the one of the class it derives from."""

    @property
    def national_code(self) -> int:
        """The error code of the national terminal interface (docs/cli.md)."""
        return _class_national(type(self))

    def with_hint(self, hint: str | None) -> Self:
        """This error with ``hint`` set (for ``raise Error(...).with_hint(...)``)."""
        self.hint = hint
        return self


# --- categories --------------------------------------------------------------


class TransportError(SscardError):
    """The link to the card failed: no reader, no card, card removed, reader busy."""


class AuthenticationError(SscardError):
    """An authentication or key failure: bad MAC, wrong cryptogram, wrong key."""


class BlockedError(SscardError):
    """A PIN, key, application or card is blocked."""


class InvalidInput(SscardError):
    """Input data is invalid. ``problems`` lists ``(field, message)`` pairs."""

    def __init__(self, message: str, problems: Iterable[tuple[str, str]] = ()) -> None:
        self.problems: list[tuple[str, str]] = list(problems)
        super().__init__(_with_details(message, self.problems))


def _with_details(message: str, problems: Sequence[tuple[str, str]]) -> str:
    """``message: field: problem; field: problem`` in the active language."""
    if not problems:
        return message
    details = "; ".join(
        _("{field}: {problem}").format(field=field, problem=problem) for field, problem in problems
    )
    return _("{message}: {details}").format(message=message, details=details)


class OperationFailed(SscardError):
    """The operation was refused or failed for a reason none of the other categories names.

    An unexpected status word, an answer that is not valid, a card that does not
    verify, a broken audit trail, an issuance the local store refuses. Exit code 1.
    """


# The categories' national codes, in the exit-code order of docs/cli.md: a class
# under two categories takes the earlier one, as its exit code does.
_CATEGORY_CODES: dict[type[SscardError], int] = {
    BlockedError: sw_code(SW.FUNC_NOT_SUPPORTED),  # 6A81: card or application blocked
    TransportError: NationalCode.READER_CONNECTION,
    AuthenticationError: sw_code(SW.SECURITY_STATUS_NOT_SATISFIED),  # 6982
    InvalidInput: NationalCode.INVALID_INPUT,
    OperationFailed: UNCLASSIFIED,
}


def _own_national(cls: type[SscardError], below: type[SscardError] | None = None) -> int | None:
    """The ``national`` of the most specific class of ``cls`` naming one, short of a category."""
    for klass in cls.__mro__:
        if klass in _CATEGORY_CODES or klass is below:
            return None
        own = klass.__dict__.get("national")
        if own is not None:
            return int(own)
    return None


def _class_national(cls: type[SscardError]) -> int:
    """The national code of an error class: its own, else its first category's."""
    own = _own_national(cls)
    if own is not None:
        return own
    return next((c for cat, c in _CATEGORY_CODES.items() if issubclass(cls, cat)), UNCLASSIFIED)


class ProtocolError(OperationFailed):
    """The card or reader answered something that is not a valid response."""

    national = NationalCode.NO_ANSWER


class MalformedResponse(ProtocolError):
    """A response APDU shorter than its two status bytes."""

    def __init__(self, length: int) -> None:
        self.length = length
        super().__init__(
            _(
                "malformed response from the card: {length} byte(s), a response needs at least "
                "the 2 status bytes; check the reader and reinsert the card"
            ).format(length=length)
        )


# --- transport ---------------------------------------------------------------


class NoService(TransportError):
    """The PC/SC service (pcscd) is not running or not reachable."""


class ReaderNotFound(TransportError):
    """No reader matches the name asked for (or several do)."""

    def __init__(self, message: str, available: Sequence[str] = ()) -> None:
        self.available = list(available)
        if self.available:
            message = _("{message}; readers present: {readers}").format(
                message=message, readers=", ".join(repr(r) for r in self.available)
            )
        else:
            message = _("{message}; no reader is connected").format(message=message)
        super().__init__(message)


class ReaderBusy(TransportError):
    """Another application holds the reader exclusively."""

    national = NationalCode.NOT_CONNECTED


class CardInUse(ReaderBusy):
    """Another caller of the card service holds the card (one caller at a time; the agent).

    ``retry_after``: seconds after which asking again makes sense; ``holder``: what
    holds the card (e.g. "PIN entry"), in plain words.
    """

    def __init__(self, message: str, *, retry_after: float, holder: str = "") -> None:
        self.retry_after = retry_after
        self.holder = holder
        super().__init__(message)


class NoCard(TransportError):
    """No card in the reader (or none arrived before the timeout)."""

    national = NationalCode.NO_CARD


class CardRemoved(TransportError):
    """The card was removed or powered off during the operation."""

    national = NationalCode.NO_CARD


class CardNotRemoved(TransportError):
    """The card was still in the reader when it should have been taken out."""

    national = UNCLASSIFIED  # the national interface never asks for the card back


class CommunicationError(TransportError):
    """The reader could not exchange an APDU with the card."""

    national = NationalCode.NO_ANSWER


class ReaderControlUnsupported(OperationFailed):
    """The reader has no control interface, or not the feature asked for (no PIN pad).

    An in-process card in a plain reader has none; a PC/SC reader whose driver
    refuses the control code answers this too.
    """


class TooManyPinAttempts(OperationFailed):
    """The card service refused a PIN command: too many PIN attempts in a short time
    (a rate limit in front of the card's own try counter). ``retry_after`` in seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


# --- PIN pads (PC/SC part 10; docs/card.md "PIN pads") ------------------------


class PinEntryFailed(OperationFailed):
    """The PIN pad ended PIN entry itself: the card got no command, no try was spent.

    ``sw`` is the status word the pad answered instead of the card's (64xx,
    PC/SC part 10).
    """

    def __init__(self, sw: int, message: str) -> None:
        self.sw = sw
        super().__init__(_("{message} (SW {sw:04X})").format(message=message, sw=sw))


class PinEntryTimedOut(PinEntryFailed):
    """The cardholder typed nothing (or not all of the PIN) before the pad's timeout (6400)."""

    national = NationalCode.PIN_ENTRY_TIMED_OUT

    def __init__(self, sw: int = 0x6400) -> None:
        super().__init__(sw, _("PIN entry timed out on the PIN pad; ask the cardholder to retry"))


class PinEntryCancelled(PinEntryFailed):
    """The cardholder pressed Cancel on the PIN pad (6401)."""

    national = NationalCode.PIN_ENTRY_CANCELLED

    def __init__(self, sw: int = 0x6401) -> None:
        super().__init__(sw, _("the cardholder cancelled PIN entry on the PIN pad"))


class PinsDiffer(PinEntryFailed, InvalidInput):
    """The new PIN and its confirmation typed on the pad differ (6402)."""

    national = NationalCode.PINS_DIFFER

    def __init__(self, sw: int = 0x6402) -> None:
        super().__init__(sw, _("the two new PINs typed on the PIN pad differ; nothing was changed"))


class PinLengthWrong(PinEntryFailed, InvalidInput):
    """The PIN typed on the pad is too short or too long (6403)."""

    national = NationalCode.PIN_LENGTH_WRONG

    def __init__(self, sw: int = 0x6403) -> None:
        super().__init__(sw, _("the PIN typed on the PIN pad has the wrong length"))


# --- status words ------------------------------------------------------------


class ApduError(OperationFailed):
    """The card answered with a status word other than 9000.

    Its national code is its class's own, else that of its status word
    (:func:`sscard.national.code_for_sw`; ``sw_is_pin = False``: the bare word).
    """

    sw_is_pin: ClassVar[bool] = True
    """63Cx and 6983 speak of the PIN (−51, −52)."""

    def __init__(self, sw: int, message: str | None = None, *, command: str | None = None) -> None:
        from sscard.status import describe  # local import: status imports nothing from here

        self.sw = sw
        self.command = command
        text = message or describe(sw)
        if command:
            text = _("{command}: {message} (SW {sw:04X})").format(
                command=command, message=text, sw=sw
            )
        else:
            text = _("{message} (SW {sw:04X})").format(message=text, sw=sw)
        super().__init__(text)

    @property
    def national_code(self) -> int:
        """The class's own national code, else the status word's."""
        own = _own_national(type(self), below=ApduError)
        if own is not None:
            return own
        return code_for_sw(self.sw) if self.sw_is_pin else sw_code(self.sw)


class PinIncorrect(ApduError, AuthenticationError):
    """Wrong PIN; ``tries_left`` tries remain before it blocks."""

    national = NationalCode.WRONG_PIN

    def __init__(
        self, tries_left: int, sw: int | None = None, *, command: str | None = None
    ) -> None:
        self.tries_left = tries_left
        if tries_left == 1:
            text = _("wrong PIN, {tries} try left")
        else:
            text = _("wrong PIN, {tries} tries left")
        super().__init__(
            tries_left_sw(tries_left) if sw is None else sw,
            text.format(tries=tries_left),
            command=command,
        )


class AuthenticationFailed(ApduError, AuthenticationError):
    """Wrong cryptogram in EXTERNAL AUTHENTICATE (a wrong key); tries left if known."""

    sw_is_pin = False  # 63Cx here is a key's counter: terminals report the word itself

    def __init__(
        self, tries_left: int | None = None, sw: int | None = None, *, command: str | None = None
    ) -> None:
        self.tries_left = tries_left
        if sw is None:
            sw = 0x6300 if tries_left is None else tries_left_sw(tries_left)  # 6300: no count
        if tries_left is None:
            text = _("authentication failed: wrong key or cryptogram")
        else:
            text = _(
                "authentication failed: wrong key or cryptogram, {tries} tries left on this key"
            ).format(tries=tries_left)
        super().__init__(sw, text, command=command)


class PinBlocked(ApduError, BlockedError):
    """The PIN is blocked; a service point must unblock or reload it."""

    national = NationalCode.PIN_BLOCKED

    def __init__(self, sw: int = SW.AUTH_METHOD_BLOCKED, *, command: str | None = None) -> None:
        super().__init__(
            sw,
            _("the PIN is blocked; visit a service point to have it unblocked"),
            command=command,
        )


class KeyBlocked(ApduError, BlockedError):
    """A key (external authentication, PIN unblock, …) is blocked by its error counter."""

    sw_is_pin = False  # 6983 of a key: −27011, "key locked"

    def __init__(self, sw: int = SW.AUTH_METHOD_BLOCKED, *, command: str | None = None) -> None:
        super().__init__(sw, _("the key is blocked (error counter exhausted)"), command=command)


class ApplicationBlocked(ApduError, BlockedError):
    """The application is (permanently) blocked."""


class CardBlocked(ApduError, BlockedError):
    """The card is permanently blocked (every command answers 6A81)."""


class SecurityStatusNotSatisfied(ApduError, AuthenticationError):
    """The command needs a PIN verification or an external authentication first."""


class BadCardIdentificationCode(AuthenticationError):
    """The card identification code (EF05 item 01) is malformed or its MAC does not verify.

    The national −20: a forged or altered card, or one made for another region.
    """

    national = NationalCode.BAD_CARD_IDENTIFICATION_CODE

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(
            _("the card identification code is not valid: {problem}").format(problem=problem)
        )
        self.hint = _(
            "the card may be forged or altered: keep it and check it with the card's issuer"
        )


class BadMac(ApduError, AuthenticationError):
    """The card rejected the line-protection MAC (6988): wrong key or wrong challenge."""


class ChallengeUnusable(ApduError, AuthenticationError):
    """No usable GET CHALLENGE for this command (none, or already used)."""


class ConditionsNotSatisfied(ApduError):
    """Conditions of use not satisfied, e.g. the card's lifecycle state (6985)."""


class FileNotFound(ApduError):
    """The file or application does not exist on the card (6A82)."""


class RecordNotFound(ApduError):
    """The record does not exist in the file (6A83)."""


class WrongLength(ApduError):
    """The card rejected Lc or Le (6700, 6Cxx)."""


class WrongParameters(ApduError):
    """The card rejected P1/P2 or the data field (6A80, 6A86, 6B00)."""


class InstructionNotSupported(ApduError):
    """The card does not know this instruction or class (6D00, 6E00)."""


# --- keys and key stores (docs/keys.md) ---------------------------------------


class WrongKeyLength(InvalidInput):
    """A key has the wrong length for its algorithm (every card key is 16 bytes)."""

    def __init__(self, algorithm: str, length: int) -> None:
        self.algorithm = algorithm
        self.length = length
        super().__init__(
            _("wrong key length"),
            [
                (
                    "key",
                    _("a {algorithm} key must be 16 bytes, got {length}").format(
                        algorithm=algorithm, length=length
                    ),
                )
            ],
        )


class KeyStoreError(OperationFailed):
    """Root of key store and security module errors (failed, unless a subclass says more)."""


class WrongPassphrase(KeyStoreError, AuthenticationError):
    """The key store passphrase is wrong (or the store's header was altered)."""


class CorruptKeyStore(KeyStoreError, InvalidInput):
    """The key store file is not a key store, is truncated, or was tampered with."""


class UnknownKeyReference(KeyStoreError, InvalidInput):
    """No key with this reference (and version) in the store."""

    national = sw_code(SW.REFERENCE_NOT_FOUND)  # 6A88: key not found

    def __init__(self, ref: str, version: int | None = None) -> None:
        self.ref = ref
        self.version = version
        if version is None:
            text = _("no key {ref} in the key store").format(ref=ref)
        else:
            text = _("no key {ref} version {version} in the key store").format(
                ref=ref, version=version
            )
        super().__init__(text)
        self.hint = _("list the keys the store holds")


class KeyStoreMissing(KeyStoreError, InvalidInput):
    """No key store was named where one is needed."""

    national = NationalCode.NO_PSAM  # no security module


class KeyExists(KeyStoreError, InvalidInput):
    """A key with this reference and version is already in the store."""


class MechanismUnavailable(KeyStoreError, InvalidInput):
    """The token cannot do what the key needs (e.g. SM4 on SoftHSM2); names the mechanism."""

    national = NationalCode.PSAM_LACKS_ALGORITHM

    def __init__(self, mechanism: str, detail: str = "") -> None:
        self.mechanism = mechanism
        if detail:
            text = _("the token does not support {mechanism} ({detail})").format(
                mechanism=mechanism, detail=detail
            )
        else:
            text = _("the token does not support {mechanism}").format(mechanism=mechanism)
        super().__init__(text)


class TokenError(KeyStoreError):
    """The PKCS#11 token failed or could not be found."""

    national: ClassVar[int | None] = NationalCode.NO_PSAM


class TokenNotFound(TokenError, InvalidInput):
    """No PKCS#11 token with this label (or the module cannot be loaded)."""


class WrongTokenPin(TokenError, AuthenticationError):
    """The PKCS#11 user PIN is wrong."""

    national = _CATEGORY_CODES[AuthenticationError]


class TokenLocked(TokenError, AuthenticationError):
    """The PKCS#11 token's user PIN is locked; the security officer must reset it."""

    national = sw_code(SW.AUTH_METHOD_BLOCKED)  # 6983: key locked


class DevelopmentKeysRefused(KeyStoreError, InvalidInput):
    """A production profile was asked to use the development key store."""


# --- layout (profiles, records, holder data) ---------------------------------


class ProfileError(InvalidInput):
    """A card profile is missing, malformed or inconsistent; ``problems`` name the JSON paths."""


class RecordEncodeError(InvalidInput):
    """A value does not fit its card record (too long, not encodable, out of range)."""


class RecordDecodeError(ProtocolError):
    """A record read from the card does not match its profile definition.

    ``record`` names the record, e.g. ``EF06 record 2 (name)``.
    """

    national = NationalCode.BAD_DATA_CHARACTERS

    def __init__(self, record: str, problem: str) -> None:
        self.record = record
        self.problem = problem
        super().__init__(_("{record}: {problem}").format(record=record, problem=problem))


# --- exchange platform (docs/exchange.md) --------------------------------------


class ExchangeError(OperationFailed):
    """Root of errors talking to (or running) the exchange platform."""

    national = UNCLASSIFIED  # outside the national interface (invalid input aside)


class PlatformUnavailable(ExchangeError, TransportError):
    """The platform cannot be reached or failed (refused, timeout, 5xx); retry later."""


class PlatformAuthRefused(ExchangeError, AuthenticationError):
    """Mutual TLS failed: the platform refused this certificate, or is not trusted."""


class ScopeRefused(ExchangeError, AuthenticationError):
    """The sharing agreement does not cover what was asked (HTTP 403).

    ``problems`` lists ``(JSON path, message)``; ``event_ids`` the events refused.
    """

    def __init__(
        self, message: str, problems: Iterable[tuple[str, str]] = (), event_ids: Iterable[str] = ()
    ) -> None:
        self.problems = list(problems)
        self.event_ids = list(event_ids)
        super().__init__(_with_details(message, self.problems[:10]))


class EventsRejected(ExchangeError, InvalidInput):
    """The platform rejected a request as invalid (HTTP 4xx); ``problems`` name the paths."""

    national = NationalCode.INVALID_INPUT

    def __init__(
        self, message: str, problems: Iterable[tuple[str, str]] = (), event_ids: Iterable[str] = ()
    ) -> None:
        self.event_ids = list(event_ids)
        super().__init__(message, list(problems)[:50])


class PlatformProtocolError(ExchangeError):
    """The platform answered something that is not a valid protocol message."""


class PlatformConfigError(ExchangeError, InvalidInput):
    """The reference platform's configuration file is missing or invalid."""

    national = NationalCode.INVALID_INPUT


# --- operators, audit trail, backups (docs/operators.md, regulation art. 13-15) ---


class OperatorError(AuthenticationError):
    """Root of operator identity and permission errors (exit code 6)."""


class NotLoggedIn(OperatorError):
    """No valid operator session: no token, an expired or revoked one, or a disabled operator."""


class LoginFailed(OperatorError):
    """Unknown operator, wrong password or disabled operator (deliberately not said which)."""


class NotAuthorized(OperatorError):
    """The operator's role does not allow this action; the refusal is in the audit trail."""

    def __init__(self, operator: str | None, role: str | None, action: str) -> None:
        self.operator = operator
        self.role = role
        self.action = action
        if operator:
            text = _("operator {operator} (role {role}) may not do {action}").format(
                operator=repr(operator), role=role, action=repr(action)
            )
        else:
            text = _("nobody may not do {action}").format(action=repr(action))
        super().__init__(text)
        self.hint = _(
            "log in as an operator whose role allows it (docs/operators.md lists the roles)"
        )


class BootstrapRefused(OperatorError):
    """``operator add --bootstrap`` on a store that already has operators."""


class AuditError(OperationFailed):
    """Root of audit trail errors."""


class AuditLogBroken(AuditError):
    """The audit trail failed verification; ``seq`` names the first broken record."""

    def __init__(self, seq: int | None, problem: str) -> None:
        self.seq = seq
        self.problem = problem
        if seq is not None:
            text = _("audit record {seq}: {problem}").format(seq=seq, problem=problem)
        else:
            text = _("audit trail: {problem}").format(problem=problem)
        super().__init__(text)


class AuditTrailTruncated(AuditLogBroken):
    """The local trail ends before the record the exchange platform witnessed (exit 1)."""

    def __init__(self, witnessed: int, ends_at: int) -> None:
        self.witnessed, self.ends_at = witnessed, ends_at
        self.seq = ends_at + 1
        self.problem = _(
            "truncated: the platform witnessed record {witnessed} but the local trail ends "
            "at {ends_at}"
        ).format(witnessed=witnessed, ends_at=ends_at)
        AuditError.__init__(
            self,
            _(
                "audit trail truncated: the platform witnessed record {witnessed} but the "
                "local trail ends at {ends_at}"
            ).format(witnessed=witnessed, ends_at=ends_at),
        )


class AuditWitnessRefused(ExchangeError, AuditError):
    """The exchange platform refused an audit checkpoint: it goes backwards or forks (409)."""


class CheckpointKeyMissing(AuditError, InvalidInput):
    """The key store holds no audit checkpoint key (the CLI's ``audit init-key`` adds one)."""


class BackupError(OperationFailed):
    """Root of backup and restore errors."""


class CorruptBackup(BackupError, InvalidInput):
    """Not an sscard backup, truncated, tampered with, or made by another installation's key."""

    def __init__(self, message: str) -> None:
        super().__init__(_("{message}; refused, nothing was restored").format(message=message))


class WrongBackupPassphrase(BackupError, AuthenticationError):
    """The backup passphrase is wrong (or the archive header was altered)."""
