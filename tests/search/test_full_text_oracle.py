"""`_text` / `_content` SQL results equal a plain-Python matcher, on SQLite (FTS5) and PostgreSQL (tsvector).

Hypothesis draws narratives and notes from a vocabulary chosen to hit the folding rules (case,
accents, ß, Cherokee, CJK, digits, underscores, fractions, tags and entities) plus free text, stores
them through the store's write path (creates, then updates and deletes), and draws queries: words,
prefixes, phrases, OR, comma-separated values and repeated parameters. The database must return
exactly the resources `full_text.matches` accepts (https://hl7.org/fhir/R4/search.html#text).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete

from fhir_server.errors import Invalid
from fhir_server.interactions.search import type_and_id
from fhir_server.search import full_text, plan
from fhir_server.search.query import Filter, SearchQuery, parse
from fhir_server.store import tables
from fhir_server.store.sql import Store
from tests.search.test_plan import BACKENDS, make_engine

ORACLE = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
VOCABULARY = [
    "fever",
    "Fever",
    "FÈVER",
    "fevers",
    "chills",
    "heart",
    "rate",
    "heart-rate",
    "Straße",
    "strasse",
    "naïve",
    "ᏸᏹ",
    "Ꮳ",
    "日本語",
    "x1",
    "1.5",
    "½",
    "a_b",
    "o'brien",
    "42",
]
# Control characters never reach the store (validation refuses them; PostgreSQL refuses NUL).
PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs"))
SEPARATORS = [" ", ", ", "\n", " <b>", "</b> ", " &amp; ", "&lt;", " <br/> ", "-", "."]


@pytest.fixture(scope="module", params=BACKENDS)
def db(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield from make_engine(request.param)


@st.composite
def prose(draw: st.DrawFn) -> str:
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        parts.append(draw(st.sampled_from(VOCABULARY) | st.text(PRINTABLE, max_size=6)))
        parts.append(draw(st.sampled_from(SEPARATORS)))
    return "".join(parts)


@st.composite
def observation(draw: st.DrawFn, n: int) -> dict[str, Any]:
    obs: dict[str, Any] = {"resourceType": "Observation", "id": f"o{n}", "status": "final", "code": {}}
    if draw(st.booleans()):
        div = draw(prose()).replace("<", "").replace(">", "") if draw(st.booleans()) else draw(prose())
        obs["text"] = {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{div}</div>'}
    if draw(st.booleans()):
        obs["code"] = {"text": draw(prose())}
    if draw(st.booleans()):
        obs["note"] = [{"text": draw(prose())} for _ in range(draw(st.integers(1, 2)))]
    return obs


@st.composite
def term(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(VOCABULARY))
    kind = draw(st.sampled_from(["word", "prefix", "phrase", "free"]))
    if kind == "prefix":
        return word[: draw(st.integers(1, max(1, len(word))))] + "*"
    if kind == "phrase":
        return '"' + word + " " + draw(st.sampled_from(VOCABULARY)) + '"' + draw(st.sampled_from(["", "*"]))
    if kind == "free":
        return draw(st.text(PRINTABLE, max_size=5))
    return word


@st.composite
def value(draw: st.DrawFn) -> str:
    terms = draw(st.lists(term(), min_size=1, max_size=3))
    glue = draw(st.lists(st.sampled_from([" ", " OR "]), min_size=len(terms), max_size=len(terms)))
    text = "".join(g + t for g, t in zip(glue, terms, strict=True)).strip()
    return text.replace("\\", "").replace(",", " ").replace("$", " ").replace("|", " ")


@st.composite
def criteria(draw: st.DrawFn) -> list[tuple[str, str]]:
    out = []
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from(["_text", "_content"]))
        out.append((name, ",".join(draw(st.lists(value(), min_size=1, max_size=2)))))
    return out


def _document(resource: dict[str, Any], code: str) -> str:
    if code == "_text":
        return full_text.document(full_text.narrative(resource))
    return full_text.document(full_text.content(resource))


def oracle(current: dict[str, dict[str, Any]], query: SearchQuery) -> set[str]:
    found = set()
    for rid, resource in current.items():
        ok = True
        for c in query.criteria:
            assert isinstance(c, Filter)
            doc = _document(resource, c.param.code)
            ok = ok and any(full_text.matches(v, doc) for v in c.values if isinstance(v, full_text.TextQuery))
        if ok:
            found.add(rid)
    return found


@ORACLE
@given(
    first=st.lists(st.integers(), min_size=1, max_size=8).flatmap(
        lambda xs: st.tuples(*(observation(n) for n in range(len(xs))))
    ),
    changes=st.lists(st.tuples(st.integers(0, 7), st.booleans()), max_size=4),
    replacement=observation(0),
    searches=st.lists(criteria(), min_size=4, max_size=8),
)
def test_full_text_equals_the_oracle(
    db: Engine,
    first: tuple[dict[str, Any], ...],
    changes: list[tuple[int, bool]],
    replacement: dict[str, Any],
    searches: list[list[tuple[str, str]]],
) -> None:
    with db.begin() as conn:
        for table in reversed(tables.metadata.sorted_tables):
            conn.execute(delete(table))
    store = Store(db, check_references=False)
    current = {r["id"]: r for r in first}
    with store.write() as tx:
        for resource in first:
            tx.create(resource, resource["id"])
    for n, drop in changes:  # updates and deletes must leave the index right
        rid = f"o{n}"
        if rid not in current:
            continue
        with store.write() as tx:
            prev = tx.current("Observation", rid)
            assert prev is not None
            if drop:
                tx.delete(prev)
                del current[rid]
            else:
                current[rid] = {**replacement, "id": rid}
                tx.update(prev, current[rid])
    with store.read() as tx:
        for pairs in searches:
            try:
                query = parse("Observation", [*pairs, ("_count", "1000")], lenient=False)
            except Invalid:
                continue
            got = {type_and_id(row.content)[1] for row in tx.run_search(plan.build(query))}
            expected = oracle(current, query)
            event(f"matches: {min(len(expected), 2)}")
            assert got == expected, pairs
            assert tx.run_search(plan.count(query)).scalar_one() == len(got)
