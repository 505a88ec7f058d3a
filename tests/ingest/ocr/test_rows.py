"""The lab row parser reads name, value, unit, reference range and flag in any printed layout (ingest/ocr/rows.py, https://hl7.org/fhir/R4/observation.html#valuex)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.ocr.rows import ReferenceRange, parse_range, parse_row, parse_tokens

NAMES = st.sampled_from(
    ["Potassium", "Hemoglobin A1c", "Vitamin B12", "ALT (SGPT)", "Free T4", "LDL Cholesterol", "eGFR", "CO2"]
)
UNITS = st.sampled_from(["mmol/L", "mg/dL", "%", "x10^3/uL", "U/L", "mIU/L", "pg/mL", "mL/min/1.73m2", ""])
FLAGS = st.sampled_from(["", "H", "L", "HH", "LL", "A", "N"])


@st.composite
def decimals(draw: st.DrawFn, max_value: int = 5000) -> str:
    whole = draw(st.integers(min_value=0, max_value=max_value))
    places = draw(st.integers(min_value=0, max_value=2))
    if places == 0:
        return str(whole)
    frac = draw(st.integers(min_value=0, max_value=10**places - 1))
    return f"{whole}.{frac:0{places}d}"


@st.composite
def ranges(draw: st.DrawFn) -> tuple[str, Decimal | None, Decimal | None]:
    kind = draw(st.sampled_from(["between", "spaced", "to", "lt", "le", "gt", "ge", "bracketed"]))
    a, b = sorted((Decimal(draw(decimals())), Decimal(draw(decimals()))))
    if kind == "between":
        return f"{a}-{b}", a, b
    if kind == "spaced":
        return f"{a} - {b}", a, b
    if kind == "to":
        return f"{a} to {b}", a, b
    if kind == "bracketed":
        return f"({a}-{b})", a, b
    if kind == "lt":
        return f"<{b}", None, b
    if kind == "le":
        return f"<= {b}", None, b
    if kind == "gt":
        return f">{a}", a, None
    return f">={a}", a, None


@given(
    NAMES,
    decimals(),
    UNITS,
    ranges(),
    FLAGS,
    st.sampled_from(["flag-unit-range", "unit-range-flag", "glued"]),
)
def test_any_layout_round_trips(
    name: str, value: str, unit: str, rng: tuple[str, Decimal | None, Decimal | None], flag: str, layout: str
) -> None:
    range_text, low, high = rng
    if layout == "glued" and flag in ("H", "L", "HH", "LL"):
        cells = [name, value + flag, unit, range_text]
    elif layout == "unit-range-flag":
        cells = [name, value, unit, range_text, flag]
    else:
        cells = [name, value, flag, unit, range_text]
    row = parse_row("  ".join(c for c in cells if c))
    assert row is not None
    assert row.name == name
    assert row.value == Decimal(value)
    assert row.unit == unit
    assert row.range is not None
    assert (row.range.low, row.range.high) == (low, high)
    assert row.flag == (flag or None)
    assert row.comparator is None
    assert not row.repaired


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz :-,.", max_size=40))
def test_text_without_numbers_is_not_a_row(line: str) -> None:
    assert parse_row(line) is None


@given(
    st.lists(st.text(min_size=1, max_size=8).filter(lambda t: not t.isspace() and " " not in t), max_size=8)
)
def test_never_raises_and_indices_point_at_the_words(words: list[str]) -> None:
    row = parse_tokens(words)
    if row is not None:
        for index in row.value_at + row.unit_at + row.range_at + row.flag_at + row.name_at:
            assert 0 <= index < len(words)


@pytest.mark.parametrize(
    ("line", "value", "comparator", "flag"),
    [
        ("LDL Cholesterol < 100 mg/dL <100", "100", "<", None),
        ("CRP <0.5 mg/L <5.0", "0.5", "<", None),
        ("Glucose 130H mg/dL 70-99", "130", None, "H"),
        ("Sodium 129 (L) mmol/L 136-145", "129", None, "L"),
        ("Platelets 1,250 HH x10^3/uL 150-400", "1250", None, "HH"),
        ("Potassium 7.1 *HH mmol/L 3.5-5.1", "7.1", None, "HH"),
        ("Ferritin 12 Low ng/mL 30-400", "12", None, "L"),
    ],
)
def test_printed_variants(line: str, value: str, comparator: str | None, flag: str | None) -> None:
    row = parse_row(line)
    assert row is not None
    assert (row.value, row.comparator, row.flag) == (Decimal(value), comparator, flag)


def test_ocr_digit_confusions_are_repaired_and_marked() -> None:
    row = parse_row("Creatinine 1.O mg/dL 0.60-1.20")
    assert row is not None
    assert row.value == Decimal("1.0")
    assert row.repaired


def test_headers_notes_and_page_numbers_are_not_rows() -> None:
    for line in ("Test Result Flag Units Reference Range", "Page 1 of 2", "Results reviewed electronically."):
        assert parse_row(line) is None


def test_the_parts_point_at_their_words() -> None:
    row = parse_row("Hemoglobin A1c 6.1 H % 4.0 - 5.6")
    assert row is not None
    assert (row.name_at, row.value_at, row.flag_at, row.unit_at, row.range_at) == (
        (0, 1),
        (2,),
        (3,),
        (4,),
        (5, 6, 7),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3.5-5.0", ReferenceRange(Decimal("3.5"), Decimal("5.0"), "3.5-5.0")),
        ("[3.5 to 5.0]", ReferenceRange(Decimal("3.5"), Decimal("5.0"), "3.5-5.0")),
        ("<5", ReferenceRange(None, Decimal("5"), "<5")),
        ("\u2264 5", ReferenceRange(None, Decimal("5"), "<=5")),
        (">60", ReferenceRange(Decimal("60"), None, ">60")),
        ("5.0-3.5", None),
        ("H", None),
    ],
)
def test_reference_ranges(text: str, expected: ReferenceRange | None) -> None:
    assert parse_range(text) == expected
