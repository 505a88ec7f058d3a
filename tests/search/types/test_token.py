"""Token index values (https://hl7.org/fhir/R4/search.html#token)."""

from __future__ import annotations

from typing import Any

from fhir_server.search.types import RowSink, token

PID, AUX = 11, 12


def index(elements: list[Any], fhir_type: str, aux: int | None = AUX) -> list[tuple[Any, ...]]:
    sink: RowSink = {"token": []}
    token.values(elements, fhir_type, PID, 0, sink, aux)
    return sink["token"]


def test_coding_gives_one_row_with_lower_display() -> None:
    assert index([{"system": "http://loinc.org", "code": "1-8", "display": "Body WEIGHT"}], "Coding") == [
        (PID, 0, "http://loinc.org", "1-8", "body weight")
    ]


def test_codeable_concept_gives_a_row_per_coding_and_one_for_text() -> None:
    cc = {"coding": [{"system": "s", "code": "a"}, {"code": "b", "display": "B"}], "text": "Some Text"}
    assert index([cc], "CodeableConcept") == [
        (PID, 0, "s", "a", None),
        (PID, 0, None, "b", "b"),
        (PID, 0, None, None, "some text"),
    ]


def test_identifier_gives_value_and_of_type_rows() -> None:
    identifier = {
        "system": "urn:s",
        "value": "MRN-1",
        "type": {"coding": [{"system": "v2", "code": "MR"}], "text": "Medical Record"},
    }
    assert index([identifier], "Identifier") == [
        (PID, 0, "urn:s", "MRN-1", "medical record"),
        (AUX, 0, "v2", "MR", "MRN-1"),
    ]


def test_identifier_without_aux_param_gives_no_of_type_row() -> None:
    identifier = {"value": "1", "type": {"coding": [{"code": "MR"}]}}
    assert index([identifier], "Identifier", aux=None) == [(PID, 0, None, "1", None)]


def test_contact_point_system_is_not_a_uri_and_use_is_ignored() -> None:
    assert index([{"system": "email", "value": "a@b.org", "use": "work"}], "ContactPoint") == [
        (PID, 0, None, "a@b.org", None)
    ]


def test_boolean_gives_true_or_false() -> None:
    assert index([True, False], "boolean") == [(PID, 0, None, "true", None), (PID, 0, None, "false", None)]


def test_code_and_uri_give_a_code_without_system() -> None:
    assert index(["final"], "code") == [(PID, 0, None, "final", None)]
    assert index(["http://x"], "uri") == [(PID, 0, None, "http://x", None)]


def test_empty_strings_are_stored_as_none() -> None:
    assert index([{"system": "", "code": "c", "display": ""}], "Coding") == [(PID, 0, None, "c", None)]


def test_quantity_and_reference_are_not_tokens() -> None:
    assert index([{"value": 1}], "Quantity") == []
    assert index([{"reference": "Patient/1"}], "Reference") == []


def test_untyped_elements_are_inferred_from_their_shape() -> None:
    rows = index(
        [
            {"coding": [{"code": "c"}]},
            {"system": "phone", "value": "1"},
            {"system": "urn:x", "value": "2"},
            True,
        ],
        "*",
    )
    assert rows == [
        (PID, 0, None, "c", None),
        (PID, 0, None, "1", None),
        (PID, 0, "urn:x", "2", None),
        (PID, 0, None, "true", None),
    ]
