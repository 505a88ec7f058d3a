"""What is computed from one JSON element, remembered by the element's JSON text (https://hl7.org/fhir/R4/json.html).

Wearable and ingest records repeat their code, category, subject, device and profile, so the index
rows (search/index.py), the `_content` words (search/full_text.py) and the validator's results
(profiles/valid_subtrees.py, profiles/operand_results.py) of such an element are computed once and
looked up by its JSON afterwards. `key_text` gives that JSON, or None for what must not be
remembered; `Table` holds the results, emptied when full.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson

MAX_BYTES = 2048  # a larger element is computed every time (seldom repeated, and costly to keep)

K = TypeVar("K")
V = TypeVar("V")


def key_text(value: Any) -> str | None:
    """`value`'s JSON as text, the key it is remembered by; None when it is not remembered.

    Not remembered: what is not JSON (a Decimal, an int beyond 64 bits), what holds a NaN or an
    infinity (orjson writes them as null, so a NaN and a null would share one key; any `null` in the
    text is refused, a string saying "null" included, which only costs a lookup), and what is larger
    than MAX_BYTES. Text rather than bytes: orjson's bytes keep a 4 KB buffer, a str is compact."""
    try:
        blob = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return None
    if len(blob) > MAX_BYTES:
        return None
    text = blob.decode()
    return None if "null" in text else text  # str's search: a third of the cost of bytes'


class Table(dict[K, V]):
    """A dict of remembered results, emptied when a new key would make it exceed `max_entries`."""

    __slots__ = ("max_entries",)

    def __init__(self, max_entries: int) -> None:
        super().__init__()
        self.max_entries = max_entries

    def put(self, key: K, value: V) -> V:
        if len(self) >= self.max_entries and key not in self:
            self.clear()
        self[key] = value
        return value
