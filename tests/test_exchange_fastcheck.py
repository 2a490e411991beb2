"""The fast schema check never accepts what jsonschema refuses, and accepts valid events."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from sscard.exchange import schema
from sscard.exchange.fastcheck import checker
from sscard.exchange.schema import CATEGORIES, MESSAGES
from tests.exchange_support import SSN, blocked, issued

EVENT_ID = "0190a6e2-7c1e-7d3a-9b1c-3f4e5d6c7b8a"

PAYLOADS: dict[str, dict[str, Any]] = {
    "card.issued": issued(1)
    | {
        "key_versions": {"MK_DF01": 1, "DPK": 255},
        "issue_date": "2024-06-01",
        "expiry_date": "2034-06-01",
        "region": "110105",
    },
    "card.replaced": issued(2)
    | {
        "replaces": {"card_number": "A0000001S", "card_serial": "0011223344556677"},
        "reason": "lost",
        "key_versions": {"MK_DF01": 0},
    },
    "pin.reset": {"card_serial": "0011223344556677", "card_number": "A0000001S", "ssn": SSN},
    "pin.unblocked": {"card_serial": "0011223344556677", "card_number": "A0000001S"},
    "card.blocked": blocked("A0000001S") | {"card_serial": "0011223344556677", "ssn": SSN},
    "card.unblocked": {"card_number": "A0000001S", "reason": "found"},
    "holder.changed": {
        "ssn": SSN,
        "card_number": "A0000001S",
        "changes": {"name": "李四", "gender": "2", "ethnicity": 97, "birth_date": "1990-01-31"},
        "written_to_card": False,
    },
}


def _event(category: str) -> dict[str, Any]:
    return {
        "id": EVENT_ID,
        "service_point": "sp-labour-01",
        "occurred_at": "2024-06-01T09:30:00.000000Z",
        "category": category,
        "payload": PAYLOADS[category],
    }


MESSAGE_SAMPLES: dict[str, Any] = {
    "event": _event("card.issued"),
    "push-request": {"events": [_event(c) for c in CATEGORIES]},
    "push-response": {
        "results": [
            {"id": EVENT_ID, "status": "stored", "seq": 1},
            {"id": EVENT_ID.replace("a", "b"), "status": "duplicate", "seq": 7},
        ]
    },
    "pull-response": {
        "items": [{"seq": 3, "department": "police", "event": _event("card.blocked")}],
        "cursor": 3,
        "more": False,
    },
    "agreement": {
        "service_point": "sp-labour",
        "department": "labour",
        "push": ["card.issued"],
        "pull": [],
    },
}

ODD_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 97, 256, 1.0, 1.5, float("nan"), "", "x", "A0000001S\n",
    "李", [], ["a", "a"], {}, {"x": 1},
]  # fmt: skip


def _jsonschema_valid(name: str, data: Any) -> bool:
    return not any(True for _ in schema._validator(name).iter_errors(data))


def _mutations(data: Any) -> Iterator[Any]:
    """Copies of ``data`` with one node replaced, removed or one property added."""
    yield from (copy.deepcopy(v) for v in ODD_VALUES)
    if isinstance(data, dict):
        yield {**data, "unknown": "x"}
        for key in data:
            yield {k: v for k, v in data.items() if k != key}
            for changed in _mutations(data[key]):
                yield {**data, key: changed}
    elif isinstance(data, list):
        if data:
            yield data[1:]
            yield [*data, data[0]]
            for changed in _mutations(data[0]):
                yield [changed, *data[1:]]
    elif isinstance(data, str):
        yield data + "\n"
        yield data.lower()
        yield data[:-1]


def _samples() -> Iterator[tuple[str, Any]]:
    for category, payload in PAYLOADS.items():
        yield f"payload.{category}", payload
    yield from MESSAGE_SAMPLES.items()


@pytest.mark.parametrize(("name", "valid"), list(_samples()), ids=lambda v: str(v)[:20])
def test_fast_check_accepts_valid_samples_and_nothing_jsonschema_refuses(
    name: str, valid: Any
) -> None:
    check = schema._fast(name)
    assert check is not None, f"{name} should compile"
    assert _jsonschema_valid(name, valid)
    assert check(valid)
    tried = refused = 0
    for mutated in _mutations(valid):
        tried += 1
        if check(mutated):
            assert _jsonschema_valid(name, mutated), (name, mutated)
        else:
            refused += 1
    assert tried > 20 and refused > 10


def test_every_schema_compiles_or_is_left_to_jsonschema() -> None:
    names = [*MESSAGES, *(f"payload.{c}" for c in CATEGORIES)]
    compiled = {n for n in names if schema._fast(n) is not None}
    # The hot paths (enqueue, push, pull) must compile; oneOf ones fall back.
    assert {"event", "push-request", "push-response", "pull-response"} <= compiled
    assert {f"payload.{c}" for c in CATEGORIES} <= compiled
    assert "audit-witness" not in compiled  # oneOf: always jsonschema


KEYWORD_SCHEMAS: list[dict[str, Any]] = [
    {"type": "integer", "minimum": 0, "maximum": 255},
    {"type": ["string", "null"], "minLength": 1, "maxLength": 3},
    {"type": "number", "minimum": 1.5},
    {"enum": ["1", "2", 97]},
    {"const": "x"},
    {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
    {"type": "array", "uniqueItems": True},
    {"type": "object", "minProperties": 1, "propertyNames": {"pattern": "^[a-z]+$"}},
    {"type": "object", "additionalProperties": {"type": "integer"}},
    {"properties": {"a": {"type": "boolean"}}, "required": ["a"], "additionalProperties": False},
    {"anyOf": [{"type": "integer", "minimum": 10}, {"enum": [1]}]},
    {"allOf": [{"type": "string"}, {"pattern": "^A"}]},
    {"pattern": "^[0-9A-F]{2}$"},
    {"type": "string", "pattern": "^[0-9A-F]{2}$", "description": "a leaf"},
    {"type": "integer", "maximum": 10},
    {"minimum": 0},
    True,
    False,
]


@pytest.mark.parametrize("subschema", KEYWORD_SCHEMAS, ids=str)
def test_each_keyword_agrees_with_jsonschema(subschema: Any) -> None:
    check = checker(subschema, lambda _uri: None)
    assert check is not None
    full = Draft202012Validator(subschema)
    values = [*ODD_VALUES, "AB", "1F\n", [1, 1], [1, True], {"a": True}, {"a": 1}, 10, 11.0]
    for value in values:
        if check(value):
            assert full.is_valid(value), (subschema, value)


@pytest.mark.parametrize(
    "subschema",
    [
        {"oneOf": [{"type": "null"}]},
        {"patternProperties": {"^a": {}}},
        {"format": "date"},
        {"$ref": "sscard:exchange/unknown.json"},
        {"type": "array", "prefixItems": [{}]},
        {"enum": [1.5]},
    ],
    ids=str,
)
def test_unsupported_keywords_fall_back_to_jsonschema(subschema: Any) -> None:
    assert checker(subschema, lambda _uri: None) is None


def test_problems_are_the_same_as_before_for_invalid_events() -> None:
    bad = PAYLOADS["card.issued"] | {"card_serial": "0011", "pin": "123456"}
    problems = schema.payload_problems("card.issued", bad, localize=False)
    assert ("/card_serial", "does not match the pattern ^[0-9A-F]{16}$") in problems
    assert ("/pin", "unknown property (not allowed)") in problems
