"""Full-text search: `_text` and `_content` (https://hl7.org/fhir/R4/search.html#text, #content).

Index rows (param_id, body): one per resource and parameter, `body` the resource's words as
`search/full_text.py` folds them (`_text`: the narrative; `_content`: every string and number).
The database indexes `body`: PostgreSQL a GIN index on the stored column `fts_vector` =
`to_tsvector('simple', body)`, SQLite an FTS5 table (store/tables.py POSTGRES_FULL_TEXT,
SQLITE_FULL_TEXT). A value is the query language of full_text.py, searched as
`to_tsquery('simple', ...)` or an FTS5 MATCH; both see the same words, so they find the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import Boolean, ColumnElement, column, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from fhir_server.search import full_text
from fhir_server.search.full_text import TextQuery
from fhir_server.search.types.base import DocumentFn, Parsing, RowSink, SearchType, SqlContext
from fhir_server.search.values import unescape

KIND = "text"


def _narrative(resource: dict[str, Any], param_id: int, sink: RowSink) -> None:
    body = full_text.document(full_text.narrative(resource))
    if body:
        sink[KIND].append((param_id, body))


def _content(resource: dict[str, Any], param_id: int, sink: RowSink) -> None:
    body = full_text.document_words(full_text.content_words(resource))
    if body:
        sink[KIND].append((param_id, body))


def documents(code: str) -> tuple[str | None, DocumentFn]:
    """`_text` rows need a `text` element; `_content` rows any resource."""
    return ("text", _narrative) if code == "_text" else (None, _content)


def parse_text(text: str, param: str) -> TextQuery:
    """One value of `_text` / `_content` (see search/full_text.py for the language)."""
    return full_text.parse(unescape(text, param), param)


class Matches(FunctionElement[bool]):
    """`body` of an idx_text row matches a query: its tsvector @@ to_tsquery, or the FTS5 table."""

    type = Boolean()
    name = "full_text_matches"
    inherit_cache = True


@compiles(Matches)
def _matches_postgres(element: Matches, compiler: Any, **kw: Any) -> str:
    body, pg_query, _ = element.clauses.clauses
    vector = compiler.process(column("fts_vector", _selectable=body.table), **kw)
    return f"{vector} @@ to_tsquery('simple'::regconfig, {compiler.process(pg_query, **kw)})"


@compiles(Matches, "sqlite")
def _matches_sqlite(element: Matches, compiler: Any, **kw: Any) -> str:
    body, _, fts_query = element.clauses.clauses
    row_id = compiler.process(column("id", _selectable=body.table), **kw)
    return (
        f"{row_id} IN (SELECT rowid FROM idx_text_fts WHERE idx_text_fts MATCH "
        f"{compiler.process(fts_query, **kw)})"
    )


def test(ctx: SqlContext, modifier: str | None, v: TextQuery, t: Any) -> ColumnElement[bool]:
    """One query against one idx_text row."""
    return Matches(t.c.body, literal(full_text.tsquery(v)), literal(full_text.fts5(v)))


def _parser(p: Parsing) -> Callable[[str], TextQuery]:
    return partial(parse_text, param=p.name)


TEXT = SearchType(
    KIND,
    frozenset({"missing"}),
    _parser,
    test=test,
    values=None,
    documents=documents,
)
