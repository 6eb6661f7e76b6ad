"""JSON Schema -> a small valid instance, filled from the prompt so tests can assert on it.

Real models read the prompt to fill tool arguments; the fake does the same, crudely but
deterministically: numeric fields take the numbers of the last user message in order
("What is 3 + 4" -> ``{"a": 3, "b": 4}``), string fields take its quoted phrases in order, then the
whole message. Everything else is the smallest value the schema allows (only required
properties, ``enum``'s first value, one array item, bounds respected).

``strict_schema_problem`` checks OpenAI's Structured Outputs rules, so a client that sends a
non-strict schema with ``strict: true`` gets the same 400 the real API gives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PromptHints", "schema_instance", "strict_schema_problem"]

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?!\w|\.\d)")
_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"|\u201c([^\u201d]+)\u201d")
_FORMAT_EXAMPLES = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "hostname": "example.com",
}


@dataclass
class PromptHints:
    """Values taken from the prompt, consumed in order while an instance is built."""

    text: str
    numbers: list[float] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)

    @classmethod
    def from_text(cls, text: str) -> PromptHints:
        numbers = [float(match) for match in _NUMBER.findall(text)]
        phrases = [next(group for group in match if group) for match in _QUOTED.findall(text)]
        return cls(text=text, numbers=numbers, phrases=phrases)

    def next_number(self) -> float | None:
        return self.numbers.pop(0) if self.numbers else None

    def next_string(self) -> str:
        if self.phrases:
            return self.phrases.pop(0)
        return self.text or "text"


def schema_instance(schema: dict[str, Any], hints: PromptHints, *, strict: bool = False) -> Any:
    """A value valid for ``schema``; with ``strict`` every property is filled, as OpenAI does."""
    return _Builder(root=schema, hints=hints, strict=strict).build(schema, depth=0)


@dataclass
class _Builder:
    root: dict[str, Any]
    hints: PromptHints
    strict: bool

    def build(self, schema: Any, depth: int) -> Any:
        if depth > 32:
            raise ValueError("schema nests deeper than 32 levels (recursive $ref?)")
        if schema is True or schema == {}:
            return self.hints.next_string()
        if not isinstance(schema, dict):
            raise ValueError(f"schema must be an object, got {schema!r}")
        if "$ref" in schema:
            return self.build(self._resolve(schema["$ref"]), depth + 1)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                branches = [b for b in schema[key] if not _is_null_schema(b)]
                return self.build(branches[0], depth + 1) if branches else None
        if "allOf" in schema:
            return self.build(_merge_all_of(schema, self), depth + 1)
        kind = _schema_type(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind in ("integer", "number"):
            return _number_within(self.hints.next_number(), schema, integer=kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(schema)

    def _resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref are supported, got {ref!r}")
        target: Any = self.root
        for part in ref[2:].split("/"):
            if not isinstance(target, dict) or part not in target:
                raise ValueError(f"$ref {ref!r} points nowhere")
            target = target[part]
        return target

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties", {})
        wanted = list(properties) if self.strict else list(schema.get("required", []))
        return {name: self.build(properties.get(name, {}), depth + 1) for name in wanted}

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        count = max(int(schema.get("minItems", 0)), 1)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [self.build(schema.get("items", {}), depth + 1) for _ in range(count)]

    def _string(self, schema: dict[str, Any]) -> str:
        value = _FORMAT_EXAMPLES.get(schema.get("format", ""), None) or self.hints.next_string()
        if "maxLength" in schema:
            value = value[: int(schema["maxLength"])]
        return value.ljust(int(schema.get("minLength", 0)), "x")


def _schema_type(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        return kinds[0] if kinds else "null"
    if kind is None and "properties" in schema:
        return "object"
    if kind is None and "items" in schema:
        return "array"
    return kind


def _is_null_schema(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _merge_all_of(schema: dict[str, Any], builder: _Builder) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        part = builder._resolve(part["$ref"]) if "$ref" in part else part
        for key, value in part.items():
            if key == "properties":
                merged.setdefault("properties", {}).update(value)
            elif key == "required":
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _number_within(hint: float | None, schema: dict[str, Any], *, integer: bool) -> int | float:
    """The hint if the bounds allow it, else the smallest allowed value (0 if unbounded)."""
    low, high = schema.get("minimum"), schema.get("maximum")
    low_open, high_open = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    # draft 4 spells exclusivity as booleans next to minimum/maximum
    if low_open is True:
        low_open, low = low, None
    if high_open is True:
        high_open, high = high, None
    step = 1 if integer else 0.5

    def allowed(value: float) -> bool:
        return (
            (low is None or value >= low)
            and (high is None or value <= high)
            and (low_open in (None, False) or value > low_open)
            and (high_open in (None, False) or value < high_open)
        )

    candidates = [hint] if hint is not None and (not integer or float(hint).is_integer()) else []
    candidates.append(0)
    if low is not None:
        candidates.append(low)
    if low_open not in (None, False):
        candidates.append(low_open + step)
    if high is not None:
        candidates.append(high)
    if high_open not in (None, False):
        candidates.append(high_open - step)
    for value in candidates:
        if allowed(value):
            return int(value) if integer else float(value)
    raise ValueError(f"no value satisfies the numeric bounds of {schema!r}")


def strict_schema_problem(schema: Any, path: tuple[str, ...] = ()) -> str | None:
    """Why ``schema`` breaks OpenAI's strict-mode rules (None if it follows them)."""
    if not isinstance(schema, dict):
        return None
    if _schema_type(schema) == "object":
        if schema.get("additionalProperties") is not False:
            return (
                f"In context={path}, 'additionalProperties' is required to be supplied "
                "and to be false."
            )
        properties = schema.get("properties", {})
        missing = [name for name in properties if name not in schema.get("required", [])]
        if missing:
            return (
                f"In context={path}, 'required' is required to be supplied and to be an array "
                f"including every key in properties. Missing '{missing[0]}'."
            )
    for key in ("properties", "$defs", "definitions"):
        for name, sub in schema.get(key, {}).items():
            if problem := strict_schema_problem(sub, (*path, key, name)):
                return problem
    for key in ("anyOf", "allOf", "oneOf"):
        for index, sub in enumerate(schema.get(key, [])):
            if problem := strict_schema_problem(sub, (*path, key, str(index))):
                return problem
    if "items" in schema:
        return strict_schema_problem(schema["items"], (*path, "items"))
    return None
