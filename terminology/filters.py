"""ValueSet.compose.include.filter over a shipped code system (https://hl7.org/fhir/R4/valueset-filter-operator.html).

Operators: `=`, `is-a`, `descendent-of`, `is-not-a`, `regex`, `in`, `not-in`, `generalizes`,
`exists` (https://hl7.org/fhir/R4/valueset-definitions.html#ValueSet.compose.include.filter.op).
The hierarchy operators take property `concept` (or `code`); `=` / `in` / `regex` compare the code
(`concept`, `code`), the `display`, the `parent` / `child` relation or any other concept property.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from fhir_server.errors import Invalid, Unprocessable

from .codesystems import CodeSystem, Concept

CODE_PROPERTIES = frozenset({"concept", "code"})
KNOWN_PROPERTIES = frozenset(
    {"display", "parent", "child", "notSelectable", "abstract", "status", "inactive"}
)
MAX_PATTERN = 1000


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return str(value.get("code", ""))
    return str(value)


def property_values(cs: CodeSystem, concept: Concept, prop: str) -> list[str]:
    """The values of a concept's property as text: its code, display, parents, children or a property."""
    if prop in CODE_PROPERTIES:
        return [concept.code]
    if prop == "display":
        return [concept.display]
    if prop == "parent":
        return list(concept.parents)
    if prop == "child":
        return list(cs.children.get(concept.code, ()))
    if prop in ("notSelectable", "abstract") and not concept.property_values(prop):
        return ["false"]
    return [_text(v) for v in concept.property_values(prop)]


def _hierarchy_root(cs: CodeSystem, f: Mapping[str, Any], value: str) -> str:
    if f.get("property") not in CODE_PROPERTIES:
        raise Unprocessable(
            f"Filter {f.get('property')} {f.get('op')} is only supported on property 'concept'",
            expression=str(f.get("property")),
        )
    concept = cs.find(value)
    if concept is None:
        raise Unprocessable(f"Filter value '{value}' is not a code of {cs.url}", expression=value)
    return concept.code


def _pattern(value: str) -> re.Pattern[str]:
    if len(value) > MAX_PATTERN:
        raise Invalid("The filter's regular expression is too long", expression=value[:50])
    try:
        return re.compile(value)
    except re.error as exc:
        raise Invalid(f"Filter regex '{value}' is not valid: {exc}", expression=value) from None


def _check_property(cs: CodeSystem, prop: str) -> None:
    """The property is one the server can read on the concepts of `cs` (not e.g. a code system's own filter)."""
    if prop in CODE_PROPERTIES or prop in KNOWN_PROPERTIES:
        return
    if not any(p.code == prop for c in cs.concepts.values() for p in c.properties):
        raise Unprocessable(
            f"Filter on property '{prop}' cannot be evaluated: no concept of {cs.url} has that property",
            expression=prop,
        )


def select(cs: CodeSystem, f: Mapping[str, Any]) -> set[str]:
    """Codes of `cs` that satisfy one filter (property, op, value)."""
    prop, op, value = str(f.get("property", "")), str(f.get("op", "")), str(f.get("value", ""))
    if op in ("=", "in", "not-in", "regex", "exists"):
        _check_property(cs, prop)
    everything: Iterable[Concept] = cs.concepts.values()
    match op:
        case "is-a":
            root = _hierarchy_root(cs, f, value)
            return {root, *cs.descendants(root)}
        case "descendent-of":
            return set(cs.descendants(_hierarchy_root(cs, f, value)))
        case "is-not-a":
            root = _hierarchy_root(cs, f, value)
            return set(cs.concepts) - {root, *cs.descendants(root)}
        case "generalizes":
            root = _hierarchy_root(cs, f, value)
            return {root, *cs.ancestors(root)}
        case "=":
            return {c.code for c in everything if value in property_values(cs, c, prop)}
        case "in" | "not-in":
            wanted = {v.strip() for v in value.split(",")}
            hits = {c.code for c in everything if wanted & set(property_values(cs, c, prop))}
            return hits if op == "in" else set(cs.concepts) - hits
        case "regex":
            pattern = _pattern(value)
            return {
                c.code for c in everything if any(pattern.fullmatch(v) for v in property_values(cs, c, prop))
            }
        case "exists":
            want = value.lower() != "false"
            return {c.code for c in everything if bool(property_values(cs, c, prop)) == want}
        case _:
            raise Unprocessable(f"Filter operator '{op}' is not supported", expression=op)
