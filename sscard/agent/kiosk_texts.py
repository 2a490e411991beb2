"""Every label the kiosk page shows, in English, marked for translation (docs/agent.md,
"The kiosk page").

The page holds no human text of its own: it fetches ``/kiosk/texts?lang=`` and gets
these labels and the flow's messages (:data:`sscard.kiosk.SCREEN`) in that language.
Placeholders (``{seconds}``) are filled in by the page.
"""

from __future__ import annotations

from sscard.i18n import LANGUAGES, N_, _, using
from sscard.kiosk import SCREEN

LABELS: dict[str, str] = {
    "title": N_("Social Security Card Self-Service"),
    "subtitle": N_("PIN change"),
    "ready": N_("Card detected. Touch the button below to change your PIN."),
    "start": N_("Change my PIN"),
    "working": N_("Please wait…"),
    "pad_hint": N_("Use the keypad on the card reader. Your PIN stays in the reader."),
    "screen_hint": N_("Touch the digits on the screen. Your PIN is shown only as dots."),
    "countdown": N_("{seconds} s left"),
    "key_clear": N_("Clear"),
    "key_back": N_("Delete"),
    "key_ok": N_("OK"),
    "key_cancel": N_("Cancel"),
    "done": N_("Thank you. You may now leave."),
    "busy": N_("The card reader is in use. Please wait a moment and try again."),
    "another_screen": N_("This kiosk is already serving a cardholder on another screen."),
    "no_card": N_("No card in the reader. Please insert your card first."),
    "offline": N_("The card service is not available. Please see the staff."),
    "help": N_("Need help? Please ask the staff at the counter."),
    "pin_digits": N_("A PIN has 4 to 12 digits."),
}
"""The page's own labels by id (English; translated by :func:`texts`)."""

LANGUAGE_NAMES: dict[str, str] = {"zh_CN": "中文", "en": "English"}
"""Each interface language by its own name (for the switch button; never translated)."""


def texts(lang: str) -> dict[str, object]:
    """Every text the page shows, in ``lang``: its labels and the flow's messages."""
    with using(lang) as chosen:
        return {
            "lang": chosen,
            "languages": {code: LANGUAGE_NAMES[code] for code in LANGUAGES},
            "labels": {key: _(text) for key, text in LABELS.items()},
            "screen": {key: _(text) for key, text in SCREEN.items()},
        }
