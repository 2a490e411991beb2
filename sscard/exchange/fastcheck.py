"""A fast "certainly valid" check for the exchange schemas, compiled to plain Python.

The full validator (:mod:`jsonschema`) costs 75 µs or more per event: more than
the rest of an enqueue or a push together. Nearly every event is valid, so
:func:`checker` compiles a schema into a closure that answers one question,
"is this instance valid?", and :mod:`sscard.exchange.schema` asks jsonschema
only when the answer is not a sure yes (to name each failing path).

The check is **conservative**: ``True`` only when jsonschema would find no
error; ``False`` means "not sure" and the caller falls back to jsonschema,
whose verdict stands. A schema with a keyword outside the subset below (or a
keyword whose exact semantics are awkward to copy, such as ``oneOf``) gets no
checker (None): it is always validated by jsonschema. Each keyword applies to
the same instance types as in JSON Schema 2020-12, with Python's ``re.search``
for ``pattern`` as jsonschema does; an integer-valued float or a number type
other than ``int``/``float`` is answered "not sure".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "examples", "default", "deprecated"}
)
_TYPES: dict[str, Check] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "integer": lambda x: type(x) is int,  # a float 1.0 is an integer too: "not sure"
    "number": lambda x: type(x) in (int, float),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
}


class _Unsupported(Exception):
    """The schema uses something this compiler does not copy exactly."""


def _num(x: Any) -> bool | None:
    """True: a JSON number; False: not a number (the keyword does not apply); None: unsure."""
    if type(x) in (int, float):
        return True
    if isinstance(x, bool | str | dict | list) or x is None:
        return False
    return None


def checker(schema: Any, resolve: Callable[[str], Check | None]) -> Check | None:
    """Compile ``schema``; None when it uses a keyword outside the supported subset.

    ``resolve(uri)`` returns the checker of the schema with that ``$id`` (None:
    unknown or unsupported), for ``$ref``.
    """
    try:
        return _compile(schema, resolve)
    except _Unsupported:
        return None


def _compile(schema: Any, resolve: Callable[[str], Check | None]) -> Check:
    if schema is True:
        return lambda _x: True
    if schema is False:
        return lambda _x: False
    if not isinstance(schema, Mapping):
        raise _Unsupported("not a schema")
    leaf = _leaf(schema)
    if leaf is not None:
        return leaf
    checks: list[Check] = []
    for key, value in schema.items():
        if key in _ANNOTATIONS or key in _OBJECT_KEYWORDS:
            continue
        if key == "type":
            names = [value] if isinstance(value, str) else list(value)
            if not names or any(n not in _TYPES for n in names):
                raise _Unsupported(key)
            tests = [_TYPES[n] for n in names]
            checks.append(tests[0] if len(tests) == 1 else _any(tests))
        elif key == "pattern":
            checks.append(_pattern(re.compile(value)))
        elif key in ("minLength", "maxLength"):
            checks.append(_bound(key, int(value), str, len))
        elif key in ("minItems", "maxItems"):
            checks.append(_bound(key, int(value), list, len))
        elif key in ("minProperties", "maxProperties"):
            checks.append(_bound(key, int(value), dict, len))
        elif key in ("minimum", "maximum"):
            checks.append(_number_bound(key, value))
        elif key == "enum":
            checks.append(_enum(list(value)))
        elif key == "const":
            checks.append(_enum([value]))
        elif key == "items":
            checks.append(_items(_compile(value, resolve)))
        elif key == "uniqueItems":
            if value:
                checks.append(_unique)
        elif key in ("allOf", "anyOf"):
            subs = [_compile(s, resolve) for s in value]
            checks.append(_all(subs) if key == "allOf" else _any(subs))
        elif key == "$ref":
            target = resolve(str(value))
            if target is None:
                raise _Unsupported(key)
            checks.append(target)
        else:
            raise _Unsupported(key)
    if any(k in schema for k in _OBJECT_KEYWORDS):
        checks.append(_object(schema, resolve))
    return _all(checks)


def _leaf(schema: Mapping[str, Any]) -> Check | None:
    """One closure for the commonest leaves: a string with a pattern, a bounded integer."""
    keys = {k for k in schema if k not in _ANNOTATIONS}
    kind = schema.get("type")
    if kind == "string" and keys == {"type", "pattern"}:
        search = re.compile(schema["pattern"]).search
        return lambda x: isinstance(x, str) and search(x) is not None
    low, high = schema.get("minimum"), schema.get("maximum")
    if (
        kind == "integer"
        and keys <= {"type", "minimum", "maximum"}
        and all(type(b) in (int, float) for b in (low, high) if b is not None)
    ):
        low = float("-inf") if low is None else low
        high = float("inf") if high is None else high
        return lambda x: type(x) is int and low <= x <= high
    return None


_OBJECT_KEYWORDS = frozenset({"properties", "required", "additionalProperties", "propertyNames"})


def _all(checks: list[Check]) -> Check:
    if not checks:
        return lambda _x: True
    if len(checks) == 1:
        return checks[0]

    def check(x: Any) -> bool:
        for c in checks:  # noqa: SIM110 (a loop: no generator per call, this is the hot path)
            if not c(x):
                return False
        return True

    return check


def _any(checks: list[Check]) -> Check:
    def check(x: Any) -> bool:
        for c in checks:  # noqa: SIM110 (as in _all)
            if c(x):
                return True
        return False

    return check


def _items(sub: Check) -> Check:
    def check(x: Any) -> bool:
        if isinstance(x, list):
            for item in x:
                if not sub(item):
                    return False
        return True

    return check


def _object(schema: Mapping[str, Any], resolve: Callable[[str], Check | None]) -> Check:
    """``properties``, ``required``, ``additionalProperties`` and ``propertyNames`` in one pass."""
    props = {str(k): _compile(v, resolve) for k, v in schema.get("properties", {}).items()}
    required = [str(k) for k in schema.get("required", [])]
    extra = schema.get("additionalProperties", True)
    refuse_extra = extra is False
    extra_check = None if isinstance(extra, bool) else _compile(extra, resolve)
    names = schema.get("propertyNames")
    name_check = None if names is None else _compile(names, resolve)

    def check(x: Any) -> bool:
        if not isinstance(x, dict):
            return True
        for k in required:
            if k not in x:
                return False
        for k, v in x.items():
            sub = props.get(k)
            if sub is not None:
                if not sub(v):
                    return False
            elif refuse_extra or (extra_check is not None and not extra_check(v)):
                return False
            if name_check is not None and not name_check(k):
                return False
        return True

    return check


def _pattern(compiled: re.Pattern[str]) -> Check:
    search = compiled.search
    return lambda x: not isinstance(x, str) or search(x) is not None


def _bound(key: str, limit: int, kind: type, size: Callable[[Any], int]) -> Check:
    if key.startswith("min"):
        return lambda x: not isinstance(x, kind) or size(x) >= limit
    return lambda x: not isinstance(x, kind) or size(x) <= limit


def _number_bound(key: str, limit: Any) -> Check:
    if type(limit) not in (int, float):
        raise _Unsupported(key)

    def check(x: Any) -> bool:
        kind = _num(x)
        if kind is None:
            return False
        if not kind:
            return True
        return bool(x >= limit) if key == "minimum" else bool(x <= limit)

    return check


def _enum(values: list[Any]) -> Check:
    """Strings and integers only, compared with their type (jsonschema: ``1 == 1.0``: unsure)."""
    if any(type(v) not in (str, int) for v in values):
        raise _Unsupported("enum")
    allowed = {(type(v), v) for v in values}
    return lambda x: type(x) in (str, int) and (type(x), x) in allowed


def _unique(x: Any) -> bool:
    if not isinstance(x, list):
        return True
    if not all(type(i) is str for i in x):
        return False  # jsonschema's equality of other items: not copied
    return len(set(x)) == len(x)
