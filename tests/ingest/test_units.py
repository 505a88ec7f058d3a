"""UCUM unit aliases, validation, conversion and number text (https://ucum.org/ucum)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import units


@pytest.mark.parametrize(
    ("written", "ucum"),
    [
        ("bpm", "/min"),
        ("count/min", "/min"),
        ("degC", "Cel"),
        ("°F", "[degF]"),
        ("lb", "[lb_av]"),
        ("mmHg", "mm[Hg]"),
        ("mg/dl", "mg/dL"),
        ("mmol<180.1558800000541>/L", "mmol/L"),
        ("kg/m^2", "kg/m2"),
        ("steps", "{steps}"),
        ("kg", "kg"),
        ("mm[Hg]", "mm[Hg]"),
        ("10*3/uL", "10*3/uL"),
    ],
)
def test_vendor_spellings_become_ucum_codes(written: str, ucum: str) -> None:
    assert units.canonical_unit(written) == ucum


@pytest.mark.parametrize("bad", ["parsecs", "bananas/min", "", "kg kg"])
def test_unknown_units_are_refused(bad: str) -> None:
    with pytest.raises(units.UnitError):
        units.canonical_unit(bad)


def test_measure_specific_aliases_come_first() -> None:
    assert units.canonical_unit("count", {"count": "kg/m2"}) == "kg/m2"


@pytest.mark.parametrize(
    ("value", "src", "dst", "out"),
    [
        ("1.8", "m", "cm", "180"),
        ("150", "[lb_av]", "kg", "68.0388555"),
        ("98.6", "[degF]", "Cel", "37"),
        ("5.75", "[ft_i]", "cm", "175.26"),
        ("1.5", "h", "min", "90"),
        ("310.15", "K", "Cel", "37"),
    ],
)
def test_conversions_are_exact_to_ten_digits(value: str, src: str, dst: str, out: str) -> None:
    assert units.convert(Decimal(value), src, dst) == Decimal(out)


def test_converting_between_dimensions_fails() -> None:
    with pytest.raises(units.UnitError):
        units.convert(Decimal(1), "kg", "cm")


@pytest.mark.parametrize("bad", ["", "abc", "1,5", "nan", "inf", "1e", "--1", True])
def test_parse_number_refuses_what_is_not_a_finite_number(bad: object) -> None:
    with pytest.raises(ValueError):
        units.parse_number(bad)  # type: ignore[arg-type]


@given(
    st.one_of(
        st.integers(min_value=-(10**12), max_value=10**12), st.floats(allow_nan=False, allow_infinity=False)
    )
)
def test_format_number_reads_back_as_the_same_json_number(n: int | float) -> None:
    back = units.json_number(units.parse_number(units.format_number(n)))
    assert back == n
    assert type(back) is type(n)


@pytest.mark.parametrize(
    ("value", "src", "dst"),
    [
        ("1e30", "[lb_av]", "kg"),  # an exact factor: more digits than the decimal context holds
        ("1e30", "[degF]", "Cel"),
        ("1e27", "/s", "/min"),
        ("1e400", "[ft_i]", "cm"),
        ("1e999999", "[in_i]", "cm"),  # beyond the context's largest exponent
        ("1e400", "K", "Cel"),  # through the UCUM library: no float holds it
        ("-1e400", "mg", "kg"),
    ],
)
def test_converting_a_value_out_of_range_is_a_value_range_error(value: str, src: str, dst: str) -> None:
    with pytest.raises(units.ValueRangeError, match="out of range"):
        units.convert(units.parse_number(value), src, dst)


_CONVERSIONS = sorted({*units._FACTORS, ("[degF]", "Cel"), ("Cel", "[degF]"), ("K", "Cel"), ("mg", "kg")})
_NUMBERS = st.one_of(
    st.from_regex(r"\A[+-]?(\d{1,40}(\.\d{0,40})?|\.\d{1,40})([eE][+-]?\d{1,8})?\Z"),
    st.text(max_size=30),
    st.sampled_from(
        ["inf", "-inf", "nan", "NaN", "sNaN", "Infinity", "1e400", "-1e400", "1e-400", "1e999999999"]
    ),
)


@given(_NUMBERS, st.sampled_from(_CONVERSIONS))
def test_any_numeric_text_converts_or_raises_only_the_modules_errors(
    text: str, pair: tuple[str, str]
) -> None:
    try:
        value = units.parse_number(text)
    except ValueError:
        return
    try:
        out = units.convert(value, *pair)
    except units.UnitError:
        return
    assert out.is_finite()
    units.json_number(out)
