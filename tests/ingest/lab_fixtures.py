"""Synthetic lab reports with known ground truth: text PDF, clean PNG, rotated blurred PNG (no real person's data).

Every report is generated from a seed: which tests, their values (some out of range, flagged H/L
correctly) and the synthetic patient header. The ground truth (:class:`TruthRow`) is what an
ingest must recover: LOINC code, value, UCUM unit and reference range. Nothing here reads
``ingest.labs``: the expected codes are written out independently.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
DEJAVU_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


@dataclass(frozen=True)
class TestDef:
    """How a test is printed and what it must become."""

    printed: str
    loinc: str
    printed_unit: str
    ucum: str
    low: Decimal | None
    high: Decimal | None
    decimals: int


@dataclass(frozen=True)
class TruthRow:
    """One printed result row and its expected FHIR content."""

    printed: str
    loinc: str
    value: Decimal
    value_text: str
    printed_unit: str
    ucum: str
    low: Decimal | None
    high: Decimal | None
    range_text: str
    flag: str  # "H", "L" or "" (printed), the interpretation is "N" when empty

    @property
    def interpretation(self) -> str:
        return self.flag or "N"


@dataclass(frozen=True)
class LabReport:
    seed: int
    patient: str
    rows: tuple[TruthRow, ...]

    def row(self, loinc: str) -> TruthRow:
        return next(r for r in self.rows if r.loinc == loinc)


def _d(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _t(
    printed: str, loinc: str, unit: str, ucum: str, low: str | None, high: str | None, dec: int
) -> TestDef:
    return TestDef(printed, loinc, unit, ucum, _d(low), _d(high), dec)


# Printed name, expected LOINC, printed unit, expected UCUM, range, decimals of the printed value.
TESTS: tuple[TestDef, ...] = (
    _t("WBC", "6690-2", "x10^3/uL", "10*3/uL", "4.0", "11.0", 1),
    _t("RBC", "789-8", "x10^6/uL", "10*6/uL", "4.20", "5.80", 2),
    _t("Hemoglobin", "718-7", "g/dL", "g/dL", "13.0", "17.0", 1),
    _t("Hematocrit", "4544-3", "%", "%", "38.0", "50.0", 1),
    _t("MCV", "787-2", "fL", "fL", "80", "100", 0),
    _t("MCH", "785-6", "pg", "pg", "27.0", "33.0", 1),
    _t("MCHC", "786-4", "g/dL", "g/dL", "32.0", "36.0", 1),
    _t("RDW", "788-0", "%", "%", "11.5", "14.5", 1),
    _t("Platelets", "777-3", "x10^3/uL", "10*3/uL", "150", "400", 0),
    _t("Neutrophils", "770-8", "%", "%", "40", "75", 0),
    _t("Lymphocytes", "736-9", "%", "%", "20", "45", 0),
    _t("Glucose", "2339-0", "mg/dL", "mg/dL", "70", "99", 0),
    _t("BUN", "3094-0", "mg/dL", "mg/dL", "7", "20", 0),
    _t("Creatinine", "2160-0", "mg/dL", "mg/dL", "0.60", "1.20", 2),
    _t("eGFR", "98979-8", "mL/min/1.73m2", "mL/min/{1.73_m2}", "60", None, 0),
    _t("Sodium", "2951-2", "mmol/L", "mmol/L", "136", "145", 0),
    _t("Potassium", "2823-3", "mmol/L", "mmol/L", "3.5", "5.1", 1),
    _t("Chloride", "2075-0", "mmol/L", "mmol/L", "98", "107", 0),
    _t("CO2", "2028-9", "mmol/L", "mmol/L", "22", "29", 0),
    _t("Calcium", "17861-6", "mg/dL", "mg/dL", "8.6", "10.3", 1),
    _t("Total Protein", "2885-2", "g/dL", "g/dL", "6.0", "8.3", 1),
    _t("Albumin", "1751-7", "g/dL", "g/dL", "3.5", "5.0", 1),
    _t("Total Bilirubin", "1975-2", "mg/dL", "mg/dL", "0.2", "1.2", 1),
    _t("Alkaline Phosphatase", "6768-6", "U/L", "U/L", "44", "147", 0),
    _t("ALT", "1742-6", "U/L", "U/L", "7", "56", 0),
    _t("AST", "1920-8", "U/L", "U/L", "10", "40", 0),
    _t("Total Cholesterol", "2093-3", "mg/dL", "mg/dL", None, "200", 0),
    _t("Triglycerides", "2571-8", "mg/dL", "mg/dL", None, "150", 0),
    _t("HDL Cholesterol", "2085-9", "mg/dL", "mg/dL", "40", None, 0),
    _t("LDL Cholesterol", "13457-7", "mg/dL", "mg/dL", None, "100", 0),
    _t("HbA1c", "4548-4", "%", "%", "4.0", "5.6", 1),
    _t("TSH", "3016-3", "mIU/L", "m[IU]/L", "0.40", "4.00", 2),
    _t("Free T4", "3024-7", "ng/dL", "ng/dL", "0.8", "1.8", 1),
    _t("Vitamin D, 25-Hydroxy", "62292-8", "ng/mL", "ng/mL", "30", "100", 0),
    _t("Ferritin", "2276-4", "ng/mL", "ng/mL", "30", "400", 0),
    _t("Vitamin B12", "2132-9", "pg/mL", "pg/mL", "200", "900", 0),
    _t("CRP", "1988-5", "mg/L", "mg/L", None, "5.0", 1),
)

FIRST = ("Alex", "Sam", "Robin", "Jordan", "Casey", "Morgan", "Taylor", "Jamie")
LAST = ("Example", "Sample", "Testcase", "Fixture", "Synthetic", "Placeholder")


def _range_text(t: TestDef) -> str:
    if t.low is not None and t.high is not None:
        return f"{t.low}-{t.high}"
    if t.high is not None:
        return f"<{t.high}"
    return f">{t.low}"


def _value(t: TestDef, rnd: random.Random) -> tuple[Decimal, str]:
    lo = float(t.low) if t.low is not None else float(t.high or 1) * 0.3
    hi = float(t.high) if t.high is not None else float(t.low or 1) * 2.0
    span = hi - lo
    roll = rnd.random()
    if roll < 0.15 and t.low is not None:
        x = lo - span * rnd.uniform(0.05, 0.4)
    elif roll < 0.30 and t.high is not None:
        x = hi + span * rnd.uniform(0.05, 0.4)
    else:
        x = rnd.uniform(lo, hi)
    x = max(x, 10.0**-t.decimals)
    text = f"{x:.{t.decimals}f}"
    return Decimal(text), text


def make_report(seed: int, n_rows: int = 16) -> LabReport:
    """A synthetic report: ``n_rows`` distinct tests, values around their ranges, correct flags."""
    rnd = random.Random(seed)
    chosen = rnd.sample(TESTS, k=min(n_rows, len(TESTS)))
    rows = []
    for t in chosen:
        value, text = _value(t, rnd)
        flag = ""
        if t.low is not None and value < t.low:
            flag = "L"
        elif t.high is not None and value > t.high:
            flag = "H"
        rows.append(
            TruthRow(
                t.printed, t.loinc, value, text, t.printed_unit, t.ucum, t.low, t.high, _range_text(t), flag
            )
        )
    patient = f"{rnd.choice(LAST)}, {rnd.choice(FIRST)} (SYNTHETIC)"
    return LabReport(seed, patient, tuple(rows))


HEADER = ("Test", "Result", "Flag", "Units", "Reference Range")
COLUMNS_MM = (15.0, 80.0, 105.0, 120.0, 155.0)  # left edge of each column on an A4 page


def _header_lines(report: LabReport) -> list[str]:
    return [
        "SYNTHETIC LABORATORY - TEST DOCUMENT",
        f"Patient: {report.patient}    Report No: SYN-{report.seed:05d}",
        "Collected: 2024-03-05 08:15    Reported: 2024-03-05 14:40",
    ]


def _cells(row: TruthRow) -> tuple[str, str, str, str, str]:
    return (row.printed, row.value_text, row.flag, row.printed_unit, row.range_text)


def render_pdf(report: LabReport, path: Path) -> Path:
    """A one-page A4 PDF with a real text layer (core Helvetica font)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 13)
    y = 18.0
    for i, line in enumerate(_header_lines(report)):
        pdf.set_font("Helvetica", "B" if i == 0 else "", 13 if i == 0 else 10)
        pdf.text(15, y, line)
        y += 7
    y += 5
    pdf.set_font("Helvetica", "B", 10)
    for x, title in zip(COLUMNS_MM, HEADER, strict=True):
        pdf.text(x, y, title)
    y += 8
    pdf.set_font("Helvetica", "", 10)
    for row in report.rows:
        for x, cell in zip(COLUMNS_MM, _cells(row), strict=True):
            if cell:
                pdf.text(x, y, cell)
        y += 7
    pdf.text(15, y + 8, "Results reviewed electronically. This is a synthetic test document.")
    pdf.output(str(path))
    return path


def make_no_table_pdf(path: Path) -> Path:
    """A PDF with text but no result table (bad input)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.add_page()
    pdf.set_font("Helvetica", "", 11)
    pdf.multi_cell(0, 6, "Dear colleague,\nthank you for referring this synthetic patient.\nKind regards.")
    pdf.output(str(path))
    return path


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = DEJAVU_BOLD if bold else DEJAVU
    if path.exists():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def render_image(report: LabReport, dpi: int = 200) -> Image.Image:
    """The report as a clean grayscale scan at ``dpi`` (A4)."""
    px_per_mm = dpi / 25.4
    width, height = round(210 * px_per_mm), round(297 * px_per_mm)
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    size = round(3.6 * px_per_mm)  # ~10 pt
    body, bold = _font(size), _font(size, bold=True)
    y = 14 * px_per_mm
    for i, line in enumerate(_header_lines(report)):
        draw.text((15 * px_per_mm, y), line, fill=0, font=_font(round(size * 1.25), True) if i == 0 else body)
        y += 7 * px_per_mm
    y += 5 * px_per_mm
    for x, title in zip(COLUMNS_MM, HEADER, strict=True):
        draw.text((x * px_per_mm, y), title, fill=0, font=bold)
    y += 8 * px_per_mm
    for row in report.rows:
        for x, cell in zip(COLUMNS_MM, _cells(row), strict=True):
            if cell:
                draw.text((x * px_per_mm, y), cell, fill=0, font=body)
        y += 7 * px_per_mm
    draw.text((15 * px_per_mm, y + 8 * px_per_mm), "Results reviewed electronically.", fill=0, font=body)
    return img


def degrade(img: Image.Image, angle: float = 93.0, blur: float = 1.2, seed: int = 0) -> Image.Image:
    """A phone-photo-like copy: rotated by ``angle`` degrees (counter-clockwise), blurred, noisy."""
    rotated = img.rotate(angle, expand=True, fillcolor=255, resample=Image.Resampling.BICUBIC)
    blurred = rotated.filter(ImageFilter.GaussianBlur(blur))
    pixels = np.asarray(blurred, dtype=np.float64)
    noise = np.random.default_rng(seed).normal(0.0, 12.0, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8), mode="L")


def render_png(report: LabReport, path: Path, *, degraded: bool = False, dpi: int = 200) -> Path:
    img = render_image(report, dpi=dpi)
    if degraded:
        img = degrade(img, seed=report.seed)
    img.save(path, format="PNG")
    return path
