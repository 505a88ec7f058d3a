"""Quantity search parameter index values (https://hl7.org/fhir/R4/search.html#quantity).

Rows (param_id, grp, value, system, code, unit, canon_value, canon_code): Quantity and its
specialisations (Age, Duration, Count, Distance, SimpleQuantity, MoneyQuantity) as they are, plus the
value in UCUM canonical units (search/ucum.py) when the system is UCUM, or absent and the code or
unit parses as UCUM; Money -> system urn:iso:std:iso:4217, code = currency. Range and SampledData
are not indexed.
"""

from __future__ import annotations

from typing import Any

from fhir_server.search import ucum
from fhir_server.search.types import RowSink

KIND = "quantity"
ISO_4217 = "urn:iso:std:iso:4217"
_QUANTITY_TYPES = frozenset(
    ("Quantity", "Age", "Duration", "Count", "Distance", "SimpleQuantity", "MoneyQuantity")
)


def _short(value: Any, limit: int) -> str | None:
    return value[:limit] if value.__class__ is str and value else None


def canonical_value(
    value: float, system: str | None, code: str | None, unit: str | None
) -> tuple[float, str] | None:
    """(canon_value, canon_code) of a quantity, or None when its unit is not convertible UCUM."""
    if system == ucum.UCUM_SYSTEM:
        return ucum.to_canonical(value, code or unit or "")
    if system is None:
        for candidate in (code, unit):
            if candidate and (converted := ucum.to_canonical(value, candidate)) is not None:
                return converted
    return None


def values(
    elements: list[Any],
    fhir_type: str,
    param_id: int,
    grp: int,
    sink: RowSink,
    aux_param_id: int | None = None,
) -> None:
    """Append one quantity row per Quantity (or Money) with a numeric value."""
    rows = sink[KIND]
    for element in elements:
        if element.__class__ is not dict:
            continue
        value = element.get("value")
        if value.__class__ not in (int, float):
            continue
        value = float(value)
        if fhir_type == "Money" or (fhir_type == "*" and "currency" in element):
            rows.append(
                (param_id, grp, value, ISO_4217, _short(element.get("currency"), 64), None, None, None)
            )
        elif fhir_type in _QUANTITY_TYPES or fhir_type == "*":
            system = _short(element.get("system"), 255)
            code = _short(element.get("code"), 64)
            unit = _short(element.get("unit"), 64)
            canon = canonical_value(value, system, code, unit)
            if canon is None:
                rows.append((param_id, grp, value, system, code, unit, None, None))
            else:
                rows.append((param_id, grp, value, system, code, unit, canon[0], canon[1]))
