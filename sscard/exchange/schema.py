"""JSON Schemas of the exchange protocol: messages and event payloads (docs/exchange.md).

Every message on the wire and every event payload has a schema shipped in
``sscard/exchange/schemas/``. Problems are reported as ``(JSON Pointer, message)``
pairs; messages name the rule that failed, never the offending value, so that
holder data does not end up in an error text or a log (regulation art. 17).
The messages are in the active language (:mod:`sscard.i18n`) unless
``localize=False`` asks for English, as the platform's HTTP answers have them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from sscard.exchange.fastcheck import Check, checker
from sscard.i18n import N_, _

CATEGORIES: tuple[str, ...] = (
    "card.issued",
    "card.replaced",
    "pin.reset",
    "pin.unblocked",
    "card.blocked",
    "card.unblocked",
    "holder.changed",
)
"""The event categories of issue 8; a sharing agreement grants a subset of them."""

MESSAGES: tuple[str, ...] = (
    "event",
    "push-request",
    "push-response",
    "pull-response",
    "agreement",
    "error",
    "platform-config",
    "audit-checkpoint",
    "audit-witness-request",
    "audit-witness",
)

Problem = tuple[str, str]

_RULE_TEXTS: dict[str, str] = {
    "type": N_("must be of type {value}"),
    "pattern": N_("does not match the pattern {value}"),
    "enum": N_("must be one of {value}"),
    "const": N_("must be {value}"),
    "minLength": N_("must have at least {value} character(s)"),
    "maxLength": N_("must have at most {value} character(s)"),
    "minItems": N_("must have at least {value} item(s)"),
    "maxItems": N_("must have at most {value} item(s)"),
    "minimum": N_("must be at least {value}"),
    "maximum": N_("must be at most {value}"),
    "uniqueItems": N_("items must be unique"),
    "propertyNames": N_("a property name is not allowed"),
}
"""The message of each rule that failed (English; translated where used)."""


def _english(text: str) -> str:
    return text


def _load(name: str) -> dict[str, Any]:
    text = resources.files("sscard.exchange").joinpath("schemas", f"{name}.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def _registry() -> Registry[Any]:
    resources_ = [Resource.from_contents(_load(m)) for m in MESSAGES]
    resources_ += [Resource.from_contents(_load(f"payload.{c}")) for c in CATEGORIES]
    return Registry().with_resources((r.id() or "", r) for r in resources_)


@cache
def _validator(name: str) -> Draft202012Validator:
    schema = _load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())


@cache
def _ids() -> dict[str, str]:
    """Schema name by ``$id``, for resolving ``$ref`` in :func:`_fast`."""
    names = [*MESSAGES, *(f"payload.{c}" for c in CATEGORIES)]
    return {str(_load(n)["$id"]): n for n in names}


_compiling: set[str] = set()
_compile_lock = threading.RLock()  # the platform's threads: one compiles at a time


@cache
def _fast(name: str) -> Check | None:
    """The compiled "certainly valid" check of schema ``name`` (:mod:`.fastcheck`), or None.

    A ``$ref`` back to a schema being compiled (a cycle) leaves it to jsonschema.
    """

    def resolve(uri: str) -> Check | None:
        target = _ids().get(uri)
        return None if target is None or target in _compiling else _fast(target)

    with _compile_lock:
        _compiling.add(name)
        try:
            return checker(_load(name), resolve)
        finally:
            _compiling.discard(name)


def _valid(name: str, data: Any) -> bool:
    """True when ``data`` is certainly valid as ``name`` (no need to ask jsonschema)."""
    check = _fast(name)
    return check is not None and check(data)


def schema(name: str) -> dict[str, Any]:
    """The schema of message ``name`` or of ``payload.CATEGORY`` (a fresh copy)."""
    return _load(name)


def pointer(parts: Any) -> str:
    """A JSON Pointer (RFC 6901) for a sequence of keys and indexes."""
    out = ""
    for part in parts:
        out += "/" + str(part).replace("~", "~0").replace("/", "~1")
    return out


def _problems(
    validator: Draft202012Validator, data: Any, prefix: str, localize: bool
) -> list[Problem]:
    tr = _ if localize else _english
    found: list[Problem] = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        found.extend(_describe(error, prefix, tr))
    return list(dict.fromkeys(found))  # one "required" error per missing key names them all


def _describe(error: ValidationError, prefix: str, tr: Callable[[str], str]) -> list[Problem]:
    """Turn one jsonschema error into problems without quoting the instance's value."""
    where = prefix + pointer(error.absolute_path)
    rule, instance = error.validator, error.instance
    value: Any = error.validator_value
    subschema: Any = error.schema
    if rule == "required" and isinstance(instance, dict):
        return [
            (f"{where}/{k}", tr(N_("required property is missing")))
            for k in value
            if k not in instance
        ]
    if rule == "additionalProperties" and isinstance(instance, dict):
        allowed = set(subschema.get("properties", {}))
        extra = sorted(k for k in instance if k not in allowed)
        text = tr(N_("unknown property (not allowed)"))
        return [(f"{where}{pointer([k])}", text) for k in extra]
    if rule in ("anyOf", "oneOf") and error.context:
        return _describe(min(error.context, key=lambda e: len(e.path)), prefix, tr)
    shown: Any = value
    if rule == "enum":
        shown = ", ".join(json.dumps(v) for v in value)
    elif rule == "const":
        shown = json.dumps(value)
    if rule == "minProperties":
        template = (
            N_("must have at least {value} property")
            if value == 1
            else N_("must have at least {value} properties")
        )
    else:
        template = _RULE_TEXTS.get(str(rule), "")
    if not template:
        return [(where or "/", tr(N_("fails the '{rule}' rule")).format(rule=rule))]
    return [(where or "/", tr(template).format(value=shown))]


def message_problems(
    name: str, data: Any, prefix: str = "", *, localize: bool = True
) -> list[Problem]:
    """Problems of ``data`` as message ``name`` (see :data:`MESSAGES`); empty when valid.

    ``localize=False``: the messages in English (the platform's HTTP answers).
    """
    if _valid(name, data):
        return []
    return _problems(_validator(name), data, prefix, localize)


def payload_problems(
    category: str, payload: Any, prefix: str = "", *, localize: bool = True
) -> list[Problem]:
    """Problems of an event ``payload`` for ``category``; an unknown category is a problem."""
    if category not in CATEGORIES:
        tr = _ if localize else _english
        text = tr(N_("unknown category; known: {categories}"))
        return [(prefix or "/", text.format(categories=", ".join(CATEGORIES)))]
    if _valid(f"payload.{category}", payload):
        return []
    return _problems(_validator(f"payload.{category}"), payload, prefix, localize)


def event_problems(event: Any, prefix: str = "", *, localize: bool = True) -> list[Problem]:
    """Problems of a whole event: the envelope, then the payload against its category."""
    found = message_problems("event", event, prefix, localize=localize)
    if not found and isinstance(event, dict):
        found = payload_problems(
            event["category"], event["payload"], prefix + "/payload", localize=localize
        )
    return found
