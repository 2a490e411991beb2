"""The store's errors, the same whichever engine holds it."""

from __future__ import annotations

from sscard.errors import InvalidInput, OperationFailed


class IntegrityError(OperationFailed):
    """A write the store's own rules refuse (a unique, check or foreign-key rule).

    The engine's message is kept for the log; callers that expect a rule to
    bite (an operator that exists, a holder's second active card) catch this
    and raise their own error.
    """


class StoreUnavailable(OperationFailed):
    """The store cannot be reached: the server is down or went away mid-run."""


class StoreNotReady(InvalidInput):
    """The store has no tables for this sscard yet, or an older version of them."""


class StoreNotInitialized(StoreNotReady):
    """The store has no sscard tables at all: a new centre database, never initialized."""


class StoreNotEmpty(InvalidInput):
    """The store already has sscard's tables: it is upgraded, not initialized again."""


class StoreTooNew(InvalidInput):
    """The store was upgraded by a newer sscard than this one."""


class StoreBusy(OperationFailed):
    """Another station holds what this one needs (a holder, a card, the outbox push)."""
