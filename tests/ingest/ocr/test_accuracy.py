"""Over several generated reports at least 95% of rows come out right, and every wrong one is preliminary and reported (ingest/ocr/, https://hl7.org/fhir/R4/observation.html)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ingest.ocr import ingest_lab_report
from ingest.report import IngestResult
from tests.ingest.lab_fixtures import LabReport, TruthRow, make_report, render_pdf, render_png

SEEDS = (101, 202, 303, 404, 505)
pytestmark = pytest.mark.slow


def _right(obs: dict[str, Any] | None, row: TruthRow) -> bool:
    """Test, value, unit, range and interpretation all as printed."""
    if obs is None:
        return False
    quantity = obs.get("valueQuantity", {})
    ranges = obs.get("referenceRange") or [{}]
    low, high = ranges[0].get("low", {}).get("value"), ranges[0].get("high", {}).get("value")
    interpretation = (obs.get("interpretation") or [{}])[0].get("coding", [{}])[0].get("code")
    return (
        quantity.get("value") is not None
        and Decimal(str(quantity["value"])) == row.value
        and quantity.get("code") == row.ucum
        and (None if low is None else Decimal(str(low))) == row.low
        and (None if high is None else Decimal(str(high))) == row.high
        and interpretation == row.interpretation
    )


def _rows(report: LabReport, result: IngestResult) -> list[tuple[TruthRow, dict[str, Any] | None]]:
    by_code = {c["code"]: o for o in result.resources_of("Observation") for c in o["code"].get("coding", [])}
    return [(row, by_code.get(row.loinc)) for row in report.rows]


@pytest.fixture(scope="module")
def outcomes(
    tmp_path_factory: pytest.TempPathFactory,
) -> list[tuple[str, TruthRow, dict[str, Any] | None, IngestResult]]:
    folder = tmp_path_factory.mktemp("accuracy")
    out = []
    for seed in SEEDS:
        report = make_report(seed, n_rows=12 + seed % 9)
        files = (
            render_pdf(report, folder / f"{seed}.pdf"),
            render_png(report, folder / f"{seed}.png"),
            render_png(report, folder / f"{seed}-photo.png", degraded=True),
        )
        for path in files:
            result = ingest_lab_report(path, "Patient/synthetic")
            out += [(path.name, row, obs, result) for row, obs in _rows(report, result)]
    return out


def test_at_least_95_percent_of_rows_are_right(
    outcomes: list[tuple[str, TruthRow, dict[str, Any] | None, IngestResult]],
) -> None:
    right = sum(1 for _, row, obs, _ in outcomes if _right(obs, row))
    accuracy = right / len(outcomes)
    print(f"lab OCR accuracy: {right}/{len(outcomes)} rows right ({accuracy:.1%})")
    assert len(outcomes) >= 200
    assert accuracy >= 0.95


def test_every_wrong_row_is_preliminary_and_reported(
    outcomes: list[tuple[str, TruthRow, dict[str, Any] | None, IngestResult]],
) -> None:
    for name, row, obs, result in outcomes:
        if _right(obs, row):
            continue
        if obs is None:  # not read at all: an error names the line
            assert any(p.severity == "error" for p in result.problems), (name, row)
            continue
        assert obs["status"] == "preliminary", (name, row, obs.get("valueQuantity"))
        assert any(row.printed in p.message or "is preliminary" in p.message for p in result.problems), (
            name,
            row,
        )


def test_reports_differ_in_content() -> None:
    contents = {tuple(r.loinc for r in make_report(seed, n_rows=12 + seed % 9).rows) for seed in SEEDS}
    assert len(contents) == len(SEEDS)


def test_the_generated_files_are_what_the_truth_says(tmp_path: Path) -> None:
    import pdfplumber

    report = make_report(SEEDS[0])
    with pdfplumber.open(render_pdf(report, tmp_path / "r.pdf")) as pdf:
        text = pdf.pages[0].extract_text()
    for row in report.rows:
        assert row.printed in text and row.value_text in text and row.range_text in text
