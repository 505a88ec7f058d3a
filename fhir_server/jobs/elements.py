"""The `_elements` export parameter (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#query-parameters).

Values are `[resource type].[element name]` or `[element name]`; only root elements are allowed.
Exported resources keep the listed elements plus the mandatory ones (and resourceType, id, meta) and
are tagged SUBSETTED so they are never mistaken for complete resources.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .. import model

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ITEM = re.compile(r"(?:([A-Z][A-Za-z]+)\.)?([a-z][A-Za-z0-9]*(?:\[x\])?)")
ALL = "*"

Elements = dict[str, list[str]]  # resource type (or "*" for every type) -> element names


def parse(values: list[str]) -> tuple[Elements, list[str]]:
    """Split `_elements` items by resource type; returns (elements, problems)."""
    out: Elements = {}
    problems: list[str] = []
    for item in values:
        match = _ITEM.fullmatch(item)
        if match is None:
            problems.append(f"'{item}' is not [resource type].[element] or [element] naming a root element")
            continue
        rtype, name = match.group(1) or ALL, match.group(2)
        if rtype != ALL and not model.is_resource_type(rtype):
            problems.append(f"'{item}' names an unknown resource type")
            continue
        bucket = out.setdefault(rtype, [])
        if name not in bucket:
            bucket.append(name)
    return out, problems


def keep_for(elements: Elements, resource_type: str) -> frozenset[str] | None:
    """The root elements kept for a type; None when the type is exported whole."""
    named = elements.get(resource_type, []) + elements.get(ALL, [])
    if not named:
        return None
    kept = {n.removesuffix("[x]") for n in named}
    return frozenset(kept | model.mandatory_elements(resource_type) | {"resourceType", "id", "meta"})


def _kept(key: str, keep: frozenset[str]) -> bool:
    if key in keep:
        return True
    # choice elements: "value" keeps valueQuantity, valueString, ...
    return any(key.startswith(k) and key[len(k) : len(k) + 1].isupper() for k in keep)


def subset(content: bytes, keep: frozenset[str]) -> bytes:
    """The resource with only the `keep` root elements, tagged SUBSETTED."""
    resource: dict[str, Any] = orjson.loads(content)
    out = {k: v for k, v in resource.items() if _kept(k, keep)}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return orjson.dumps(out)
