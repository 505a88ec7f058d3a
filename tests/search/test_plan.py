"""Planning searches as SQL over hand-written index rows (https://hl7.org/fhir/R4/search.html), on SQLite and PostgreSQL.

The rows follow docs/index-rows.md, so these tests do not depend on the indexer.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, create_engine, delete, insert, text

from fhir_server.errors import Invalid
from fhir_server.search import parameters, plan
from fhir_server.search.query import SearchQuery, parse
from fhir_server.search.types.date import search_range
from fhir_server.search.types.string import normalize
from fhir_server.store import tables

PG_ADMIN = os.environ.get("FHIR_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = [b for b in os.environ.get("FHIR_TEST_BACKENDS", "sqlite,postgres").split(",") if b]
BASE = "http://server.example/fhir"
UCUM = "http://unitsofmeasure.org"
MIN, MAX = -(2**62), 2**62


def make_engine(backend: str) -> Iterator[Engine]:
    """An engine on a fresh database with the store tables: SQLite in memory, or an own PostgreSQL database."""
    if backend == "sqlite":
        eng = create_engine("sqlite://")
        tables.metadata.create_all(eng)
        yield eng
        eng.dispose()
        return
    name = f"plan_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    eng = create_engine(url)
    try:
        tables.metadata.create_all(eng)
        yield eng
    finally:
        eng.dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=BACKENDS)
def db(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield from make_engine(request.param)


@pytest.fixture
def conn(db: Engine) -> Iterator[Connection]:
    with db.begin() as c:
        for table in reversed(tables.metadata.sorted_tables):
            c.execute(delete(table))
    with db.connect() as c:
        yield c
        c.rollback()


# ---- index rows per docs/index-rows.md


def pid(rtype: str, code: str) -> int:
    return parameters.param_id(rtype, code)


def string(code: str, value: str, grp: int = 0) -> tuple[str, str, dict[str, Any]]:
    return ("string", code, {"norm": normalize(value), "exact": value[:255], "grp": grp})


def token(
    code: str, system: str | None, value: str | None, display: str | None = None, grp: int = 0
) -> tuple:
    return ("token", code, {"system": system, "code": value, "display": display, "grp": grp})


def ref(code: str, target: str | None, url: str | None = None) -> tuple:
    rtype, _, rid = (target or "").partition("/")
    return ("reference", code, {"target_type": rtype or None, "target_id": rid or None, "url": url, "grp": 0})


def date(code: str, start: str | None, end: str | None = "same", grp: int = 0) -> tuple:
    low = search_range(start, "t")[0] if start else MIN
    end = start if end == "same" else end
    high = search_range(end, "t")[1] if end else MAX
    return ("date", code, {"low": low, "high": high, "grp": grp})


def number(code: str, value: float) -> tuple:
    return ("number", code, {"value": value, "grp": 0})


def quantity(code: str, value: float, system: str | None, unit_code: str | None, **extra: Any) -> tuple:
    row = {"value": value, "system": system, "code": unit_code, "unit": extra.pop("unit", None), "grp": 0}
    row.update({"canon_value": None, "canon_code": None, **extra})
    return ("quantity", code, row)


def uri(code: str, value: str) -> tuple:
    return ("uri", code, {"uri": value, "grp": 0})


def put(
    c: Connection,
    rtype: str,
    rid: str,
    *rows: tuple,
    last_updated: int = 0,
    deleted: bool = False,
) -> int:
    content = b"" if deleted else json.dumps({"resourceType": rtype, "id": rid}).encode()
    values = dict(
        res_type=rtype, res_id=rid, version=1, last_updated=last_updated, deleted=deleted, content=content
    )
    inserted = c.execute(insert(tables.resource).values(**values)).inserted_primary_key
    assert inserted is not None
    pk = inserted[0]
    if not deleted:
        for kind, code, row in rows:
            c.execute(
                insert(tables.INDEX_TABLES[kind]).values(resource_pk=pk, param_id=pid(rtype, code), **row)
            )
    return int(pk)


def ids(c: Connection, rtype: str | None, *pairs: tuple[str, str], **options: Any) -> list[str]:
    query = parse(rtype, list(pairs), lenient=False, now_us=search_range("2024-01-01", "t")[0])
    return run(c, query, **options)


def run(c: Connection, query: SearchQuery, **options: Any) -> list[str]:
    rows = c.execute(plan.build(query, **options)).all()
    got = [json.loads(r.content)["id"] for r in rows]
    return got if query.sort else sorted(got)


# ---- string


def test_string_matches_start_case_and_accent_insensitively(conn: Connection) -> None:
    put(conn, "Patient", "a", string("family", "Émile"))
    put(conn, "Patient", "b", string("family", "Emilia"))
    put(conn, "Patient", "c", string("family", "Zola"))
    assert ids(conn, "Patient", ("family", "emil")) == ["a", "b"]
    assert ids(conn, "Patient", ("family", "EMILE")) == ["a"]


def test_string_exact_and_contains(conn: Connection) -> None:
    put(conn, "Patient", "a", string("family", "Son"))
    put(conn, "Patient", "b", string("family", "Erikson"))
    put(conn, "Patient", "c", string("family", "son"))
    assert ids(conn, "Patient", ("family:exact", "Son")) == ["a"]
    assert ids(conn, "Patient", ("family:contains", "SON")) == ["a", "b", "c"]


def test_string_wildcards_in_the_value_are_literal(conn: Connection) -> None:
    put(conn, "Patient", "a", string("family", "50%_off"))
    put(conn, "Patient", "b", string("family", "50 and more"))
    assert ids(conn, "Patient", ("family", "50%")) == ["a"]
    assert ids(conn, "Patient", ("family:contains", "_")) == ["a"]


# ---- token


def test_token_code_system_and_no_system_forms(conn: Connection) -> None:
    put(conn, "Observation", "a", token("code", "http://loinc.org", "1234"))
    put(conn, "Observation", "b", token("code", "http://other", "1234"))
    put(conn, "Observation", "c", token("code", None, "1234"))
    put(conn, "Observation", "d", token("code", "http://loinc.org", "999"))
    assert ids(conn, "Observation", ("code", "1234")) == ["a", "b", "c"]
    assert ids(conn, "Observation", ("code", "http://loinc.org|1234")) == ["a"]
    assert ids(conn, "Observation", ("code", "|1234")) == ["c"]
    assert ids(conn, "Observation", ("code", "http://loinc.org|")) == ["a", "d"]
    assert ids(conn, "Observation", ("code", "999,http://other|1234")) == ["b", "d"]


def test_token_not_includes_resources_without_the_value(conn: Connection) -> None:
    put(conn, "Patient", "m", token("gender", None, "male"))
    put(conn, "Patient", "f", token("gender", None, "female"))
    put(conn, "Patient", "none")
    assert ids(conn, "Patient", ("gender:not", "male")) == ["f", "none"]
    assert ids(conn, "Patient", ("gender:not", "male,female")) == ["none"]


def test_token_text_matches_display_start(conn: Connection) -> None:
    put(conn, "Condition", "a", token("code", "http://snomed.info/sct", "25064002", "headache finding"))
    put(conn, "Condition", "b", token("code", "http://snomed.info/sct", "735938006", "acute headache"))
    assert ids(conn, "Condition", ("code:text", "Headache")) == ["a"]


def test_token_of_type_matches_identifier_type_and_value(conn: Connection) -> None:
    mr = "http://terminology.hl7.org/CodeSystem/v2-0203"
    put(conn, "Patient", "a", token("identifier:of-type", mr, "MR", "12345"))
    put(conn, "Patient", "b", token("identifier:of-type", mr, "MRT", "12345"))
    assert ids(conn, "Patient", ("identifier:of-type", f"{mr}|MR|12345")) == ["a"]


class FakeTerminology:
    def expand(self, url: str) -> list[tuple[str | None, str]]:
        return [("http://s", "a"), ("http://s", "b")] if url == "http://vs" else []

    def related(self, system: str | None, code: str, direction: str) -> list[tuple[str | None, str]]:
        return [(system, code), (system, code + ".child")] if direction == "below" else [(system, code)]


def test_token_in_and_not_in_use_the_value_set_expansion(conn: Connection) -> None:
    put(conn, "Condition", "a", token("code", "http://s", "a"))
    put(conn, "Condition", "b", token("code", "http://s", "c"))
    term = FakeTerminology()
    assert ids(conn, "Condition", ("code:in", "http://vs"), terminology=term) == ["a"]
    assert ids(conn, "Condition", ("code:not-in", "http://vs"), terminology=term) == ["b"]
    assert ids(conn, "Condition", ("code:below", "http://s|c"), terminology=term) == ["b"]


def test_terminology_modifiers_without_terminology_are_a_400(conn: Connection) -> None:
    with pytest.raises(Invalid):
        ids(conn, "Condition", ("code:in", "http://vs"))
    with pytest.raises(Invalid):
        ids(conn, "Condition", ("code:above", "http://s|c"))


def test_id_parameter_and_its_negation(conn: Connection) -> None:
    put(conn, "Patient", "a")
    put(conn, "Patient", "b")
    put(conn, "Observation", "a")
    assert ids(conn, "Patient", ("_id", "a")) == ["a"]
    assert ids(conn, "Patient", ("_id:not", "a")) == ["b"]


# ---- reference


def test_reference_by_id_type_and_absolute_url(conn: Connection) -> None:
    put(conn, "Observation", "rel", ref("subject", "Patient/1"))
    put(conn, "Observation", "grp", ref("subject", "Group/1"))
    put(conn, "Observation", "own", ref("subject", "Patient/1", url=f"{BASE}/Patient/1"))
    put(conn, "Observation", "ext", ref("subject", "Patient/1", url="http://elsewhere.org/fhir/Patient/1"))
    assert ids(conn, "Observation", ("subject", "1")) == ["grp", "rel"]
    assert ids(conn, "Observation", ("subject", "1"), base_url=BASE) == ["grp", "own", "rel"]
    assert ids(conn, "Observation", ("subject", "Patient/1")) == ["rel"]
    assert ids(conn, "Observation", ("subject:Patient", "1"), base_url=BASE) == ["own", "rel"]
    assert ids(conn, "Observation", ("subject", f"{BASE}/Patient/1"), base_url=BASE) == ["own", "rel"]
    assert ids(conn, "Observation", ("subject", "http://elsewhere.org/fhir/Patient/1")) == ["ext"]


def test_reference_identifier_modifier(conn: Connection) -> None:
    put(conn, "Observation", "a", token("subject:identifier", "http://mrn", "42"))
    put(conn, "Observation", "b", token("subject:identifier", "http://mrn", "43"))
    assert ids(conn, "Observation", ("subject:identifier", "http://mrn|42")) == ["a"]


def test_canonical_reference_by_url(conn: Connection) -> None:
    put(conn, "Questionnaire", "q")
    put(conn, "QuestionnaireResponse", "a", ref("questionnaire", None, url="http://q.org/Q|1.0"))
    assert ids(conn, "QuestionnaireResponse", ("questionnaire", "http://q.org/Q|1.0")) == ["a"]


# ---- date: the prefix table of https://hl7.org/fhir/R4/search.html#date


def date_fixture(c: Connection) -> None:
    put(c, "Encounter", "day14", date("date", "2013-01-14"))
    put(c, "Encounter", "t10", date("date", "2013-01-14T10:00:00Z"))
    put(c, "Encounter", "day15", date("date", "2013-01-15"))
    put(c, "Encounter", "from21jan", date("date", "2013-01-21", None))
    put(c, "Encounter", "from15mar", date("date", "2013-03-15", None))
    put(c, "Encounter", "upto21jan", date("date", None, "2013-01-21"))
    put(c, "Encounter", "y2013", date("date", "2013"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("eq2013-01-14", ["day14", "t10"]),
        ("2013-01-14", ["day14", "t10"]),
        ("ne2013-01-14", ["day15", "from15mar", "from21jan", "upto21jan", "y2013"]),
        ("lt2013-01-14T10:00Z", ["day14", "upto21jan", "y2013"]),
        ("gt2013-01-14T10:00Z", ["day14", "day15", "from15mar", "from21jan", "upto21jan", "y2013"]),
        ("ge2013-03-14", ["from15mar", "from21jan", "y2013"]),
        ("le2013-03-14", ["day14", "day15", "from21jan", "t10", "upto21jan", "y2013"]),
        ("sa2013-03-14", ["from15mar"]),
        ("eb2013-03-14", ["day14", "day15", "t10", "upto21jan"]),
        ("eq2013", ["day14", "day15", "t10", "y2013"]),
        ("ap2013-01-14", ["day14", "day15", "from15mar", "from21jan", "t10", "upto21jan", "y2013"]),
    ],
)
def test_date_prefixes_follow_the_range_rules(conn: Connection, value: str, expected: list[str]) -> None:
    date_fixture(conn)
    assert ids(conn, "Encounter", ("date", value)) == expected


def test_date_and_range_of_two_parameters(conn: Connection) -> None:
    date_fixture(conn)
    assert ids(conn, "Encounter", ("date", "ge2013-01-14"), ("date", "le2013-01-15")) == [
        "day14",
        "day15",
        "t10",
        "upto21jan",
        "y2013",
    ]


def test_last_updated_uses_the_resource_table(conn: Connection) -> None:
    put(conn, "Patient", "old", last_updated=search_range("2019-05-01", "t")[0])
    put(conn, "Patient", "new", last_updated=search_range("2021-05-01", "t")[0])
    assert ids(conn, "Patient", ("_lastUpdated", "gt2020")) == ["new"]
    assert ids(conn, "Patient", ("_lastUpdated", "lt2020")) == ["old"]


# ---- number and quantity


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100", ["99.5", "100", "100.4"]),
        ("100.0", ["100"]),
        ("1e2", ["99.5", "100", "100.4", "100.5", "109", "91"]),
        ("ne100", ["100.5", "109", "91"]),
        ("gt100", ["100.4", "100.5", "109"]),
        ("ge100", ["100", "100.4", "100.5", "109"]),
        ("lt100", ["91", "99.5"]),
        ("le100", ["100", "91", "99.5"]),
        ("sa100", ["100.4", "100.5", "109"]),
        ("eb100", ["91", "99.5"]),
        ("ap100", ["100", "100.4", "100.5", "109", "91", "99.5"]),
    ],
)
def test_number_prefixes_and_implicit_precision(conn: Connection, value: str, expected: list[str]) -> None:
    for v in ("91", "99.5", "100", "100.4", "100.5", "109"):
        put(conn, "RiskAssessment", v, number("probability", float(v)))
    assert ids(conn, "RiskAssessment", ("probability", value)) == sorted(expected)


def test_quantity_by_number_unit_and_system(conn: Connection) -> None:
    put(conn, "Observation", "mg", quantity("value-quantity", 5.4, UCUM, "mg", unit="mg"))
    put(conn, "Observation", "unitonly", quantity("value-quantity", 5.4, None, None, unit="mg"))
    put(conn, "Observation", "other", quantity("value-quantity", 5.4, "http://other", "mg"))
    put(conn, "Observation", "big", quantity("value-quantity", 6.0, UCUM, "mg"))
    assert ids(conn, "Observation", ("value-quantity", "5.4")) == ["mg", "other", "unitonly"]
    assert ids(conn, "Observation", ("value-quantity", "5.4||mg")) == ["mg", "other", "unitonly"]
    assert ids(conn, "Observation", ("value-quantity", f"5.4|{UCUM}|mg")) == ["mg"]
    assert ids(conn, "Observation", ("value-quantity", f"gt5.4|{UCUM}|mg")) == ["big"]


def fake_canonical(code: str, value: float) -> tuple[float, str] | None:
    factor = {"g": 1.0, "kg": 1000.0, "mg": 0.001}.get(code)
    return (value * factor, "g") if factor is not None else None


def test_quantity_matches_in_canonical_units(conn: Connection) -> None:
    put(
        conn,
        "Observation",
        "kg",
        quantity("value-quantity", 1.0, UCUM, "kg", canon_value=1000.0, canon_code="g"),
    )
    put(
        conn,
        "Observation",
        "g",
        quantity("value-quantity", 1000.0, UCUM, "g", canon_value=1000.0, canon_code="g"),
    )
    put(conn, "Observation", "m", quantity("value-quantity", 1.0, UCUM, "m", canon_value=1.0, canon_code="m"))
    got = ids(conn, "Observation", ("value-quantity", f"1000|{UCUM}|g"), canonical=fake_canonical)
    assert got == ["g", "kg"]
    got = ids(conn, "Observation", ("value-quantity", f"lt2|{UCUM}|kg"), canonical=fake_canonical)
    assert got == ["g", "kg"]


# ---- uri


def test_uri_exact_above_and_below(conn: Connection) -> None:
    put(conn, "ValueSet", "root", uri("url", "http://acme.org/fhir"))
    put(conn, "ValueSet", "vs", uri("url", "http://acme.org/fhir/ValueSet/123"))
    put(conn, "ValueSet", "case", uri("url", "http://acme.org/FHIR/ValueSet/123"))
    put(conn, "ValueSet", "sibling", uri("url", "http://acme.org/fhirx"))
    assert ids(conn, "ValueSet", ("url", "http://acme.org/fhir")) == ["root"]
    assert ids(conn, "ValueSet", ("url:below", "http://acme.org/fhir")) == ["root", "vs"]
    assert ids(conn, "ValueSet", ("url:above", "http://acme.org/fhir/ValueSet/123/_history/5")) == [
        "root",
        "vs",
    ]


# ---- composite


def test_composite_parts_must_come_from_the_same_element(conn: Connection) -> None:
    put(
        conn,
        "Observation",
        "same",
        token("component-code-value-quantity", "http://loinc.org", "8480-6", grp=1),
        ("quantity", "component-code-value-quantity", dict(quantity("x", 120.0, UCUM, "mm[Hg]")[2], grp=1)),
    )
    put(
        conn,
        "Observation",
        "split",
        token("component-code-value-quantity", "http://loinc.org", "8480-6", grp=1),
        ("quantity", "component-code-value-quantity", dict(quantity("x", 120.0, UCUM, "mm[Hg]")[2], grp=2)),
    )
    value = "http://loinc.org|8480-6$gt100"
    assert ids(conn, "Observation", ("component-code-value-quantity", value)) == ["same"]


# ---- missing


def test_missing_true_and_false(conn: Connection) -> None:
    put(conn, "Patient", "has", date("birthdate", "1970"))
    put(conn, "Patient", "lacks")
    assert ids(conn, "Patient", ("birthdate:missing", "true")) == ["lacks"]
    assert ids(conn, "Patient", ("birthdate:missing", "false")) == ["has"]
    assert ids(conn, "Patient", ("_id:missing", "true")) == []


# ---- chains and _has


def chain_fixture(c: Connection) -> None:
    put(c, "Practitioner", "dr", string("name", "Doctor Who"))
    put(c, "Patient", "p1", string("name", "Smith"), ref("general-practitioner", "Practitioner/dr"))
    put(c, "Patient", "p2", string("name", "Jones"))
    put(c, "Patient", "gone", deleted=True)
    put(
        c,
        "Observation",
        "o1",
        ref("subject", "Patient/p1"),
        ref("patient", "Patient/p1"),
        token("code", None, "x"),
    )
    put(
        c,
        "Observation",
        "o2",
        ref("subject", "Patient/p2"),
        ref("patient", "Patient/p2"),
        token("code", None, "y"),
    )
    put(c, "Observation", "o3", ref("subject", "Patient/gone"), ref("patient", "Patient/gone"))
    put(c, "DiagnosticReport", "r1", ref("result", "Observation/o1"), token("status", None, "final"))


def test_chain_matches_through_the_reference(conn: Connection) -> None:
    chain_fixture(conn)
    assert ids(conn, "Observation", ("subject:Patient.name", "smith")) == ["o1"]
    assert ids(conn, "Observation", ("subject.name", "jones,smith")) == ["o1", "o2"]
    assert ids(conn, "Observation", ("patient._id", "gone")) == []


def test_two_level_chain_matches(conn: Connection) -> None:
    chain_fixture(conn)
    assert ids(conn, "Observation", ("patient.general-practitioner.name", "doctor")) == ["o1"]


def test_has_finds_referenced_resources(conn: Connection) -> None:
    chain_fixture(conn)
    assert ids(conn, "Patient", ("_has:Observation:patient:code", "y")) == ["p2"]
    assert ids(
        conn, "Patient", ("_has:Observation:patient:_has:DiagnosticReport:result:status", "final")
    ) == ["p1"]


def test_has_in_a_system_search(conn: Connection) -> None:
    chain_fixture(conn)
    assert ids(conn, None, ("_type", "Patient,Practitioner"), ("_has:Observation:subject:code", "x")) == [
        "p1"
    ]


# ---- sort and paging


def sort_fixture(c: Connection) -> None:
    put(c, "Patient", "b", string("family", "Brown"), date("birthdate", "1980"))
    put(c, "Patient", "a1", string("family", "Adams"), date("birthdate", "1990"))
    put(c, "Patient", "a2", string("family", "Adams"), date("birthdate", "1970"))
    put(c, "Patient", "z", string("family", "Zed"), string("family", "Able"))
    put(c, "Patient", "none")


def test_sort_ascending_puts_missing_values_last(conn: Connection) -> None:
    sort_fixture(conn)
    assert ids(conn, "Patient", ("_sort", "family")) == ["z", "a1", "a2", "b", "none"]


def test_sort_descending_uses_the_largest_value(conn: Connection) -> None:
    sort_fixture(conn)
    assert ids(conn, "Patient", ("_sort", "-family")) == ["z", "b", "a1", "a2", "none"]


def test_sort_on_several_keys(conn: Connection) -> None:
    sort_fixture(conn)
    assert ids(conn, "Patient", ("_sort", "family,-birthdate")) == ["z", "a1", "a2", "b", "none"]
    assert ids(conn, "Patient", ("_sort", "-birthdate,_id")) == ["a1", "b", "a2", "none", "z"]


def walk(c: Connection, rtype: str, pairs: list[tuple[str, str]]) -> tuple[list[str], int]:
    """Follow the cursor through every page; return the ids in order and the number of pages."""
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        extra = [("_cursor", cursor)] if cursor else []
        query = parse(rtype, pairs + extra, lenient=False, now_us=0)
        rows = c.execute(plan.build(query)).all()
        page = rows[: query.count]
        seen.extend(json.loads(r.content)["id"] for r in page)
        pages += 1
        if len(rows) <= (query.count or 0) or pages > 50:
            return seen, pages
        cursor = plan.next_cursor(query, page[-1])


@pytest.mark.parametrize(
    "sort", [None, "family", "-family", "family,-birthdate", "-birthdate,_id", "_lastUpdated"]
)
def test_cursor_walk_visits_every_match_once_in_order(conn: Connection, sort: str | None) -> None:
    sort_fixture(conn)
    for i in range(7):
        put(conn, "Patient", f"x{i}", string("family", "Adams" if i % 2 else f"K{i}"), last_updated=i % 3)
    pairs = [("_sort", sort)] if sort else []
    everything = ids(conn, "Patient", *pairs, ("_count", "100"))
    walked, pages = walk(conn, "Patient", [*pairs, ("_count", "2")])
    assert (walked if sort else sorted(walked)) == everything
    assert len(walked) == len(set(walked)) == 12
    assert pages == 6


def test_limit_is_count_plus_one(conn: Connection) -> None:
    for i in range(5):
        put(conn, "Patient", f"p{i}")
    query = parse("Patient", [("_count", "3")], lenient=False)
    assert len(conn.execute(plan.build(query)).all()) == 4
    assert len(conn.execute(plan.build(parse("Patient", [], lenient=False), default_count=2)).all()) == 3


def test_count_counts_every_match(conn: Connection) -> None:
    for i in range(5):
        put(conn, "Patient", f"p{i}", token("gender", None, "male" if i % 2 else "female"))
    query = parse("Patient", [("gender", "female"), ("_count", "1")], lenient=False)
    assert conn.execute(plan.count(query)).scalar_one() == 3


def test_deleted_resources_never_match(conn: Connection) -> None:
    put(conn, "Patient", "live")
    put(conn, "Patient", "dead", deleted=True)
    assert ids(conn, "Patient", ("gender:missing", "true")) == ["live"]
    assert ids(conn, "Patient") == ["live"]


def test_system_search_spans_types(conn: Connection) -> None:
    put(conn, "Patient", "p", token("_tag", "http://t", "x"))
    put(conn, "Observation", "o", token("_tag", "http://t", "x"))
    put(conn, "Encounter", "e", token("_tag", "http://t", "y"))
    assert ids(conn, None, ("_tag", "http://t|x")) == ["o", "p"]
    assert ids(conn, None, ("_type", "Observation,Encounter"), ("_tag", "http://t|")) == ["e", "o"]


# ---- compartment and restrict


def test_patient_compartment(conn: Connection) -> None:
    chain_fixture(conn)
    put(conn, "Observation", "perf", ref("performer", "Patient/p1"))
    assert ids(conn, "Observation", compartment=("Patient", "p1")) == ["o1", "perf"]
    assert ids(conn, "Patient", compartment=("Patient", "p1")) == ["p1"]
    with pytest.raises(Invalid):
        ids(conn, "Observation", compartment=("Encounter", "e1"))


def test_restrict_adds_a_condition(conn: Connection) -> None:
    chain_fixture(conn)
    only_o2 = tables.resource.c.res_id != "o1"
    assert ids(conn, "Observation", ("code", "x,y"), restrict=only_o2) == ["o2"]


# ---- includes


def include_ids(c: Connection, rtype: str, *pairs: tuple[str, str]) -> tuple[list[str], list[str]]:
    query = parse(rtype, list(pairs), lenient=False)
    rows = c.execute(plan.build(query)).all()
    inc = plan.includes(c.execute, query, [r.pk for r in rows])
    name = lambda r: "{resourceType}/{id}".format(**json.loads(r.content))  # noqa: E731
    return sorted(name(r) for r in rows), sorted(name(r) for r in inc)


def test_include_and_iterate(conn: Connection) -> None:
    chain_fixture(conn)
    got = include_ids(conn, "Observation", ("code", "x"), ("_include", "Observation:patient"))
    assert got == (["Observation/o1"], ["Patient/p1"])
    got = include_ids(
        conn,
        "Observation",
        ("code", "x"),
        ("_include", "Observation:patient"),
        ("_include:iterate", "Patient:general-practitioner"),
    )
    assert got[1] == ["Patient/p1", "Practitioner/dr"]
    got = include_ids(conn, "Observation", ("code", "x"), ("_include", "Observation:subject:Group"))
    assert got[1] == []


def test_include_star_and_no_deleted_targets(conn: Connection) -> None:
    chain_fixture(conn)
    got = include_ids(conn, "Observation", ("_include", "*"))
    assert got[1] == ["Patient/p1", "Patient/p2"]


def test_revinclude(conn: Connection) -> None:
    chain_fixture(conn)
    got = include_ids(conn, "Patient", ("_id", "p1"), ("_revinclude", "Observation:subject"))
    assert got == (["Patient/p1"], ["Observation/o1"])
    got = include_ids(
        conn,
        "Patient",
        ("_id", "p1"),
        ("_revinclude", "Observation:subject"),
        ("_revinclude:iterate", "DiagnosticReport:result"),
    )
    assert got[1] == ["DiagnosticReport/r1", "Observation/o1"]


# ---- the SQL itself


def test_one_select_statement_uses_in_subqueries_not_offset(db: Engine) -> None:
    query = parse(
        "Observation",
        [("patient", "Patient/1"), ("code", "http://loinc.org|1"), ("date", "ge2020")],
        lenient=False,
    )
    sql = str(plan.build(query).compile(db))
    assert sql.count("SELECT") == 4 and "OFFSET" not in sql.upper().replace("LIMIT ? OFFSET ?", "LIMIT ?")


def test_the_common_query_can_be_answered_from_the_indexes(db: Engine) -> None:
    query = parse(
        "Observation",
        [("patient", "Patient/1"), ("code", "http://loinc.org|1"), ("date", "ge2020")],
        lenient=False,
    )
    compiled = plan.build(query).compile(db, compile_kwargs={"literal_binds": True})
    with db.connect() as c:
        if db.dialect.name == "postgresql":
            c.execute(text("SET enable_seqscan = off"))
            explain = "\n".join(r[0] for r in c.execute(text(f"EXPLAIN {compiled}")))
            assert "Seq Scan" not in explain
        else:
            explain = "\n".join(str(r[-1]) for r in c.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
            assert "SCAN idx_" not in explain
    assert "ix_idx_reference_target" in explain


def test_a_composite_on_the_resource_itself_is_the_anchor_with_the_patient_nested_in_it(db: Engine) -> None:
    """`patient=X&code-value-quantity=...`: the composite's joined component tables select the
    candidates and the patient's reference rows are tested inside that SELECT, whatever the order of
    the parameters. (With the patient as the anchor and the join nested in it, PostgreSQL estimated
    the matches from the quantity rows alone and walked `resource` in pk order: 96-118 ms for 2 of
    200,000 Observations, 3-6 ms this way; bench/README.md "Fifteenth session".)"""
    composite = ("code-value-quantity", "http://loinc.org|8867-4$gt90")
    for pairs in ([("patient", "Patient/1"), composite], [composite, ("patient", "Patient/1")]):
        sql = str(plan.build(parse("Observation", pairs, lenient=False)).compile(db))
        anchor = sql[sql.index("resource.pk IN (SELECT") :]
        anchor_from = anchor[anchor.index("FROM") :]
        assert anchor_from.startswith("FROM idx_token AS idx_token_1 JOIN idx_quantity AS idx_quantity_1")
        assert "resource_pk IN (SELECT idx_reference_1.resource_pk" in anchor_from
