"""_summary and _elements: the subset of a resource a client asked for (https://hl7.org/fhir/R4/search.html#summary)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from profiles.snapshot import for_type

from .. import model

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def subset(resource: dict[str, Any], summary: str | None, elements: Iterable[str] = ()) -> dict[str, Any]:
    """The resource cut to `elements` (plus mandatory ones) or to the `_summary` form, tagged SUBSETTED.

    `_elements` wins over `_summary`; `count` keeps only resourceType, id and meta.
    """
    rtype = resource["resourceType"]
    wanted = set(elements)
    keep: set[str]
    if wanted:
        keep = wanted | model.mandatory_elements(rtype)
    elif summary == "true":
        keep = set(model.summary_elements(rtype))
    elif summary == "text":
        keep = {"text"} | model.mandatory_elements(rtype)
    elif summary == "data":
        keep = set(resource) - {"text"}
    else:
        keep = set()
    keep |= {"resourceType", "id", "meta"}
    if wanted:
        keep |= _choice_names(rtype, wanted, resource)
    out = {k: v for k, v in resource.items() if k in keep or (k[:1] == "_" and k[1:] in keep)}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return out


def _choice_names(rtype: str, wanted: set[str], resource: dict[str, Any]) -> set[str]:
    """JSON names of the choice elements named in `_elements` (`value` keeps `valueQuantity`,
    https://hl7.org/fhir/R4/formats.html#choice), from the type's StructureDefinition."""
    definition = for_type(rtype)
    if definition is None:
        return set()
    keys = definition.root.keys
    out = set()
    for key in resource:
        hit = keys.get(key[1:] if key[:1] == "_" else key)
        if hit is not None and hit[0].choice and hit[0].name in wanted:
            out.add(key)
    return out
