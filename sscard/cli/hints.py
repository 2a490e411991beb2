"""What the command line suggests for a library error: its options and commands.

Library errors speak in library terms and may carry a plain-language ``hint``;
here the CLI puts its own words in place of that, keyed by error class (the
most specific class with an entry wins). The error renderer in
:mod:`sscard.cli.main` prints the result on its own line ("hint: ...") and puts
it in the ``--json`` error object. The hints are marked with ``N_`` and translated
when shown (:func:`hint_for`).
"""

from __future__ import annotations

from sscard import errors
from sscard.applets.image import CorruptCardImage, OutdatedCardImage, WrongImageKind
from sscard.card import CardNotIssued, KeysRequired, TransportKeyRefused
from sscard.i18n import N_, _
from sscard.issuance.service import HolderHasActiveCard
from sscard.keys.psam_module import PsamKeyBlocked, PsamKeyMissing, PsamLacksAlgorithm, PsamMissing

_KEYSTORE = N_(
    "give a key store with --keystore STORE (or $SSCARD_KEYSTORE): a key store file, "
    "pkcs11:TOKEN, psam:READER, or 'dev' for the development keys (emulated cards only)"
)
_READER = N_("choose a reader with --reader NAME (or $SSCARD_READER); 'sscard readers' lists them")

HINTS: dict[type[errors.SscardError], str] = {
    KeysRequired: _KEYSTORE,
    errors.KeyStoreMissing: _KEYSTORE,
    HolderHasActiveCard: N_("to issue a new card, give --replace with a --reason"),
    CardNotIssued: N_("issue it first with 'sscard issue'"),
    errors.ReaderNotFound: _READER,
    errors.NotLoggedIn: N_("log in with 'sscard operator login ID', or give --operator ID"),
    errors.NotAuthorized: N_(
        "log in as an operator whose role allows it ('sscard operator "
        "login ID'); docs/operators.md lists the roles"
    ),
    errors.BootstrapRefused: N_(
        "log in as an issuer and use 'sscard operator add' (without --bootstrap)"
    ),
    errors.UnknownKeyReference: N_("'sscard keys list STORE' shows the keys it holds"),
    errors.DevelopmentKeysRefused: N_("use a key store created with 'sscard keys init'"),
    errors.CheckpointKeyMissing: N_("add one with 'sscard audit init-key STORE'"),
    errors.PlatformAuthRefused: N_("check --ca, --cert and --key, and the platform address"),
    CorruptCardImage: N_("create a new card with 'sscard virtual new PATH'"),
    OutdatedCardImage: N_(
        "create a new card with 'sscard virtual new PATH --profile PROFILE', "
        "PROFILE the successor the message names"
    ),
    WrongImageKind: N_(
        "a PSAM image (made with 'sscard virtual new PATH --psam') goes into the "
        "reader beside the card: 'sscard virtual serve CARD.img PSAM.img'"
    ),
    PsamMissing: N_(
        "put the service point's PSAM in the reader named by --keystore psam:READER "
        "('sscard readers' lists them; psam:virtual:PATH for an emulated PSAM)"
    ),
    PsamKeyMissing: N_(
        "the PSAM lacks a key this flow needs: issue it for this kind of service "
        "point ('sscard psam issue --kind'; 'sscard psam info READER' shows what it holds)"
    ),
    PsamLacksAlgorithm: N_(
        "use the PSAM issued for this card's generation ('sscard psam issue "
        "--profile national-3' for SM4 cards, national-2 for 3DES cards)"
    ),
    PsamKeyBlocked: N_(
        "the PSAM's key is used up: the centre loads its keys again "
        "('sscard psam issue'); 'sscard psam info READER' shows the counters"
    ),
    TransportKeyRefused: N_(
        "blank cards open with the transport root their vendor keyed them "
        "with: import it with 'sscard keys import-transport STORE'; emulated blank cards for STORE "
        "come from 'sscard virtual new PATH --keystore STORE'"
    ),
}


def hint_for(error: errors.SscardError) -> str | None:
    """The CLI's hint for ``error`` (translated), else the error's own hint, else None."""
    for cls in type(error).__mro__:
        if cls in HINTS:
            return _(HINTS[cls])
    return error.hint
