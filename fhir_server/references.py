"""Walking and rewriting the References inside a resource (https://hl7.org/fhir/R4/references.html)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from .model import is_resource_type


def walk(node: Any, path: str, *, contained: bool = False) -> Iterator[tuple[dict[str, Any], str]]:
    """Yield (reference element, FHIRPath) for every element with a string `reference`."""
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node, path
        for key, value in node.items():
            if key == "reference" or (key == "contained" and not contained):
                continue
            if isinstance(value, (dict, list)):
                yield from walk(value, f"{path}.{key}", contained=contained)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from walk(item, f"{path}[{i}]", contained=contained)


def values(node: Any, out: list[str] | None = None) -> list[str]:
    """The `reference` strings `walk(node, ...)` yields (outside `contained`), in its order, without
    their paths: what a write checks for every resource it stores (`walk` gives the path of one
    that fails, see store/sql.py `_RefCheck`)."""
    if out is None:
        out = []
    if isinstance(node, dict):
        _dict_values(node, out)
    elif isinstance(node, list):
        _list_values(node, out)
    return out


# The members "reference", in compact JSON: inside a string every quote is escaped, so this finds
# members only; the byte after it tells a string (a quote) from an object or an array.
_MEMBER = b'"reference":'
_QUOTE, _OBJECT, _ARRAY = ord('"'), ord("{"), ord("[")
_STRING_ESCAPED = re.compile(rb'"((?:[^"\\]|\\.)*)"')  # a value holding escapes


def values_of_text(text: bytes, parsed: Any = None) -> list[str]:
    """The `reference` strings `values` finds in the resource `text` is the compact JSON of (as
    orjson writes it), in the order of the text: a few byte searches instead of a walk of every
    element (a write notes the references of everything it stores). The same strings as
    `values(orjson.loads(text))` (or of `parsed`, the resource `text` was made from, when given),
    which decides when the text holds `contained` resources (not walked) or a "reference" member
    that is an object or an array (nor is what it holds)."""
    if b'"contained":' in text:
        return values(orjson.loads(text) if parsed is None else parsed)
    out: list[str] = []
    find = text.find
    at = find(_MEMBER)
    while at >= 0:
        start = at + len(_MEMBER)
        kind = text[start]
        if kind == _QUOTE:
            end = find(b'"', start + 1)
            raw = text[start + 1 : end]
            if b"\\" in raw:  # the quote found may be escaped: the whole string, decoded by orjson
                found = _STRING_ESCAPED.match(text, start)
                assert found is not None  # orjson's text: every string is closed
                end = found.end() - 1
                out.append(orjson.loads(found.group(0)))
            else:
                out.append(raw.decode())
            start = end + 1
        elif kind in (_OBJECT, _ARRAY):
            return values(orjson.loads(text) if parsed is None else parsed)
        at = find(_MEMBER, start)
    return out


_PRIMITIVES = (str, int, float, bool)
_NOT_WALKED = frozenset(("reference", "contained"))


def _dict_values(node: dict[str, Any], out: list[str]) -> None:
    # Primitive values are passed over by their class first: most of a resource's values are.
    ref = node.get("reference")
    if isinstance(ref, str):
        out.append(ref)
    for key, value in node.items():
        cls = value.__class__
        if cls in _PRIMITIVES or key in _NOT_WALKED:
            continue
        if cls is dict or isinstance(value, dict):
            _dict_values(value, out)
        elif cls is list or isinstance(value, list):
            _list_values(value, out)


def _list_values(node: list[Any], out: list[str]) -> None:
    for item in node:
        cls = item.__class__
        if cls is dict or isinstance(item, dict):
            _dict_values(item, out)
        elif cls is list or isinstance(item, list):
            _list_values(item, out)


def local_target(reference: str, base: str = "") -> tuple[str, str] | None:
    """(type, id) when `reference` points to a resource on this server (relative, or under `base`)."""
    if base and reference.startswith(base + "/"):
        reference = reference[len(base) + 1 :]
    if reference.startswith("#") or ":" in reference.split("/", 1)[0]:
        return None
    parts = reference.split("?", 1)[0].split("/")
    if len(parts) in (2, 4) and is_resource_type(parts[0]) and parts[1]:
        if len(parts) == 4 and parts[2] != "_history":
            return None
        return parts[0], parts[1]
    return None


def rewrite(resource: dict[str, Any], replace: Callable[[str], str | None]) -> None:
    """Replace every Reference.reference in place; `replace(old)` gives the new value or None to keep it.

    Used to resolve the urn:uuid full URLs of a transaction (https://hl7.org/fhir/R4/bundle.html#references).
    """
    for element, _ in walk(resource, "", contained=True):
        new = replace(element["reference"])
        if new is not None:
            element["reference"] = new
