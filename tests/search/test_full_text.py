"""The words and query language of `_text` / `_content` (https://hl7.org/fhir/R4/search.html#text)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from fhir_server.errors import Invalid
from fhir_server.search import full_text, plan
from fhir_server.search.full_text import Phrase
from fhir_server.search.query import parse
from tests.search.test_plan import BACKENDS, make_engine


@given(st.text())
def test_words_are_folded_letters_and_digits_and_stable(text: str) -> None:
    found = full_text.words(text)
    for w in found:
        assert w and all(c.isalnum() and unicodedata.category(c) != "No" for c in w)
        assert w == w.lower() and not any(unicodedata.combining(c) for c in w)
    assert full_text.words(" ".join(found)) == found


def test_folding_examples() -> None:
    assert full_text.words("Fièvre, CHILLS; heart-rate_x ½ Straße 1.5") == [
        "fievre",
        "chills",
        "heart",
        "rate",
        "x",
        "1",  # ½ decomposes to 1, FRACTION SLASH, 2
        "2",
        "strasse",
        "1",
        "5",
    ]


def test_narrative_drops_tags_and_decodes_entities() -> None:
    div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Fever&amp;chills</p><td>a</td><td>b</td></div>'
    assert full_text.words(full_text.narrative_text(div)) == ["fever", "chills", "a", "b"]


def test_content_leaves_out_version_stamps_machine_identifiers_and_attachment_data() -> None:
    resource = {
        "resourceType": "DocumentReference",
        "id": "d1",
        "meta": {"versionId": "7", "lastUpdated": "2024-01-01T00:00:00Z", "source": "urn:src"},
        "content": [{"attachment": {"contentType": "text/plain", "data": "c2VjcmV0", "title": "Scan"}}],
        "text": {"status": "generated", "div": "<div>Nice <b>day</b></div>"},
    }
    words = full_text.words(full_text.content(resource))
    assert words == ["text", "plain", "scan", "generated", "nice", "day"]


def test_content_keeps_what_a_person_reads_not_ids_references_and_uris() -> None:
    resource = {
        "resourceType": "Observation",
        "id": "f3b1c2",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body height"}]},
        "subject": {"reference": "urn:uuid:018f428e-34f6", "display": "Ann Lee"},
        "extension": [{"url": "http://example.org/x", "valueString": "tall"}],
        "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN77"}],
        "note": [{"id": "n1", "text": "after exercise"}],
    }
    words = full_text.words(full_text.content(resource))
    assert words == [
        "final", "8302", "2", "body", "height", "ann", "lee", "tall", "mrn77", "after", "exercise",
    ]  # fmt: skip


def test_content_words_remembered_per_element_are_the_words_of_the_whole_content() -> None:
    """`content_words` remembers each top-level element's words by its JSON (the `_content` index
    step uses it); the oracle is `words(content(...))` over HL7's examples and Synthea, each resource
    seen twice so that the second time its elements come from the table."""
    from tests.search.test_index_remembered import _resources

    resources = _resources()
    for _ in range(2):
        differ = [
            r.get("id")
            for r in resources
            if full_text.content_words(r) != full_text.words(full_text.content(r))
        ]
        assert differ == []
    # the same JSON under another name has other words: `text.div` is a narrative, `note.div` is not
    narrative = {"div": "<b>bold</b> &amp; x"}
    for _ in range(2):
        both = {"resourceType": "Observation", "text": narrative, "note": narrative}
        assert full_text.content_words(both) == ["bold", "x", "b", "bold", "b", "amp", "x"]
    long = {"resourceType": "Observation", "note": [{"text": " ".join(["w"] * 20_000)}]}
    assert full_text.document_words(full_text.content_words(long)) == full_text.document(
        full_text.content(long)
    )


_JSON = st.recursive(
    st.one_of(
        st.text(max_size=12),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(["text", "div", "data", "contentType", "id", "value", "display"]),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["code", "text", "meta", "data", "note", "valueQuantity"]), _JSON, max_size=5
    )
)
def test_content_words_of_any_shape_are_the_words_of_its_content(fields: dict[str, object]) -> None:
    """Including values orjson writes alike (NaN and infinity as null) or cannot write (huge ints)."""
    for resource_type in ("Observation", "Binary"):
        resource = {"resourceType": resource_type, **fields}
        for _ in range(2):
            assert full_text.content_words(resource) == full_text.words(full_text.content(resource))


def test_documents_are_capped() -> None:
    doc = full_text.document(" ".join(["w"] * 20_000) + " " + "x" * 65)
    assert len(doc.split()) == full_text.MAX_WORDS
    assert "x" * 65 not in full_text.document("a " + "x" * 65 + " b")


def test_query_language() -> None:
    q = full_text.parse('fever OR cough "heart rate"* hyper* heart-rate', "_text")
    assert q.clauses == (
        (Phrase(("fever",)), Phrase(("cough",))),
        (Phrase(("heart", "rate"), prefix=True),),
        (Phrase(("hyper",), prefix=True),),
        (Phrase(("heart", "rate")),),
    )
    assert full_text.tsquery(q).startswith("(('fever') | ('cough')) & (('heart' <-> 'rate':*))")
    assert full_text.fts5(q).startswith('("fever" OR "cough") AND ("heart rate" *)')
    for empty in ("", "OR", '""', "*** ,;"):
        with pytest.raises(Invalid):
            full_text.parse(empty, "_text")
    with pytest.raises(Invalid):
        full_text.parse(" ".join(f"w{i}" for i in range(40)), "_text")


def test_matches() -> None:
    doc = "heart rate normal no fever"
    assert full_text.matches(full_text.parse('"heart rate" fev*', "_t"), doc)
    assert not full_text.matches(full_text.parse('"rate heart"', "_t"), doc)
    assert full_text.matches(full_text.parse("cough OR fever", "_t"), doc)
    assert not full_text.matches(full_text.parse("cough fever", "_t"), doc)


@pytest.fixture(scope="module", params=BACKENDS)
def db(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield from make_engine(request.param)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40))
def test_any_value_is_a_400_or_a_query_the_database_runs(db: Engine, text: str) -> None:
    try:
        query = parse("Observation", [("_content", text.replace("\x00", ""))], lenient=False)
    except Invalid:
        return
    with db.connect() as conn:
        assert conn.execute(plan.build(query)).all() == []
