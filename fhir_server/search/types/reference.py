"""Reference search parameter index values (https://hl7.org/fhir/R4/search.html#reference).

Rows (param_id, grp, target_type, target_id, url):
- relative `Type/id` (a `/_history/n` dropped) -> (Type, id, None);
- absolute URL -> url = the URL, and when it ends with `Type/id` (optionally `/_history/n`) of a known
  resource type, target_type/target_id too (the search side may match them against its base);
- canonical / uri used as a reference -> url (any `|version` kept);
- a resource itself (Bundle.entry[0].resource) -> (resourceType, id, None);
- Reference.identifier -> a token row (system, value, type.text) under the auxiliary
  `code:identifier` param id; contained `#x` references are not indexed.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from fhir_server.search.types import RowSink

KIND = "reference"
MAX_URL = 512
MAX_ID = 64
_LOCAL = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?")
_TAIL = re.compile(r".*/([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?")


@functools.cache
def _resource_types() -> frozenset[str]:
    from fhir_server.search.parameters import resource_types

    return frozenset(resource_types())


@functools.lru_cache(maxsize=65536)
def parse_reference(reference: str) -> tuple[str | None, str | None, str | None] | None:
    """(target_type, target_id, url) of a Reference.reference string; None when not indexed."""
    if not reference or reference.startswith("#"):
        return None
    m = _LOCAL.fullmatch(reference)
    if m is not None:
        return m.group(1), m.group(2), None
    url = reference[:MAX_URL]
    if ":" in reference:
        m = _TAIL.fullmatch(reference)
        if m is not None and m.group(1) in _resource_types():
            return m.group(1), m.group(2), url
    return None, None, url


def _identifier_row(identifier: Any, param_id: int, grp: int) -> tuple[Any, ...] | None:
    if identifier.__class__ is not dict:
        return None
    system, value = identifier.get("system"), identifier.get("value")
    system = system[:255] if system.__class__ is str and system else None
    value = value[:255] if value.__class__ is str and value else None
    if system is None and value is None:
        return None
    type_ = identifier.get("type")
    text = type_.get("text") if type_.__class__ is dict else None
    return (param_id, grp, system, value, text.lower()[:255] if text.__class__ is str and text else None)


def values(
    elements: list[Any],
    fhir_type: str,
    param_id: int,
    grp: int,
    sink: RowSink,
    aux_param_id: int | None = None,
) -> None:
    """Append reference rows; Reference.identifier goes to the token table under `aux_param_id`."""
    rows = sink[KIND]
    for element in elements:
        if element.__class__ is str:
            if fhir_type in ("canonical", "uri", "url", "*") and element:
                rows.append((param_id, grp, None, None, element[:MAX_URL]))
            continue
        if element.__class__ is not dict:
            continue
        if fhir_type in ("Reference", "*") and "resourceType" not in element:
            reference = element.get("reference")
            if reference.__class__ is str:
                parsed = parse_reference(reference)
                if parsed is not None:
                    rows.append((param_id, grp, *parsed))
            if aux_param_id is not None and "identifier" in element:
                row = _identifier_row(element["identifier"], aux_param_id, grp)
                if row is not None:
                    sink["token"].append(row)
        elif "resourceType" in element:  # a resource in place of a reference (Bundle.entry[0].resource)
            kind, id_ = element.get("resourceType"), element.get("id")
            if kind.__class__ is str and id_.__class__ is str and id_:
                rows.append((param_id, grp, kind, id_[:MAX_ID], None))
