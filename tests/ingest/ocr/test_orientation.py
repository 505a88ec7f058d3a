"""Pages are turned upright and levelled before OCR (ingest/ocr/orientation.py, https://tesseract-ocr.github.io/tessdoc/ImproveQuality.html)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from ingest.ocr import ingest_lab_report
from ingest.ocr.orientation import line_height, prepare, skew_angle
from tests.ingest.lab_fixtures import make_report, render_image


@pytest.fixture(scope="module")
def page() -> Image.Image:
    return render_image(make_report(seed=7, n_rows=10), dpi=150)


@pytest.mark.parametrize("angle", [-4.0, -1.5, 0.0, 2.5, 6.0])
def test_skew_is_measured_to_a_tenth_of_a_degree(page: Image.Image, angle: float) -> None:
    tilted = page.rotate(angle, expand=True, fillcolor=255, resample=Image.Resampling.BICUBIC)
    assert skew_angle(tilted) == pytest.approx(-angle, abs=0.25)


def test_line_height_of_a_level_page(page: Image.Image) -> None:
    height = line_height(page)
    assert height is not None and 10 <= height <= 30


@pytest.mark.parametrize(("turn", "expected"), [(90, 90), (270, 270)])
def test_sideways_pages_are_turned_upright(page: Image.Image, turn: int, expected: int) -> None:
    sideways = page.rotate(turn, expand=True, fillcolor=255)
    prepared = prepare(sideways)
    assert prepared.rotation == expected
    assert prepared.orientation_source in ("osd", "trial")
    assert prepared.image.width < prepared.image.height  # portrait again


@pytest.mark.slow
def test_an_upside_down_scan_is_read(tmp_path: Path) -> None:
    report = make_report(seed=8, n_rows=8)
    path = tmp_path / "upside-down.png"
    render_image(report).rotate(180).save(path)
    result = ingest_lab_report(path, "Patient/synthetic")
    codes = {c["code"] for o in result.resources_of("Observation") for c in o["code"]["coding"]}
    assert codes == {r.loinc for r in report.rows}
    assert any("turned 180 degrees" in p.message for p in result.problems)
