"""Page orientation, deskew and scale before OCR: Tesseract OSD, then a projection-profile skew search (https://tesseract-ocr.github.io/tessdoc/ImproveQuality.html#rotation--deskewing).

Tesseract reads upright, level text of a sufficient size best. :func:`prepare` turns a scan or
photo into that: a quarter-turn when the text rows run vertically (Tesseract OSD says which way,
or the quarter-turn whose quick OCR is most confident when OSD cannot tell), the residual skew
that makes the text rows sharpest in the horizontal ink profile, a median filter against sensor
noise, and an upscale of very small text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from ingest.ocr import tesseract

MIN_LINE_HEIGHT = 20  # px per text line (ascender to descender): smaller text is upscaled to it
OSD_SIZE = 1600  # px: OSD reads a thumbnail, as fast and as sure as the full page
MIN_OSD_CONFIDENCE = 0.3
MAX_SKEW = 8.0  # degrees searched either side of level
_INK = 160  # grey level under which a pixel is ink for the profile


@dataclass(frozen=True, slots=True)
class Prepared:
    """A page ready for recognition and what was done to it."""

    image: Image.Image
    rotation: int  # quarter-turn applied, degrees clockwise (0, 90, 180, 270)
    skew: float  # residual rotation applied, degrees counter-clockwise
    scale: float
    orientation_source: str  # "profile" (rows already horizontal), "osd", "trial" or "given"


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


def level(img: Image.Image, span: float = MAX_SKEW) -> tuple[float, float]:
    """(degrees counter-clockwise that level the text rows of ``img``, how sharp the rows then are).

    Coarse 0.5 degree then 0.1 degree search of the horizontal ink profile of a thumbnail.
    """
    ink = _ink(_thumbnail(img))
    coarse = np.arange(-span, span + 1e-9, 0.5)
    best = max(coarse, key=lambda a: _profile_sharpness(ink, float(a)))
    fine = np.arange(best - 0.5, best + 0.5 + 1e-9, 0.1)
    scored = [(_profile_sharpness(ink, float(a)), float(a)) for a in fine]
    sharpness, angle = max(scored)
    return round(angle, 1), sharpness


def skew_angle(img: Image.Image, span: float = MAX_SKEW) -> float:
    """Degrees (counter-clockwise) that level the text rows of ``img``."""
    return level(img, span)[0]


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
    found = tesseract.orientation(_thumbnail(img, OSD_SIZE))
    if found is None or found[1] < MIN_OSD_CONFIDENCE:
        return None
    return found[0]


def _trial_rotation(img: Image.Image) -> int:
    """The quarter-turn whose quick OCR of a thumbnail is most confident."""
    small = _thumbnail(img, 1000)
    return max(
        (0, 90, 180, 270),
        key=lambda r: tesseract.confident_text(small.rotate(-r, expand=True, fillcolor=255)),
    )


def _quarter_turn(gray: Image.Image) -> tuple[int, str]:
    """(clockwise quarter-turn, how it was decided) that makes the text rows horizontal and upright.

    When the rows are already horizontal the page is taken as upright ("profile"): a caller that
    then reads mostly nonsense asks again with ``rotation=180``. Sideways rows need OSD to tell 90
    from 270, or, when OSD cannot decide, the quarter-turn that reads best ("trial").
    """
    _, flat = level(gray)
    _, sideways = level(gray.rotate(90, expand=True, fillcolor=255))
    if flat >= sideways:
        return 0, "profile"
    rotation = _osd_rotation(gray)
    if rotation is not None:
        return rotation, "osd"
    return _trial_rotation(gray), "trial"


def prepare(img: Image.Image, rotation: int | None = None) -> Prepared:
    """The page turned upright (``rotation`` degrees clockwise, or detected), levelled, denoised and scaled."""
    gray = ImageOps.exif_transpose(img).convert("L")
    source = "given"
    if rotation is None:
        rotation, source = _quarter_turn(gray)
    if rotation:
        gray = gray.rotate(-rotation, expand=True, fillcolor=255)
    skew = skew_angle(gray)
    if abs(skew) >= 0.2:
        gray = gray.rotate(skew, expand=True, fillcolor=255, resample=Image.Resampling.BICUBIC)
    else:
        skew = 0.0
    height = line_height(gray)
    scale = 1.0 if height is None else min(4.0, max(1.0, MIN_LINE_HEIGHT / height))
    clean = gray.filter(ImageFilter.MedianFilter(3))
    if scale > 1.05:
        size = (round(clean.width * scale), round(clean.height * scale))
        clean = clean.resize(size, Image.Resampling.LANCZOS)
    else:
        scale = 1.0
    return Prepared(clean, rotation, skew, scale, source)
