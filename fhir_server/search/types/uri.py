"""URI search parameter index values (https://hl7.org/fhir/R4/search.html#uri).

Rows (param_id, grp, uri): uri, url, canonical, oid, uuid values as they are (cut to 512).
"""

from __future__ import annotations

from typing import Any

from fhir_server.search.types import RowSink

KIND = "uri"
MAX = 512


def values(
    elements: list[Any],
    fhir_type: str,
    param_id: int,
    grp: int,
    sink: RowSink,
    aux_param_id: int | None = None,
) -> None:
    """Append one uri row per non-empty string element."""
    rows = sink[KIND]
    for element in elements:
        if element.__class__ is str and element:
            rows.append((param_id, grp, element[:MAX]))
