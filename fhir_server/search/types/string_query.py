"""String search values (https://hl7.org/fhir/R4/search.html#string).

By default a string matches, case- and accent-insensitively, any indexed string that starts with it;
`:contains` matches anywhere, `:exact` matches the whole value exactly. `normalize` is the folding
the index applies to `idx_string.norm` (docs/index-rows.md), shared with the indexer.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.search.types.string import MAX, normalize
from fhir_server.search.values import unescape

__all__ = ["MAX_LEN", "StringValue", "normalize", "parse_string"]

MAX_LEN = MAX


@dataclass(frozen=True)
class StringValue:
    """The literal text searched for and its normalised form."""

    text: str
    norm: str


def parse_string(text: str, param: str) -> StringValue:
    """Unescape a string value."""
    value = unescape(text, param)
    return StringValue(value, normalize(value))
