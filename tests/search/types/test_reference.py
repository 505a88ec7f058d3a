"""Reference index values (https://hl7.org/fhir/R4/search.html#reference)."""

from __future__ import annotations

from typing import Any

from fhir_server.search.types import RowSink, reference

PID, AUX = 21, 22


def index(elements: list[Any], fhir_type: str) -> RowSink:
    sink: RowSink = {"reference": [], "token": []}
    reference.values(elements, fhir_type, PID, 0, sink, AUX)
    return sink


def test_relative_reference_gives_type_and_id() -> None:
    assert index([{"reference": "Patient/123"}], "Reference")["reference"] == [
        (PID, 0, "Patient", "123", None)
    ]


def test_history_suffix_is_dropped() -> None:
    assert index([{"reference": "Patient/123/_history/4"}], "Reference")["reference"] == [
        (PID, 0, "Patient", "123", None)
    ]


def test_absolute_url_keeps_the_url_and_the_type_and_id() -> None:
    url = "https://other.org/fhir/Observation/o-9/_history/2"
    assert index([{"reference": url}], "Reference")["reference"] == [(PID, 0, "Observation", "o-9", url)]


def test_absolute_url_of_an_unknown_type_keeps_only_the_url() -> None:
    url = "https://other.org/things/Widget/1"
    assert index([{"reference": url}], "Reference")["reference"] == [(PID, 0, None, None, url)]


def test_urn_reference_keeps_only_the_url() -> None:
    urn = "urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7"
    assert index([{"reference": urn}], "Reference")["reference"] == [(PID, 0, None, None, urn)]


def test_contained_reference_is_not_indexed() -> None:
    assert index([{"reference": "#med1"}], "Reference")["reference"] == []


def test_canonical_keeps_its_version() -> None:
    url = "http://hl7.org/fhir/Questionnaire/q|1.0"
    assert index([url], "canonical")["reference"] == [(PID, 0, None, None, url)]


def test_reference_identifier_is_a_token_under_the_identifier_param() -> None:
    sink = index(
        [{"identifier": {"system": "urn:npi", "value": "999", "type": {"text": "NPI"}}}], "Reference"
    )
    assert sink["reference"] == []
    assert sink["token"] == [(AUX, 0, "urn:npi", "999", "npi")]


def test_resource_in_place_of_a_reference_gives_its_type_and_id() -> None:
    assert index([{"resourceType": "Composition", "id": "c1"}], "Resource")["reference"] == [
        (PID, 0, "Composition", "c1", None)
    ]


def test_index_target_of_an_empty_string_is_none() -> None:
    assert reference.index_target("") is None
