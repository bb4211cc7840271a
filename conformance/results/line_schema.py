"""The closed schema of results lines (``schema.json`` here) compiled into a fast checker.

``jsonschema`` takes about 0.4 ms to check one result line and 8 ms for one with 256 values,
so a full audit's 40,000 lines took over two minutes to read (against 2.5 s to parse them).
``compile_def`` turns the subset of JSON Schema (draft 2020-12) that ``schema.json``
uses into nested Python closures (about 2 s for those 40,000 lines), with the same verdict:
``type``, ``enum``, ``const``, ``properties``,
``required``, ``additionalProperties``, ``items``, ``anyOf``, ``$ref`` to ``#/$defs/...``,
``minimum`` and ``pattern``, each as jsonschema evaluates it (an integer-valued float is an
``integer``, a boolean is no number).  A keyword outside that subset is refused when the schema
is compiled, so the file cannot gain a rule that goes unchecked; and
``tests/test_report_hostile.py`` checks that the checker accepts and rejects exactly what
jsonschema does on more than a thousand forged lines.

A check returns ``None`` for a valid value, else the first ``Failure`` found (where, which
rule, and the subschema whose ``description`` says what was expected).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ANNOTATIONS = frozenset({"description", "examples", "title", "$comment", "default"})
SUPPORTED = frozenset({"type", "enum", "const", "properties", "required",
                       "additionalProperties", "items", "anyOf", "$ref", "minimum", "pattern"})


@dataclass(frozen=True)
class Failure:
    """Why a value is invalid: ``rule`` is ``required`` or ``unknown`` (with the key's
    ``name``), or ``invalid`` (``schema`` is the subschema it fails, ``instance`` the value)."""

    path: tuple[str | int, ...]
    rule: str
    schema: dict[str, Any]
    instance: Any
    name: str = ""

    def within(self, step: str | int) -> Failure:
        return Failure((step, *self.path), self.rule, self.schema, self.instance, self.name)


Check = Callable[[Any], "Failure | None"]


def compile_def(defs: dict[str, Any], name: str) -> Check:
    """The checker of ``defs[name]``; ``$ref`` s between definitions (recursive ones too) are
    resolved when first used."""
    return _Compiler(defs).definition(name)


class _Compiler:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.compiled: dict[str, Check] = {}

    def definition(self, ref: str) -> Check:
        if ref not in self.compiled:
            if ref not in self.defs:
                raise ValueError(f"results schema: $ref to unknown definition {ref!r}")
            body: list[Check] = []
            self.compiled[ref] = lambda value: body[0](value)  # set below; allows recursion
            body.append(self.node(self.defs[ref]))
        return self.compiled[ref]

    def node(self, schema: dict[str, Any]) -> Check:
        unknown = set(schema) - SUPPORTED - ANNOTATIONS
        if unknown:
            raise ValueError(f"results schema: keyword(s) {sorted(unknown)} are not "
                             "implemented by conformance/results/line_schema.py")
        checks: list[Check] = []
        if "$ref" in schema:
            prefix = "#/$defs/"
            if not schema["$ref"].startswith(prefix):
                raise ValueError(f"results schema: only {prefix}... references, not "
                                 f"{schema['$ref']}")
            checks.append(self.definition(schema["$ref"][len(prefix):]))
        if "type" in schema:
            checks.append(_type(schema))
        if "enum" in schema or "const" in schema:
            checks.append(_enum(schema))
        if "minimum" in schema:
            checks.append(_minimum(schema))
        if "pattern" in schema:
            checks.append(_pattern(schema))
        if "anyOf" in schema:
            checks.append(_any_of(schema, [self.node(s) for s in schema["anyOf"]]))
        if "items" in schema:
            numbers_pass = _accepts_every_number(schema["items"], self.defs)
            checks.append(_items(self.node(schema["items"]), numbers_pass))
        if {"properties", "required", "additionalProperties"} & set(schema):
            checks.append(self.object(schema))
        if len(checks) == 1:
            return checks[0]  # the common case, without a loop around it

        def check(value: Any) -> Failure | None:
            for one in checks:
                failure = one(value)
                if failure is not None:
                    return failure
            return None

        return check

    def object(self, schema: dict[str, Any]) -> Check:
        properties = {k: self.node(s) for k, s in schema.get("properties", {}).items()}
        required = list(schema.get("required", []))
        additional = schema.get("additionalProperties", True)
        if isinstance(additional, dict):
            other: Check | None = self.node(additional)
        elif additional is True or additional is False:
            other = None
        else:
            raise ValueError("results schema: additionalProperties is a schema or a boolean")

        def check(value: Any) -> Failure | None:
            if not isinstance(value, dict):
                return None
            for name in required:
                if name not in value:
                    return Failure((), "required", schema, value, name)
            for key, element in value.items():
                known = properties.get(key)
                if known is None and additional is False:
                    return Failure((), "unknown", schema, value, str(key))
                one = known or other
                failure = one(element) if one is not None else None
                if failure is not None:
                    return failure.within(key)
            return None

        return check


def _accepts_every_number(schema: dict[str, Any], defs: dict[str, Any],
                          seen: frozenset[str] = frozenset()) -> bool:
    """Whether ``schema`` holds for every int and float (not bool): then a list of numbers
    needs no element-by-element check (``values`` lists hold up to 256 of them)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen or not _accepts_every_number(defs[name], defs, seen | {name}):
            return False
    if "anyOf" in schema and not any(_accepts_every_number(s, defs, seen)
                                     for s in schema["anyOf"]):
        return False
    types = schema.get("type", "number")
    if "number" not in (types if isinstance(types, list) else [types]):
        return False
    return not ({"enum", "const", "minimum"} & set(schema))


# --- the keywords, as jsonschema's draft 2020-12 validator evaluates them --------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_TYPES: dict[str, Callable[[Any], bool]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": lambda v: _is_number(v) and (isinstance(v, int) or v.is_integer()),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _type(schema: dict[str, Any]) -> Check:
    names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    tests = [_TYPES[n] for n in names]
    if len(tests) == 1:
        (test,) = tests

        def check_one(value: Any) -> Failure | None:
            return None if test(value) else Failure((), "invalid", schema, value)

        return check_one

    def check(value: Any) -> Failure | None:
        return None if any(t(value) for t in tests) else Failure((), "invalid", schema, value)

    return check


def _enum(schema: dict[str, Any]) -> Check:
    choices = schema["enum"] if "enum" in schema else [schema["const"]]
    if not all(c is None or isinstance(c, str) for c in choices):
        raise ValueError("results schema: enum and const hold strings and null only here")
    allowed = frozenset(choices)

    def check(value: Any) -> Failure | None:
        ok = (value is None or isinstance(value, str)) and value in allowed
        return None if ok else Failure((), "invalid", schema, value)

    return check


def _minimum(schema: dict[str, Any]) -> Check:
    minimum = schema["minimum"]

    def check(value: Any) -> Failure | None:
        too_small = _is_number(value) and value < minimum
        return Failure((), "invalid", schema, value) if too_small else None

    return check


def _pattern(schema: dict[str, Any]) -> Check:
    pattern = re.compile(schema["pattern"])

    def check(value: Any) -> Failure | None:
        bad = isinstance(value, str) and pattern.search(value) is None
        return Failure((), "invalid", schema, value) if bad else None

    return check


def _any_of(schema: dict[str, Any], branches: list[Check]) -> Check:
    def check(value: Any) -> Failure | None:
        for branch in branches:
            if branch(value) is None:
                return None
        return Failure((), "invalid", schema, value)  # the anyOf's own description explains

    return check


def _items(item: Check, numbers_pass: bool) -> Check:
    def check(value: Any) -> Failure | None:
        if isinstance(value, list):
            if numbers_pass and {type(v) for v in value} <= {float, int}:
                return None
            for index, element in enumerate(value):
                failure = item(element)
                if failure is not None:
                    return failure.within(index)
        return None

    return check
