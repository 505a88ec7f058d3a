"""_summary and _elements: the subset of a resource a client asked for (https://hl7.org/fhir/R4/search.html#summary)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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
    out = {k: v for k, v in resource.items() if k in keep}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return out
