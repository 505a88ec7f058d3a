"""The quantity values of an Observation as statistics read them (https://hl7.org/fhir/R4/observation-operation-stats.html).

Index rows of the table `idx_observation_value` (kind `observation_value`), derived from the
Observation's own search index rows once they are all computed (search/index.py runs this step
last), so they say exactly what the `code`, `subject`, `date`, `status`, `value-quantity` and
`component-code-value-quantity` rows say. One row per (code the value is looked up by, value):

- `Observation.value` (a Quantity), under each coding of `Observation.code` (`grp` 0);
- each component's value (`grp` = the component's 1-based position, as composite rows number it),
  under each coding of `Observation.code` (a panel) and under each coding of the component itself;
  `value_system`/`value_code` is the component's coding the value is reported under.

Row tuple: (subject, system, code, grp, value_system, value_code, effective, value, unit,
canon_value, canon_code). `subject` is the reference as the index holds it: `Type/id`, or the
absolute URL. `effective` is the start of Observation.effective (µs; None without one), `unit` the
quantity's code or else its unit text, `canon_*` its UCUM canonical form. An Observation without a
subject, or `entered-in-error`, has no rows (statistics leave it out). docs/index-rows.md.
"""

from __future__ import annotations

from typing import Any

from fhir_server.search.parameters import param_id
from fhir_server.search.types.base import RowSink

KIND = "observation_value"
RESOURCE_TYPE = "Observation"
OWN = 0  # grp of Observation.value

_CODE = param_id(RESOURCE_TYPE, "code")
_SUBJECT = param_id(RESOURCE_TYPE, "subject")
_DATE = param_id(RESOURCE_TYPE, "date")
_STATUS = param_id(RESOURCE_TYPE, "status")
_VALUE = param_id(RESOURCE_TYPE, "value-quantity")
# The composite whose token and quantity rows share `grp` per component (search/types/composite.py).
_PAIRS = param_id(RESOURCE_TYPE, "component-code-value-quantity")


def rows(resource: dict[str, Any], sink: RowSink) -> None:
    """Append the value rows of an Observation whose other index rows are already in `sink`."""
    subject = None
    for pid, _, target_type, target_id, url in sink["reference"]:
        if pid == _SUBJECT and target_type is not None and target_id is not None:
            subject = url if url is not None else f"{target_type}/{target_id}"
            break
    if subject is None:
        return
    codes: list[tuple[Any, str]] = []
    parts: dict[int, list[tuple[Any, str]]] = {}
    for pid, grp, system, code, _ in sink["token"]:
        if code is None:
            continue
        if pid == _CODE:
            codes.append((system, code))
        elif pid == _STATUS and code == "entered-in-error":
            return
        elif pid == _PAIRS:
            parts.setdefault(grp, []).append((system, code))
    own: list[tuple[Any, ...]] = []
    measured: dict[int, list[tuple[Any, ...]]] = {}
    for pid, grp, value, _, code, unit, canon_value, canon_code in sink["quantity"]:
        quantity = (value, code if code is not None else unit, canon_value, canon_code)
        if pid == _VALUE:
            own.append(quantity)
        elif pid == _PAIRS:
            measured.setdefault(grp, []).append(quantity)
    if not own and not measured:
        return
    starts = [low for pid, _, low, _ in sink["date"] if pid == _DATE]
    effective = min(starts) if starts else None
    out = sink[KIND]
    for system, code in codes:
        for quantity in own:
            out.append((subject, system, code, OWN, system, code, effective, *quantity))
    for grp, quantities in measured.items():
        for part_system, part_code in parts.get(grp, ()):
            for quantity in quantities:
                tail = (grp, part_system, part_code, effective, *quantity)
                for system, code in codes:
                    out.append((subject, system, code, *tail))
                out.append((subject, part_system, part_code, *tail))
