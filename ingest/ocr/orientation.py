"""Page orientation, deskew and scale before OCR: Tesseract OSD, then a projection-profile skew search (https://tesseract-ocr.github.io/tessdoc/ImproveQuality.html#rotation--deskewing).

Tesseract recognises upright text of about 20-40 px x-height best. :func:`prepare` turns a scan or
photo into that: the quarter-turn from OSD (or, when OSD cannot decide, the quarter-turn whose
quick OCR is most confident), the residual skew that makes text rows sharpest in the horizontal
ink profile, a median filter against sensor noise, and an upscale to a working text height.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytesseract
from PIL import Image, ImageFilter, ImageOps

TARGET_LINE_HEIGHT = 56  # px per text line (ascender to descender) handed to Tesseract
MAX_SKEW = 8.0  # degrees searched either side of level
_INK = 160  # grey level under which a pixel is ink for the profile


@dataclass(frozen=True, slots=True)
class Prepared:
    """A page ready for recognition and what was done to it."""

    image: Image.Image
    rotation: int  # quarter-turn applied, degrees clockwise (0, 90, 180, 270)
    skew: float  # residual rotation applied, degrees counter-clockwise
    scale: float
    orientation_source: str  # "osd", "trial" (OSD could not decide) or "none"


def _thumbnail(img: Image.Image, size: int = 1200) -> Image.Image:
    small = img.copy()
    small.thumbnail((size, size))
    return small


def _ink(img: Image.Image) -> Image.Image:
    a = np.asarray(img, dtype=np.uint8)
    return Image.fromarray(np.where(a < _INK, 255, 0).astype(np.uint8))


def _profile_sharpness(ink: Image.Image, angle: float) -> float:
    rotated = np.asarray(ink.rotate(angle, resample=Image.Resampling.NEAREST, expand=True), dtype=np.float64)
    profile = rotated.sum(axis=1)
    return float(np.square(np.diff(profile)).sum())


def skew_angle(img: Image.Image, span: float = MAX_SKEW) -> float:
    """Degrees (counter-clockwise) that level the text rows of ``img``: coarse 0.5 degree then 0.1 degree search."""
    ink = _ink(_thumbnail(img))
    coarse = np.arange(-span, span + 1e-9, 0.5)
    best = max(coarse, key=lambda a: _profile_sharpness(ink, float(a)))
    fine = np.arange(best - 0.5, best + 0.5 + 1e-9, 0.1)
    best = max(fine, key=lambda a: _profile_sharpness(ink, float(a)))
    return round(float(best), 1)


def line_height(img: Image.Image) -> float | None:
    """Median height in px of the text rows of a level page (ink runs in the horizontal profile)."""
    a = np.asarray(img, dtype=np.uint8) < _INK
    rows = a.sum(axis=1) > max(2, a.shape[1] // 400)
    runs: list[int] = []
    run = 0
    for on in rows:
        if on:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    runs = [r for r in runs if r >= 4]
    if not runs:
        return None
    return float(np.median(runs))


def _osd_rotation(img: Image.Image) -> int | None:
    """The clockwise quarter-turn Tesseract OSD asks for, or None when it cannot tell."""
    try:
        osd = pytesseract.image_to_osd(img, output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractError:
        return None
    if float(osd.get("orientation_conf", 0.0)) < 0.3:
        return None
    return int(osd.get("rotate", 0)) % 360


def _trial_score(img: Image.Image) -> float:
    data = pytesseract.image_to_data(img, config="--psm 6", output_type=pytesseract.Output.DICT)
    confs = [float(c) for c, t in zip(data["conf"], data["text"], strict=True) if t.strip() and float(c) >= 0]
    return sum(c for c in confs if c > 60)


def _trial_rotation(img: Image.Image) -> int:
    """The quarter-turn whose quick OCR of a thumbnail is most confident."""
    small = _thumbnail(img, 1000)
    return max((0, 90, 180, 270), key=lambda r: _trial_score(small.rotate(-r, expand=True, fillcolor=255)))


def prepare(img: Image.Image) -> Prepared:
    """The page turned upright, levelled, denoised and scaled for Tesseract."""
    gray = ImageOps.exif_transpose(img).convert("L")
    rotation = _osd_rotation(gray)
    source = "osd"
    if rotation is None:
        rotation, source = _trial_rotation(gray), "trial"
    if rotation:
        gray = gray.rotate(-rotation, expand=True, fillcolor=255)
    skew = skew_angle(gray)
    if abs(skew) >= 0.2:
        gray = gray.rotate(skew, expand=True, fillcolor=255, resample=Image.Resampling.BICUBIC)
    else:
        skew = 0.0
    height = line_height(gray)
    scale = 1.0 if height is None else min(4.0, max(1.0, TARGET_LINE_HEIGHT / height))
    clean = gray.filter(ImageFilter.MedianFilter(3))
    if scale > 1.05:
        size = (round(clean.width * scale), round(clean.height * scale))
        clean = clean.resize(size, Image.Resampling.LANCZOS)
    else:
        scale = 1.0
    return Prepared(clean, rotation, skew, scale, source)
