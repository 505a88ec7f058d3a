"""String search values (https://hl7.org/fhir/R4/search.html#string).

By default a string matches, case- and accent-insensitively, any indexed string that starts with it;
`:contains` matches anywhere, `:exact` matches the whole value exactly. `normalize` is the folding
the index applies to `idx_string.norm` (docs/index-rows.md).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from fhir_server.search.values import unescape

MAX_LEN = 255
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class StringValue:
    """The literal text searched for and its normalised form."""

    text: str
    norm: str


def normalize(text: str) -> str:
    """NFKD, combining marks dropped, casefolded, whitespace runs folded to one space, stripped, cut."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACES.sub(" ", stripped.casefold()).strip()[:MAX_LEN]


def parse_string(text: str, param: str) -> StringValue:
    """Unescape a string value."""
    value = unescape(text, param)
    return StringValue(value, normalize(value))
