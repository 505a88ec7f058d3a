"""Lab report file (text PDF, scanned PDF, PNG/JPEG/TIFF) -> one transaction Bundle and a problem report (https://hl7.org/fhir/R4/diagnosticreport.html).

Pure: bytes in, a Bundle dict and :class:`ingest.report.Problem`s out. A PDF page with a text
layer is read with pdfplumber; any other page is turned upright, levelled and recognised by
Tesseract. Each line is parsed as a result row and checked (:mod:`ingest.ocr.checks`); an OCR
row that fails a check is read again from differently cleaned crops and the best reading kept.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ingest.document import FileAdapter, bundle
from ingest.observation import SampleError, fhir_datetime
from ingest.ocr import checks, lab_report
from ingest.ocr.checks import CheckedRow
from ingest.ocr.lines import Line
from ingest.ocr.orientation import prepare
from ingest.ocr.pdf import PdfError, read_pdf
from ingest.ocr.rows import parse_tokens
from ingest.ocr.tesseract import OcrUnavailable, recognise, reread_line
from ingest.pipeline import ReadContext
from ingest.report import IngestResult

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
UPSIDE_DOWN_CONFIDENCE = (
    50.0  # median word confidence under which an upright-looking page is tried upside down
)
_COLLECTED = re.compile(
    r"(?:collected|collection(?:\s+date)?|date\s+collected|specimen\s+date|drawn)\s*:?\s*"
    r"(?P<date>\d{4}-\d{2}-\d{2})(?:[ T](?P<time>\d{2}:\d{2}(?::\d{2})?))?",
    re.IGNORECASE,
)


def sniff(data: bytes) -> str | None:
    """The MIME type of a lab report file from its first bytes (PDF, PNG, JPEG, TIFF), or None."""
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    return None


@dataclass
class _Page:
    number: int
    lines: list[Line]
    image: Image.Image | None  # the prepared image OCR read, for re-reading lines


def _pages(data: bytes, mime: str, ctx: ReadContext) -> Iterator[_Page]:
    if mime == "application/pdf":
        for page in read_pdf(data):
            if page.image is None:
                yield _Page(page.number, list(page.lines), None)
            else:
                yield _ocr_page(page.image, page.number, ctx)
        return
    with Image.open(io.BytesIO(data)) as img:
        for index in range(getattr(img, "n_frames", 1)):
            img.seek(index)
            yield _ocr_page(img.copy(), index + 1, ctx)


def _page_confidence(lines: list[Line]) -> float:
    confidences = sorted(w.confidence for line in lines for w in line.words)
    return confidences[len(confidences) // 2] if confidences else 0.0


def _ocr_page(img: Image.Image, number: int, ctx: ReadContext) -> _Page:
    prepared = prepare(img)
    lines = recognise(prepared.image, number)
    if prepared.orientation_source == "profile" and _page_confidence(lines) < UPSIDE_DOWN_CONFIDENCE:
        turned = prepare(img, rotation=180)
        turned_lines = recognise(turned.image, number)
        if _page_confidence(turned_lines) > _page_confidence(lines):
            prepared, lines = turned, turned_lines
    if prepared.rotation or prepared.skew:
        ctx.problem(
            f"page {number}",
            f"page was turned {prepared.rotation} degrees ({prepared.orientation_source}) "
            f"and levelled by {prepared.skew:+.1f} degrees before OCR",
            "information",
        )
    ctx.counts["ocr_pages"] += 1
    return _Page(number, lines, prepared.image)


def _looks_like_result(line: Line) -> bool:
    """True when the line starts with a known test name (so an unparsable line is worth reporting)."""
    tokens = line.tokens
    for width in range(min(4, len(tokens)), 0, -1):
        test, _ = checks.find_test(" ".join(tokens[:width]))
        if test is not None and any(ch.isdigit() for ch in " ".join(tokens[width:])):
            return True
    return False


def _best_reading(line: Line, page: _Page, min_confidence: float) -> CheckedRow | None:
    row = parse_tokens(line.tokens)
    first = None if row is None else checks.check(line, row, min_confidence)
    if line.source != "ocr" or page.image is None or (first is not None and first.final):
        return first
    if first is None and not _looks_like_result(line):
        return None
    candidates = [] if first is None else [first]
    for reading in reread_line(page.image, line):
        alt = parse_tokens(reading.tokens)
        if alt is None:
            continue
        checked = checks.check(reading, alt, min_confidence)
        if first is None or first.test is None or checked.test == first.test:
            candidates.append(checked)
    if not candidates:
        return None
    return max(candidates, key=checks.score)


def _effective(lines: Iterable[Line], ctx: ReadContext) -> str | None:
    for line in lines:
        m = _COLLECTED.search(line.text)
        if not m:
            continue
        if m["time"] and ctx.default_tz is not None:
            try:
                return fhir_datetime(f"{m['date']}T{m['time']}", ctx.default_tz)
            except SampleError:
                pass
        try:
            return fhir_datetime(m["date"])
        except SampleError:
            ctx.problem(line.location, f"collection date {m['date']!r} is not a valid date", "warning")
    return None


def read_report(data: bytes, ctx: ReadContext) -> lab_report.ReadReport | None:
    """Read one lab report's rows; every difficulty becomes a problem in ``ctx``; None when nothing was read."""
    mime = sniff(data)
    if mime is None:
        ctx.problem("byte 0", "not a lab report file: expected a PDF, PNG, JPEG or TIFF signature")
        return None
    min_confidence = float(ctx.options.get("min_confidence", checks.MIN_CONFIDENCE))
    rows: list[CheckedRow] = []
    all_lines: list[Line] = []
    try:
        for page in _pages(data, mime, ctx):
            all_lines.extend(page.lines)
            for line in page.lines:
                checked = _best_reading(line, page, min_confidence)
                if checked is None:
                    if _looks_like_result(line):
                        ctx.problem(line.location, f"result line could not be read: {line.text!r}")
                        ctx.counts["rejected"] += 1
                    continue
                if checked.test is None and not checked.row.unit and checked.row.range is None:
                    continue  # "Patient ID: 12345" and the like: a number, but not a result
                rows.append(checked)
    except PdfError as exc:
        ctx.problem("byte 0", str(exc))
        return None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        ctx.problem("byte 0", f"not a readable image: {exc}")
        return None
    except OcrUnavailable as exc:
        ctx.problem("", f"OCR is not available (install tesseract-ocr): {exc}", "fatal")
        return None
    ctx.counts["records"] += len(rows)
    if not rows:
        where = f"page 1 line {len(all_lines)}" if all_lines else "page 1"
        ctx.problem(where, f"no lab result table found ({len(all_lines)} text lines read)")
        return None
    for location, message in lab_report.reasons_by_row(rows):
        ctx.problem(location, message, "warning")
    ctx.counts["preliminary"] += sum(1 for r in rows if not r.final)
    return lab_report.ReadReport(ctx.file, data, mime, tuple(rows), _effective(all_lines, ctx))


def ingest_bytes(data: bytes, ctx: ReadContext, patient_ref: str) -> list[dict[str, Any]]:
    """The transaction Bundle(s) for one lab report's bytes (none when nothing could be read)."""
    read = read_report(data, ctx)
    if read is None:
        return []
    made = lab_report.entries(read, patient_ref=patient_ref)
    ctx.counts["observations"] += len(made.observations)
    ctx.counts["bundles"] += 1
    return [bundle(made.all, source=lab_report.SOURCE, file=ctx.file, recorded=ctx.options.get("recorded"))]


ADAPTER = FileAdapter(lab_report.SOURCE, ingest_bytes)


def ingest_lab_report(
    path: str | Path,
    patient_ref: str,
    *,
    options: dict[str, Any] | None = None,
    ctx: ReadContext | None = None,
) -> IngestResult:
    """Ingest one lab report file: Bundle, problems and counts as an :class:`IngestResult`."""
    result: IngestResult = ADAPTER.run(path, patient_ref, options=options, ctx=ctx)
    return result
