"""PDF pages -> text-layer lines with pdfplumber, or page images to OCR when a page has no text layer (https://github.com/jsvine/pdfplumber#readme)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pdfplumber
from PIL import Image

from ingest.ocr.lines import Line, Word

RENDER_DPI = 300
_LINE_TOLERANCE = 3.0  # points: words whose tops differ by less sit on one line


class PdfError(ValueError):
    """The bytes are not a PDF pdfplumber can open."""


@dataclass(frozen=True, slots=True)
class PdfPage:
    """One page: its text-layer lines, or (no usable text layer) its rendering to OCR."""

    number: int
    lines: tuple[Line, ...]
    image: Image.Image | None


def _text_lines(words: list[dict[str, object]], page: int) -> list[Line]:
    rows: list[list[dict[str, object]]] = []
    for w in sorted(words, key=lambda w: (float(str(w["top"])), float(str(w["x0"])))):
        top = float(str(w["top"]))
        if rows and abs(float(str(rows[-1][0]["top"])) - top) <= _LINE_TOLERANCE:
            rows[-1].append(w)
        else:
            rows.append([w])
    lines = []
    for n, row in enumerate(rows, start=1):
        ordered = sorted(row, key=lambda w: float(str(w["x0"])))
        lines.append(Line(page, n, tuple(Word(str(w["text"]), 100.0) for w in ordered), "text-layer"))
    return lines


def read_pdf(data: bytes, render_dpi: int = RENDER_DPI) -> list[PdfPage]:
    """Every page of a PDF; raise :class:`PdfError` when it cannot be opened."""
    try:
        pdf = pdfplumber.open(io.BytesIO(data))
    except Exception as exc:  # pdfminer raises many types for broken files
        raise PdfError(f"not a readable PDF: {exc}") from exc
    pages: list[PdfPage] = []
    with pdf:
        try:
            for number, page in enumerate(pdf.pages, start=1):
                words = page.extract_words(keep_blank_chars=False, use_text_flow=False)
                if any(any(ch.isalnum() for ch in str(w["text"])) for w in words):
                    pages.append(PdfPage(number, tuple(_text_lines(words, number)), None))
                else:
                    image = page.to_image(resolution=render_dpi).original.convert("L")
                    pages.append(PdfPage(number, (), image))
        except PdfError:
            raise
        except Exception as exc:
            raise PdfError(f"cannot read PDF page {len(pages) + 1}: {exc}") from exc
    return pages
