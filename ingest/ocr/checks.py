"""Checks that decide whether a read lab row may be final: code, unit, range/flag agreement, OCR confidence (https://hl7.org/fhir/R4/valueset-observation-status.html).

A row is certain only when its test name is in the catalogue, its unit is a unit of that LOINC
term, its value agrees with both its reference range and its printed flag, and (for OCR) the
recogniser was confident of the value, range and flag and read the value as printed. Every
failed check is a reason; a row with reasons becomes a ``preliminary`` Observation and a Problem.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ingest import labs
from ingest.labs import LabTest
from ingest.ocr.lines import Line
from ingest.ocr.rows import LabRow

MIN_CONFIDENCE = 70.0  # Tesseract word confidence (0-100) under which a value/range/flag is doubted
_NAME_CUTOFF = 0.84
_UNIT_CUTOFF = 0.6
# Glyphs OCR confuses in sans-serif text, folded together before looking names and units up.
_CONFUSABLE = str.maketrans({"1": "l", "i": "l", "|": "l", "!": "l", "0": "o", "*": "^", "µ": "u", "μ": "u"})


def _fold(text: str) -> str:
    return text.casefold().translate(_CONFUSABLE)


def _fold_name(text: str) -> str:
    return _fold(labs.normalise_name(text))


def _fold_unit(text: str) -> str:
    # "x10^3/uL" comes back as "x10%3/uL", "x10* 3/uL" or "x10°3/uL": one fold for the power sign.
    return _fold(re.sub(r"10[\^%*°\"'\u201d]+", "10^", "".join(text.split())))


def _unique(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    clash: set[str] = set()
    for key, value in pairs:
        if key in out and out[key] != value:
            clash.add(key)
        out[key] = value
    return {k: v for k, v in out.items() if k not in clash}


_NAMES_FOLDED: dict[str, str] = _unique([(_fold_name(k), t.code) for k, t in labs.BY_NAME.items()])
_UNITS_FOLDED: dict[str, str] = _unique(
    [(_fold_unit(k), v) for k, v in labs.PRINTED_UNITS.items()]
    + [(_fold_unit(u), u) for t in labs.CATALOGUE for u in t.units]
)


@dataclass(frozen=True, slots=True)
class CheckedRow:
    """A parsed row with its catalogue test, UCUM unit, interpretation and the reasons to doubt it."""

    line: Line
    row: LabRow
    test: LabTest | None
    unit: str | None
    interpretation: str | None
    reasons: tuple[str, ...]

    @property
    def final(self) -> bool:
        return not self.reasons


def find_test(name: str) -> tuple[LabTest | None, str | None]:
    """The catalogue test for a name as read, and a reason when the match was only approximate."""
    exact = labs.find_test(name)
    if exact is not None:
        return exact, None
    folded = _fold_name(name)
    code = _NAMES_FOLDED.get(folded)
    if code is not None:
        return labs.BY_CODE[code], None
    close = difflib.get_close_matches(folded, list(_NAMES_FOLDED), n=2, cutoff=_NAME_CUTOFF)
    if close and (len(close) == 1 or _NAMES_FOLDED[close[0]] == _NAMES_FOLDED[close[1]]):
        test = labs.BY_CODE[_NAMES_FOLDED[close[0]]]
        return test, f"test name read as {name!r}, taken as {test.names[0]!r}"
    return None, None


def find_unit(printed: str, test: LabTest | None) -> tuple[str | None, str | None]:
    """The UCUM code for a unit as read, and a reason when it was guessed from the test's units."""
    if not printed:
        return None, None
    exact = labs.ucum_unit(printed)
    if exact is not None:
        return exact, None
    folded = _fold_unit(printed)
    hit = _UNITS_FOLDED.get(folded)
    if hit is not None:
        return hit, None
    if test is None:
        return None, None
    candidates = {k: v for k, v in _UNITS_FOLDED.items() if v in test.units}
    close = difflib.get_close_matches(folded, list(candidates), n=1, cutoff=_UNIT_CUTOFF)
    if close:
        unit = candidates[close[0]]
        return unit, f"unit read as {printed!r}, taken as {unit!r}"
    return None, None


def expected_interpretation(row: LabRow) -> str | None:
    """H, L or N from the value against the printed range; None without a range."""
    if row.range is None:
        return None
    if row.range.low is not None and row.value < row.range.low:
        return "L"
    if row.range.high is not None and row.value > row.range.high:
        return "H"
    return "N"


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def _range_decimals(row: LabRow) -> int:
    if row.range is None:
        return 0
    bounds = [b for b in (row.range.low, row.range.high) if b is not None]
    return max((_decimals(str(b)) for b in bounds), default=0)


def _flag_agrees(flag: str | None, expected: str) -> bool:
    if flag in (None, "N"):
        return expected == "N"
    if flag in ("H", "HH"):
        return expected == "H"
    if flag in ("L", "LL"):
        return expected == "L"
    return expected != "N"  # A / AA: abnormal either way


def check(line: Line, row: LabRow, min_confidence: float = MIN_CONFIDENCE) -> CheckedRow:
    """Resolve a parsed row against the catalogue and list every reason to doubt it."""
    reasons: list[str] = []
    test, why = find_test(row.name)
    if why:
        reasons.append(why)
    if test is None:
        reasons.append(f"unknown test {row.name!r}: no LOINC code")
    unit, why = find_unit(row.unit, test)
    if why:
        reasons.append(why)
    if unit is None:
        reasons.append(f"unit {row.unit!r} not recognised" if row.unit else "no unit")
    elif test is not None and unit not in test.units:
        reasons.append(f"unit {unit!r} is not a unit of LOINC {test.code} ({', '.join(test.units)})")
    expected = expected_interpretation(row)
    interpretation = row.flag or expected
    if expected is not None and row.comparator is None and not _flag_agrees(row.flag, expected):
        printed = row.flag or "no flag"
        reasons.append(
            f"value {row.value_text} against range {row.range.text if row.range else ''} "
            f"means {expected}, but the report says {printed}"
        )
        interpretation = row.flag
    if line.source == "ocr":
        if row.range is None:
            reasons.append("no reference range read")
        if row.repaired:
            reasons.append(f"value repaired from OCR text to {row.value_text}")
        range_decimals = _range_decimals(row)
        value_decimals = _decimals(row.value_text)
        if (range_decimals and not value_decimals) or value_decimals > range_decimals + 1:
            reasons.append(
                f"value {row.value_text} and range {row.range.text if row.range else ''} "
                "differ in precision (decimal point misread?)"
            )
        confidence = line.confidence(row.value_at + row.range_at + row.flag_at)
        if confidence < min_confidence:
            reasons.append(f"low OCR confidence {confidence:.0f} for value, range or flag")
    return CheckedRow(line, row, test, unit, interpretation, tuple(reasons))


def score(checked: CheckedRow) -> tuple[bool, int, float]:
    """Ordering of alternative readings of one line: a known test, then fewer reasons, then confidence."""
    row = checked.row
    confidence = checked.line.confidence(row.value_at + row.range_at + row.flag_at)
    return (checked.test is not None, -len(checked.reasons), confidence)
