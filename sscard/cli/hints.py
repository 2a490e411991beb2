"""What the command line suggests for a library error: its options and commands.

Library errors speak in library terms and may carry a plain-language ``hint``;
here the CLI puts its own words in place of that, keyed by error class (the
most specific class with an entry wins). The error renderer in
:mod:`sscard.cli.main` prints the result on its own line ("hint: ...") and puts
it in the ``--json`` error object. The hints are marked with ``N_`` and translated
when shown (:func:`hint_for`).

Classes are named by their dotted path, not imported: showing an error loads
neither the emulator nor issuance (the error's own class is loaded already).
"""

from __future__ import annotations

from sscard import errors
from sscard.i18n import N_, _

_KEYSTORE = N_(
    "give a key store with --keystore STORE (or $SSCARD_KEYSTORE): a key store file, "
    "pkcs11:TOKEN, psam:READER, or 'dev' for the development keys (emulated cards only)"
)
_READER = N_("choose a reader with --reader NAME (or $SSCARD_READER); 'sscard readers' lists them")

HINTS: dict[str, str] = {
    "sscard.card.KeysRequired": _KEYSTORE,
    "sscard.errors.KeyStoreMissing": _KEYSTORE,
    "sscard.issuance.service.HolderHasActiveCard": N_(
        "to issue a new card, give --replace with a --reason"
    ),
    "sscard.card.CardNotIssued": N_("issue it first with 'sscard issue'"),
    "sscard.errors.ReaderNotFound": _READER,
    "sscard.errors.NotLoggedIn": N_(
        "log in with 'sscard operator login ID', or give --operator ID"
    ),
    "sscard.errors.NotAuthorized": N_(
        "log in as an operator whose role allows it ('sscard operator "
        "login ID'); docs/operators.md lists the roles"
    ),
    "sscard.errors.BootstrapRefused": N_(
        "log in as an issuer and use 'sscard operator add' (without --bootstrap)"
    ),
    "sscard.errors.UnknownKeyReference": N_("'sscard keys list STORE' shows the keys it holds"),
    "sscard.errors.DevelopmentKeysRefused": N_("use a key store created with 'sscard keys init'"),
    "sscard.errors.CheckpointKeyMissing": N_("add one with 'sscard audit init-key STORE'"),
    "sscard.errors.PlatformAuthRefused": N_(
        "check --ca, --cert and --key, and the platform address"
    ),
    "sscard.applets.image.CorruptCardImage": N_("create a new card with 'sscard virtual new PATH'"),
    "sscard.applets.image.OutdatedCardImage": N_(
        "create a new card with 'sscard virtual new PATH --profile PROFILE', "
        "PROFILE the successor the message names"
    ),
    "sscard.applets.image.WrongImageKind": N_(
        "a PSAM image (made with 'sscard virtual new PATH --psam') goes into the "
        "reader beside the card: 'sscard virtual serve CARD.img PSAM.img'"
    ),
    "sscard.keys.psam_module.PsamMissing": N_(
        "put the service point's PSAM in the reader named by --keystore psam:READER "
        "('sscard readers' lists them; psam:virtual:PATH for an emulated PSAM)"
    ),
    "sscard.keys.psam_module.PsamKeyMissing": N_(
        "the PSAM lacks a key this flow needs: issue it for this kind of service "
        "point ('sscard psam issue --kind'; 'sscard psam info READER' shows what it holds)"
    ),
    "sscard.keys.psam_module.PsamLacksAlgorithm": N_(
        "use the PSAM issued for this card's generation ('sscard psam issue "
        "--profile national-3' for SM4 cards, national-2 for 3DES cards)"
    ),
    "sscard.keys.psam_module.PsamKeyBlocked": N_(
        "the PSAM's key is used up: the centre loads its keys again "
        "('sscard psam issue'); 'sscard psam info READER' shows the counters"
    ),
    "sscard.db.errors.StoreNotReady": N_(
        "an administrator upgrades the store with 'sscard store upgrade' "
        "('sscard store status' shows the versions; docs/store.md)"
    ),
    "sscard.db.errors.StoreNotInitialized": N_(
        "an administrator creates the tables with 'sscard store init', or --store names "
        "another database (docs/store.md)"
    ),
    "sscard.db.errors.StoreTooNew": N_(
        "use the sscard version that upgraded the store, or a newer one ('sscard store "
        "status' shows the versions)"
    ),
    "sscard.db.errors.StoreNotEmpty": N_(
        "'sscard store status' shows its versions; 'sscard store upgrade' brings them "
        "to this sscard's"
    ),
    "sscard.db.errors.StoreUnavailable": N_(
        "check that the database server runs and is reachable, the URL of --store (or "
        "$SSCARD_STORE), and its password in ~/.pgpass, $PGPASSFILE or $PGPASSWORD"
    ),
    "sscard.card.TransportKeyRefused": N_(
        "blank cards open with the transport root their vendor keyed them "
        "with: import it with 'sscard keys import-transport STORE'; emulated blank cards for STORE "
        "come from 'sscard virtual new PATH --keystore STORE'"
    ),
}
"""The hint for each error class, by the class's ``module.QualifiedName``."""


def hint_for(error: errors.SscardError) -> str | None:
    """The CLI's hint for ``error`` (translated), else the error's own hint, else None."""
    for cls in type(error).__mro__:
        hint = HINTS.get(f"{cls.__module__}.{cls.__qualname__}")
        if hint is not None:
            return _(hint)
    return error.hint
