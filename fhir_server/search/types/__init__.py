"""Search parameter types (https://hl7.org/fhir/R4/search.html#ptypes): two modules per type.

Indexing side, `<type>.py` (used by search/index.py): `values(elements, fhir_type, param_id, grp, sink, aux_param_id)` turns the elements a
parameter's expression selected (all of FHIR type `fhir_type`, or `"*"`: infer from the JSON shape)
into index row tuples appended to `sink[kind]`, in the column order of that kind's table in
store/tables.py without `resource_pk` (docs/index-rows.md). Querying side: `<type>_query.py`.
"""

from __future__ import annotations

from typing import Any

RowSink = dict[str, list[tuple[Any, ...]]]
