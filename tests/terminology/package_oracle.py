"""Expectations read straight from HL7's package (https://hl7.org/fhir/R4/codesystem.html#hierarchy), independently
of terminology/data, so the tests check the generated data and the expansion against the source."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from fhir_server import spec_package


@cache
def resource(name: str) -> dict[str, Any]:
    """The package file `<name>.json` (e.g. `CodeSystem-v3-RoleCode`)."""
    found = [r for p, r in spec_package.resources(name) if p.stem == name]
    assert found, name
    return found[0]


def _walk(concepts: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for c in concepts:
        yield c
        yield from _walk(c.get("concept", []))


def codes(name: str) -> list[str]:
    """Every code a CodeSystem defines, nested ones included, in document order."""
    return [c["code"] for c in _walk(resource(name).get("concept", []))]


def children(name: str) -> dict[str, set[str]]:
    """code -> direct children, from nesting and from `child` properties."""
    out: dict[str, set[str]] = {}

    def visit(concepts: list[dict[str, Any]]) -> None:
        for c in concepts:
            kids = out.setdefault(c["code"], set())
            kids.update(k["code"] for k in c.get("concept", []))
            kids.update(p["valueCode"] for p in c.get("property", []) if p["code"] == "child")
            visit(c.get("concept", []))

    visit(resource(name).get("concept", []))
    return out


def is_a(name: str, code: str) -> set[str]:
    """The code and everything below it."""
    kids = children(name)
    seen = {code}
    todo = [code]
    while todo:
        for k in kids.get(todo.pop(), ()):
            if k not in seen:
                seen.add(k)
                todo.append(k)
    return seen
