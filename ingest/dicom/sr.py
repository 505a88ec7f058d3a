"""DICOM SR content tree -> numeric measurements (NUM content items, e.g. of TID 1500 measurement reports) (https://dicom.nema.org/medical/dicom/current/output/chtml/part16/chapter_A.html#sect_TID_1500).

Walks the Content Sequence depth first. Every NUM item yields a :class:`Measurement` with its
concept name, numeric value, unit code item, Observation UID (0040,A171) when present, the
tracking identifier of its measurement group (TID 1501 "Tracking Identifier", 112039 DCM) and its
position: the content item identifier (``1.5.1.2``: 1-based positions from the root, as DICOM's
Referenced Content Item Identifier) and the element path for problem reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from pydicom.dataset import Dataset

SR_SOP_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
_TRACKING_IDENTIFIER = ("112039", "DCM")


@dataclass(frozen=True, slots=True)
class Measurement:
    """One NUM content item, or (``value`` None, ``problem`` set) one that could not be read."""

    item_id: str
    path: str
    concept: Dataset | None
    value: Decimal | None
    unit: Dataset | None
    observation_uid: str | None
    tracking: str | None
    problem: str | None = None


def is_sr(ds: Dataset) -> bool:
    """True for a Structured Report document (any SR SOP class, or a CONTAINER root with content)."""
    sop_class = str(ds.get("SOPClassUID", ""))
    return sop_class.startswith(SR_SOP_CLASS_PREFIX) or (
        ds.get("ValueType") == "CONTAINER" and "ContentSequence" in ds
    )


def _first(item: Dataset, keyword: str) -> Dataset | None:
    seq = item.get(keyword)
    return seq[0] if seq else None


def _code_key(item: Dataset | None) -> tuple[str, str]:
    if item is None:
        return "", ""
    return str(item.get("CodeValue", "")).strip(), str(item.get("CodingSchemeDesignator", "")).strip()


def _tracking(items: list[Dataset]) -> str | None:
    for item in items:
        if (
            item.get("ValueType") == "TEXT"
            and _code_key(_first(item, "ConceptNameCodeSequence")) == _TRACKING_IDENTIFIER
        ):
            return str(item.get("TextValue", "")).strip() or None
    return None


def _number(item: Dataset) -> tuple[Decimal | None, Dataset | None, str | None]:
    measured = _first(item, "MeasuredValueSequence")
    if measured is None:
        return None, None, "NUM item has no Measured Value Sequence (0040,A300)"
    raw = measured.get("NumericValue")
    if raw is None or str(raw).strip() == "":
        floating = measured.get("FloatingPointValue")
        if floating is None:
            return None, None, "NUM item has no Numeric Value (0040,A30A)"
        raw = floating
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        return None, None, f"Numeric Value (0040,A30A) {raw!r} is not a number"
    if not value.is_finite():
        return None, None, f"Numeric Value (0040,A30A) {raw!r} is not finite"
    if not value.is_zero() and float(value) in (0.0, math.inf, -math.inf):
        # Its JSON number would be written as infinity or zero (1E400, 1E-400).
        return None, None, f"Numeric Value (0040,A30A) {raw!r} is out of range"
    return value, _first(measured, "MeasurementUnitsCodeSequence"), None


def measurements(ds: Dataset) -> Iterator[Measurement]:
    """Every NUM content item of the SR document, depth first."""
    yield from _walk(ds, "1", "", None)


def _walk(node: Dataset, item_id: str, path: str, tracking: str | None) -> Iterator[Measurement]:
    children = list(node.get("ContentSequence", []))
    tracking = _tracking(children) or tracking
    for index, item in enumerate(children):
        child_id = f"{item_id}.{index + 1}"
        child_path = f"{path}ContentSequence[{index}]"
        if item.get("ValueType") == "NUM":
            value, unit, problem = _number(item)
            uid = str(item.get("ObservationUID", "")).strip() or None
            yield Measurement(
                child_id,
                child_path,
                _first(item, "ConceptNameCodeSequence"),
                value,
                unit,
                uid,
                tracking,
                problem,
            )
        if "ContentSequence" in item:
            yield from _walk(item, child_id, child_path + ".", tracking)
