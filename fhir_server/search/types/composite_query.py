"""Composite search values `a$b` (https://hl7.org/fhir/R4/search.html#composite).

Each `$`-separated part is parsed by its component's type; a match needs all parts to match the same
repeating element (same `grp` in the index).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.search.values import fail, split


@dataclass(frozen=True)
class CompositeValue:
    """One parsed value per component, in component order."""

    parts: tuple[Any, ...]


def parse_composite(text: str, param: str, parsers: Sequence[Callable[[str], Any]]) -> CompositeValue:
    """Split on unescaped `$` and parse each part with its component's parser."""
    pieces = split(text, "$", param)
    if len(pieces) != len(parsers):
        fail(param, f"{text!r} needs {len(parsers)} parts separated by '$'")
    return CompositeValue(tuple(parse(piece) for parse, piece in zip(parsers, pieces, strict=True)))
