"""Recognised text lines with per-word confidence, as Tesseract's image_to_data reports them (https://tesseract-ocr.github.io/tessdoc/)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Source = Literal["text-layer", "ocr"]


@dataclass(frozen=True, slots=True)
class Word:
    """One word and how sure the recogniser is of it (0-100; a PDF text layer is 100)."""

    text: str
    confidence: float
    left: int = 0
    top: int = 0
    width: int = 0
    height: int = 0


@dataclass(frozen=True, slots=True)
class Line:
    """One text line of a page. ``page`` and ``number`` are 1-based (the problem report's location)."""

    page: int
    number: int
    words: tuple[Word, ...]
    source: Source

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def tokens(self) -> list[str]:
        return [w.text for w in self.words]

    def confidence(self, indices: Sequence[int] | None = None) -> float:
        """The lowest word confidence over ``indices`` (all words when None); 100 for no words."""
        chosen = self.words if indices is None else [self.words[i] for i in indices]
        return min((w.confidence for w in chosen), default=100.0)

    @property
    def location(self) -> str:
        """Where the line is, for a :class:`ingest.report.Problem`: ``page 1 line 12``."""
        return f"page {self.page} line {self.number}"
