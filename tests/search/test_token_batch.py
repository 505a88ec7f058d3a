"""The batched token lookup sends its codes as one text[] literal (fhir_server/search/token_batch.py)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_server.search.token_batch import array_literal
from tests.conftest import PG_ADMIN


@pytest.fixture(scope="module")
def pg() -> Iterator[psycopg.Connection[tuple[str, ...]]]:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        yield conn


_CODES = st.lists(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
)


@settings(max_examples=300, deadline=None)
@given(codes=_CODES)
def test_postgresql_reads_the_literal_back_as_the_same_codes(
    pg: psycopg.Connection[tuple[str, ...]], codes: list[str]
) -> None:
    """Quotes, backslashes, braces, commas, spaces, NULL-looking and empty codes all survive."""
    row = pg.execute("SELECT CAST(%s AS text[])", (array_literal(codes),)).fetchone()
    assert row is not None and row[0] == codes


def test_the_awkward_codes_survive(pg: psycopg.Connection[tuple[str, ...]]) -> None:
    codes = ["", "NULL", "a,b", "{x}", 'say "hi"', "back\\slash", " padded ", "é"]
    row = pg.execute("SELECT CAST(%s AS text[])", (array_literal(codes),)).fetchone()
    assert row is not None and row[0] == codes
