"""The batched token lookup sends its codes as one text[] literal (fhir_server/search/token_batch.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Select

from fhir_server.search.token_batch import array_literal
from tests.conftest import PG_ADMIN


def _explain(conn: Connection, stmt: Select[Any], options: str = "") -> str:
    """The plan of `stmt` as it runs: compiled with its bound parameters, not literal ones (a literal
    array is a constant to the planner whatever the bind would have been)."""
    compiled = stmt.compile(conn)
    sql = f"EXPLAIN {options} {compiled}"
    return "\n".join(row[0] for row in conn.exec_driver_sql(sql, compiled.params))


@pytest.fixture
def pg_engine() -> Iterator[Any]:
    from fhir_server.store.engine import make_engine
    from fhir_server.store.migrate import upgrade
    from tests.conftest import _pg_database

    databases = _pg_database("planner")
    engine = make_engine(next(databases))
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        for _ in databases:
            pass


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


def test_the_codes_reach_the_planner_as_one_constant_array(pg_engine: Any) -> None:
    """Bound, the codes are one array constant, which `= ANY` hashes. Bound as a string and CAST
    (fails on the code before this test: `(('{...}'::character varying)::character varying[])`), the
    array stayed an expression (array_in is STABLE) and each row of the parameter was compared with
    every code in turn: 137 ms instead of 1.5 ms for 500 codes against 4,000 rows."""
    from fhir_server.search.parameters import param_id
    from fhir_server.search.token_batch import statement

    codes = [f"id-{i}" for i in range(500)] + ["it's", 'a "b"']
    lookup = statement("Observation", [param_id("Observation", "identifier")], codes, None, postgres=True)
    with pg_engine.connect() as conn:
        plan = _explain(conn, lookup, "(VERBOSE)")
        assert re.search(r"= ANY \('\{[^\n]*\}'::(character varying|text)\[\]\)", plan), plan
        assert conn.execute(lookup).fetchall() == []


def test_a_thousand_identifiers_are_looked_up_by_index_in_a_large_store_whatever_analyze_guessed(
    pg_engine: Any,
) -> None:
    """ANALYZE guesses the distinct codes of idx_token from a sample: with many repeated codes and a
    long tail of identifiers it guessed 6,941 of 1,001,018 in a million-record store, and the lookup of
    1,000 identifiers became a parallel hash join over every resource (0.8 s per 1,000 records on a
    resend). The schema tells the planner (store/tables.py `POSTGRES_COLUMN_STATISTICS`): the lookup
    walks the code index and fetches each resource by its key. Fails without the setting."""
    from sqlalchemy import text

    from fhir_server.search.parameters import param_id
    from fhir_server.search.token_batch import statement

    identifier = param_id("Observation", "identifier")
    with pg_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO resource (pk, res_type, res_id, version, last_updated, deleted, content) "
                "SELECT g, 'Observation', 'o' || g, 1, 0, false, '\\x7b7d' FROM generate_series(1, 400000) g"
            )
        )
        conn.execute(  # one identifier per resource, and four common codes of another parameter
            text(
                "INSERT INTO idx_token (resource_pk, param_id, grp, system, code) "
                "SELECT g, :p, 0, 'urn:s', md5(g::text) FROM generate_series(1, 400000) g "
                "UNION ALL SELECT g, 8, 0, 'urn:c', (g % 5)::text "
                "FROM generate_series(1, 400000) g, generate_series(1, 4) k"
            ),
            {"p": identifier},
        )
        conn.execute(text("ANALYZE idx_token"))
        conn.execute(text("ANALYZE resource"))
        codes = [
            row[0] for row in conn.execute(text("SELECT md5(g::text) FROM generate_series(1, 400000, 400) g"))
        ]
        lookup = statement("Observation", [identifier], codes, None, postgres=True)
        plan = _explain(conn, lookup)
        assert "Hash Join" not in plan and "Seq Scan on resource" not in plan, plan
        assert len(conn.execute(lookup).fetchall()) == len(codes)
