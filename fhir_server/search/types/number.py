"""Number search parameter index values (https://hl7.org/fhir/R4/search.html#number).

Rows (param_id, grp, value): decimal, integer, positiveInt, unsignedInt -> value as float. Other
types a number parameter may reach (RiskAssessment probability as Range) are not indexed.
"""

from __future__ import annotations

from typing import Any

from fhir_server.search.types import RowSink

KIND = "number"
_NUMBER_TYPES = frozenset(("decimal", "integer", "positiveInt", "unsignedInt", "integer64", "*"))


def values(
    elements: list[Any],
    fhir_type: str,
    param_id: int,
    grp: int,
    sink: RowSink,
    aux_param_id: int | None = None,
) -> None:
    """Append one number row per numeric element."""
    if fhir_type not in _NUMBER_TYPES:
        return
    rows = sink[KIND]
    for element in elements:
        if element.__class__ in (int, float):
            rows.append((param_id, grp, float(element)))
