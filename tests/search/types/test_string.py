"""String index values (https://hl7.org/fhir/R4/search.html#string)."""

from __future__ import annotations

import unicodedata
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fhir_server.search.types import RowSink, string


def index(elements: list[Any], fhir_type: str) -> list[tuple[Any, ...]]:
    sink: RowSink = {"string": []}
    string.values(elements, fhir_type, 7, 0, sink)
    return sink["string"]


def test_normalize_drops_accents_case_and_extra_whitespace() -> None:
    assert string.normalize("  Éloïse\t DU  Pont ") == "eloise du pont"


def test_normalize_casefolds_beyond_lower() -> None:
    assert string.normalize("Straße") == "strasse"


def test_normalize_cuts_to_255() -> None:
    assert len(string.normalize("a" * 300)) == 255


@given(st.text())
def test_normalize_is_idempotent_and_folded(text: str) -> None:
    norm = string.normalize(text)
    assert len(norm) <= 255
    assert norm == norm.strip() and "  " not in norm
    assert not any(unicodedata.combining(c) for c in norm)
    assert string.normalize(norm) == norm or len(norm) == 255


def test_plain_string_gives_norm_and_exact() -> None:
    assert index(["Ab  C"], "string") == [(7, 0, "ab c", "Ab  C")]


def test_human_name_gives_each_part() -> None:
    name = {
        "family": "Doe",
        "given": ["John", "Q"],
        "prefix": ["Dr"],
        "suffix": ["Jr"],
        "text": "Dr John Q Doe Jr",
    }
    assert [r[3] for r in index([name], "HumanName")] == ["Doe", "John", "Q", "Dr", "Jr", "Dr John Q Doe Jr"]


def test_address_gives_each_part() -> None:
    address = {
        "line": ["1 Main St", "Apt 2"],
        "city": "Springfield",
        "district": "D",
        "state": "IL",
        "postalCode": "62701",
        "country": "US",
        "text": "t",
        "use": "home",
    }
    assert [r[3] for r in index([address], "Address")] == [
        "1 Main St",
        "Apt 2",
        "Springfield",
        "D",
        "IL",
        "62701",
        "US",
        "t",
    ]


def test_untyped_dict_is_told_apart_by_its_elements() -> None:
    assert [r[3] for r in index([{"city": "X"}, {"family": "Y"}], "*")] == ["X", "Y"]


def test_blank_strings_are_not_indexed() -> None:
    assert index(["   ", ""], "string") == []


def test_exact_is_cut_to_255() -> None:
    (row,) = index(["x" * 400], "string")
    assert len(row[3]) == 255
