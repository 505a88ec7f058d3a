"""UCUM canonical units (https://ucum.org/ucum) for quantity search, checked against ucumvert/pint."""

from __future__ import annotations

import csv
import importlib.resources
import re
from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.search.ucum import Canonical, canonical, to_canonical

BARE_FACTOR = re.compile(r"(^|[./(])\d+($|[./)])")
COMMON = [
    "g",
    "kg",
    "mg",
    "ug",
    "[lb_av]",
    "[oz_av]",
    "m",
    "cm",
    "mm",
    "[in_i]",
    "[ft_i]",
    "L",
    "mL",
    "dL",
    "s",
    "min",
]
COMMON += [
    "h",
    "d",
    "wk",
    "mo",
    "a",
    "mm[Hg]",
    "kPa",
    "mg/dL",
    "mmol/L",
    "g/L",
    "%",
    "/min",
    "{beats}/min",
    "kg/m2",
]


def ucum_examples() -> list[str]:
    text = (
        importlib.resources.files("ucumvert").joinpath("vendor/ucum_examples.tsv").read_text(encoding="utf-8")
    )
    return [row[1] for row in csv.reader(text.splitlines()[1:], delimiter="\t") if len(row) > 1]


def test_kilogram_and_pound_share_the_gram_canon() -> None:
    kg, lb = canonical("kg"), canonical("[lb_av]")
    assert kg == Canonical("g", 1000.0) and lb is not None and lb.code == "g"
    assert lb.factor == pytest.approx(453.59237)
    assert to_canonical(2.0, "[lb_av]") == (907.18474, "g")


def test_celsius_and_fahrenheit_are_affine() -> None:
    assert to_canonical(0.0, "Cel") == (273.15, "K")
    assert to_canonical(100.0, "Cel") == (373.15, "K")
    assert to_canonical(32.0, "[degF]") == pytest.approx((273.15, "K"))
    assert to_canonical(212.0, "[degF]") == pytest.approx((373.15, "K"))


def test_concentrations_convert_between_mass_units_exactly() -> None:
    assert to_canonical(100.0, "mg/dL") == to_canonical(1.0, "g/L")


def test_pressure_units_share_a_canon() -> None:
    mmhg, kpa = canonical("mm[Hg]"), canonical("kPa")
    assert mmhg is not None and kpa is not None and mmhg.code == kpa.code
    assert mmhg.factor / kpa.factor == pytest.approx(0.133322)


def test_percent_and_rates() -> None:
    assert canonical("%") == Canonical("1", 0.01)
    per_minute = canonical("/min")
    assert per_minute == canonical("{beats}/min")
    assert per_minute is not None and per_minute.code == "s-1" and per_minute.factor == pytest.approx(1 / 60)


def test_mole_stays_a_dimension() -> None:
    mmol, per_litre = canonical("mmol/L"), canonical("/L")
    assert mmol is not None and per_litre is not None and mmol.code != per_litre.code


def test_arbitrary_units_are_not_comparable_with_numbers() -> None:
    iu = canonical("[IU]/L")
    assert iu is not None and iu.code == "[iU].m-3"


@pytest.mark.parametrize(
    "unit", ["", "not a unit", "kg ", "[pH]", "Cel/h", "dB", "m/(s", "{unclosed", "Torr"]
)
def test_not_convertible_units_give_none(unit: str) -> None:
    assert canonical(unit) is None


def test_every_common_unit_has_a_canon() -> None:
    assert all(canonical(u) is not None for u in COMMON)


def test_almost_every_ucum_example_code_parses() -> None:
    codes = ucum_examples()
    failing = [c for c in codes if canonical(c) is None]
    assert len(codes) > 800
    assert set(failing) <= {"dB", "[pH]", "Torr"}  # special units and a code the essence lacks


def test_factors_agree_with_pint_for_units_of_the_same_canon() -> None:
    from pint.errors import UndefinedUnitError
    from ucumvert import PintUcumRegistry

    registry = PintUcumRegistry()
    groups: dict[str, list[str]] = defaultdict(list)
    for code in ucum_examples() + COMMON:
        form = canonical(code)
        # pint (via ucumvert) drops bare factors inside parentheses, `L/(24.h)`: left out
        if form is not None and form.offset == 0 and "[" not in form.code and not BARE_FACTOR.search(code):
            groups[form.code].append(code)
    pairs = [(codes[0], other) for codes in groups.values() for other in dict.fromkeys(codes[1:4])]
    compared = 0
    for a, b in pairs:
        fa, fb = canonical(a), canonical(b)
        assert fa is not None and fb is not None
        try:
            expected = (1 * registry.from_ucum(a)).to(registry.from_ucum(b)).magnitude
        except UndefinedUnitError:  # units pint lacks (absorbance, ...)
            continue
        # rel 1e-5: UCUM defines some units (mm[Hg] = 133.3220 Pa) more coarsely than pint does
        assert fa.factor / fb.factor == pytest.approx(expected, rel=1e-5), (a, b)
        compared += 1
    assert compared > 60


units = st.sampled_from(COMMON)


@given(units, units)
def test_product_and_quotient_multiply_factors(a: str, b: str) -> None:
    fa, fb = canonical(a), canonical(b)
    product, quotient = canonical(f"({a}).({b})"), canonical(f"({a})/({b})")
    assert fa is not None and fb is not None and product is not None and quotient is not None
    assert product.factor == pytest.approx(fa.factor * fb.factor, rel=1e-12)
    assert quotient.factor == pytest.approx(fa.factor / fb.factor, rel=1e-12)
    if fa.code == fb.code:
        assert quotient.code == "1"


@given(st.text(max_size=12))
def test_canonical_never_raises(text: str) -> None:
    form = canonical(text)
    assert form is None or (form.code and form.factor > 0)
