"""A read row is final only when code, unit, range/flag and OCR confidence all hold up (ingest/ocr/checks.py, https://hl7.org/fhir/R4/valueset-observation-status.html)."""

from __future__ import annotations

from ingest.ocr.checks import CheckedRow, check, find_test, find_unit
from ingest.ocr.lines import Line, Source, Word
from ingest.ocr.rows import parse_tokens


def _line(text: str, source: Source = "text-layer", confidences: dict[int, float] | None = None) -> Line:
    words = tuple(Word(w, (confidences or {}).get(i, 95.0)) for i, w in enumerate(text.split()))
    return Line(1, 7, words, source)


def _check(
    text: str, source: Source = "text-layer", confidences: dict[int, float] | None = None
) -> CheckedRow:
    line = _line(text, source, confidences)
    row = parse_tokens(line.tokens)
    assert row is not None
    return check(line, row)


def test_a_consistent_row_is_final() -> None:
    checked = _check("Potassium 5.6 H mmol/L 3.5-5.1")
    assert checked.final
    assert checked.test is not None and checked.test.code == "2823-3"
    assert checked.unit == "mmol/L"
    assert checked.interpretation == "H"


def test_no_flag_inside_the_range_is_normal() -> None:
    assert _check("Sodium 140 mmol/L 136-145").interpretation == "N"


def test_value_outside_range_without_flag_is_doubted() -> None:
    checked = _check("Sodium 150 mmol/L 136-145")
    assert not checked.final
    assert any("means H" in r for r in checked.reasons)


def test_flag_contradicting_the_range_is_doubted() -> None:
    checked = _check("Sodium 140 L mmol/L 136-145")
    assert not checked.final
    assert checked.interpretation == "L"  # what the report says, never silently replaced


def test_low_ocr_confidence_of_the_value_is_doubted() -> None:
    checked = _check("Sodium 140 mmol/L 136-145", source="ocr", confidences={1: 31.0})
    assert any("low OCR confidence" in r for r in checked.reasons)


def test_low_confidence_of_the_name_alone_does_not_matter_when_it_matches() -> None:
    assert _check("Sodium 140 mmol/L 136-145", source="ocr", confidences={0: 20.0}).final


def test_lost_decimal_point_is_doubted() -> None:
    checked = _check("Potassium 44 mmol/L 3.5-5.1", source="ocr")
    assert not checked.final
    assert any("precision" in r for r in checked.reasons)


def test_unit_of_another_property_is_doubted() -> None:
    checked = _check("Glucose 5.4 mmol/L 3.9-5.5")
    assert not checked.final
    assert any("not a unit of LOINC 2339-0" in r for r in checked.reasons)


def test_unknown_test_is_doubted_and_uncoded() -> None:
    checked = _check("Zonulin 40 ng/mL 10-50")
    assert checked.test is None
    assert not checked.final


def test_ocr_confusions_in_names_and_units_resolve_exactly() -> None:
    test, why = find_test("HbAIc")
    assert test is not None and test.code == "4548-4" and why is None
    assert find_unit("mlU/L", None) == ("m[IU]/L", None)
    assert find_unit("x10%3/uL", None) == ("10*3/uL", None)


def test_approximate_names_and_units_are_matched_but_reported() -> None:
    test, why = find_test("Hemoqlobin")
    assert test is not None and test.code == "718-7" and why
    cbc = find_test("MCHC")[0]
    unit, why = find_unit("g/db", cbc)
    assert unit == "g/dL" and why
