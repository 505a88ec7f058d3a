"""Page image -> text lines with per-word confidence via pytesseract image_to_data (https://github.com/tesseract-ocr/tesseract/blob/main/doc/tesseract.1.asc).

Page segmentation mode 6 (one uniform block) keeps each table row on one line, which is what a
lab result table needs. :func:`reread_line` recognises one line again from an enlarged crop (mode 7,
a single line), for rows whose first reading did not pass the checks.
"""

from __future__ import annotations

import os

import numpy as np
import pytesseract
from PIL import Image

from ingest.ocr.lines import Line, Word

PAGE_CONFIG = "--psm 6"
LINE_CONFIG = "--psm 7"

# Tesseract's OpenMP threads fight each other on a small shared machine (a page took 9x longer
# with 2 threads than with 1 here); one thread per process unless the caller decided otherwise.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")


class OcrUnavailable(RuntimeError):
    """The Tesseract binary is missing or failed."""


def _words_by_line(data: dict[str, list[object]]) -> list[list[Word]]:
    lines: dict[tuple[int, int, int], list[Word]] = {}
    for i, raw in enumerate(data["text"]):
        text = str(raw).strip()
        conf = float(str(data["conf"][i]))
        if not text or conf < 0:
            continue
        key = (int(str(data["block_num"][i])), int(str(data["par_num"][i])), int(str(data["line_num"][i])))
        word = Word(
            text,
            conf,
            int(str(data["left"][i])),
            int(str(data["top"][i])),
            int(str(data["width"][i])),
            int(str(data["height"][i])),
        )
        lines.setdefault(key, []).append(word)
    ordered = sorted(lines.values(), key=lambda ws: (min(w.top for w in ws), min(w.left for w in ws)))
    return [sorted(ws, key=lambda w: w.left) for ws in ordered]


def _image_to_data(img: Image.Image, config: str) -> dict[str, list[object]]:
    try:
        data: dict[str, list[object]] = pytesseract.image_to_data(
            img, lang="eng", config=config, output_type=pytesseract.Output.DICT
        )
    except (pytesseract.TesseractNotFoundError, pytesseract.TesseractError) as exc:
        raise OcrUnavailable(str(exc)) from exc
    return data


def orientation(img: Image.Image) -> tuple[int, float] | None:
    """Tesseract OSD: (clockwise degrees to turn the page upright, confidence), or None when it cannot tell."""
    try:
        osd = pytesseract.image_to_osd(img, output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractNotFoundError as exc:
        raise OcrUnavailable(str(exc)) from exc
    except pytesseract.TesseractError:
        return None
    return int(osd.get("rotate", 0)) % 360, float(osd.get("orientation_conf", 0.0))


def confident_text(img: Image.Image) -> float:
    """Sum of the confidences of the words Tesseract is fairly sure of: how readable ``img`` is as is."""
    data = _image_to_data(img, PAGE_CONFIG)
    confs = [float(str(c)) for c, t in zip(data["conf"], data["text"], strict=True) if str(t).strip()]
    return sum(c for c in confs if c > 60)


def recognise(img: Image.Image, page: int) -> list[Line]:
    """The text lines of an upright page image, numbered from 1, with word confidences."""
    words = _words_by_line(_image_to_data(img, PAGE_CONFIG))
    return [Line(page, n, tuple(ws), "ocr") for n, ws in enumerate(words, start=1)]


def _otsu(img: Image.Image) -> Image.Image:
    a = np.asarray(img, dtype=np.uint8)
    hist = np.bincount(a.ravel(), minlength=256).astype(np.float64)
    p = hist / max(hist.sum(), 1.0)
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    between = (mu[-1] * omega - mu) ** 2 / (omega * (1.0 - omega) + 1e-12)
    threshold = int(np.argmax(between))
    return Image.fromarray(np.where(a > threshold, 255, 0).astype(np.uint8))


def reread_line(img: Image.Image, line: Line) -> list[Line]:
    """Other readings of one line: its crop enlarged twice, as is and binarised, each read as one line."""
    if not line.words:
        return []
    left = min(w.left for w in line.words)
    top = min(w.top for w in line.words)
    right = max(w.left + w.width for w in line.words)
    bottom = max(w.top + w.height for w in line.words)
    pad = max(8, (bottom - top) // 2)
    box = (max(0, left - pad), max(0, top - pad), min(img.width, right + pad), min(img.height, bottom + pad))
    crop = img.crop(box)
    larger = crop.resize((crop.width * 2, crop.height * 2), Image.Resampling.LANCZOS)
    readings: list[Line] = []
    for variant in (larger, _otsu(larger)):
        words = [w for ws in _words_by_line(_image_to_data(variant, LINE_CONFIG)) for w in ws]
        if words:
            readings.append(Line(line.page, line.number, tuple(words), "ocr"))
    return readings
