"""The lab catalogue maps printed names to LOINC and every unit in it is valid UCUM (ingest/labs.py, https://loinc.org, https://ucum.org/ucum)."""

from __future__ import annotations

import re

import pytest

from ingest import labs
from ingest.units import is_ucum


@pytest.mark.parametrize(
    ("printed", "code", "unit"),
    [
        ("HbA1c", "4548-4", "%"),
        ("Hemoglobin A1c", "4548-4", "%"),
        ("Glucose", "2339-0", "mg/dL"),
        ("Glucose, Serum", "2345-7", "mg/dL"),
        ("Creatinine", "2160-0", "mg/dL"),
        ("eGFR", "98979-8", "mL/min/{1.73_m2}"),
        ("ALT (SGPT)", "1742-6", "U/L"),
        ("AST", "1920-8", "U/L"),
        ("TSH", "3016-3", "m[IU]/L"),
        ("Vitamin D, 25-Hydroxy", "62292-8", "ng/mL"),
        ("Ferritin", "2276-4", "ng/mL"),
        ("WBC", "6690-2", "10*3/uL"),
        ("Hgb", "718-7", "g/dL"),
        ("LDL Cholesterol", "13457-7", "mg/dL"),
        ("Sodium", "2951-2", "mmol/L"),
        ("BUN", "3094-0", "mg/dL"),
    ],
)
def test_printed_names_find_their_loinc_code(printed: str, code: str, unit: str) -> None:
    test = labs.find_test(printed)
    assert test is not None
    assert (test.code, test.unit) == (code, unit)


def test_names_are_folded_for_lookup() -> None:
    assert labs.find_test("  hemoglobin   a1c ") is labs.find_test("Hemoglobin-A1c")
    assert labs.find_test("No Such Test") is None


def test_common_panels_are_covered() -> None:
    panels = {t.panel for t in labs.CATALOGUE}
    assert {"CBC", "BMP", "CMP", "LIPID", "DIABETES", "THYROID", "VITAMINS", "IRON"} <= panels


def test_codes_are_well_formed_loinc_with_a_valid_check_digit() -> None:
    for test in labs.CATALOGUE:
        assert re.fullmatch(r"\d{1,7}-\d", test.code), test.code
        digits, check = test.code.split("-")
        # LOINC check digit: Luhn (mod 10) over the code digits.
        total = 0
        for i, ch in enumerate(reversed(digits)):
            d = int(ch) * (2 if i % 2 == 0 else 1)
            total += d // 10 + d % 10
        assert (10 - total % 10) % 10 == int(check), test.code


def test_every_unit_is_valid_ucum() -> None:
    for test in labs.CATALOGUE:
        for unit in test.units:
            assert is_ucum(unit), (test.code, unit)
    for printed, unit in labs.PRINTED_UNITS.items():
        assert is_ucum(unit), (printed, unit)


def test_codes_and_names_are_unique() -> None:
    assert len({t.code for t in labs.CATALOGUE}) == len(labs.CATALOGUE)
    assert len(labs.BY_NAME) == sum(len({labs.normalise_name(n) for n in t.names}) for t in labs.CATALOGUE)


@pytest.mark.parametrize(
    ("printed", "ucum"),
    [
        ("mg/dl", "mg/dL"),
        ("x10^3/uL", "10*3/uL"),
        ("K/uL", "10*3/uL"),
        ("mIU/L", "m[IU]/L"),
        ("mEq/L", "meq/L"),
    ],
)
def test_printed_units_map_to_ucum(printed: str, ucum: str) -> None:
    assert labs.ucum_unit(printed) == ucum
