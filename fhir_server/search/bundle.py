"""searchset and history Bundles assembled from stored bytes (https://hl7.org/fhir/R4/bundle.html).

Stored JSON is embedded with orjson.Fragment, so a Bundle never re-parses its resources.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import orjson

from .. import instant
from ..store.sql import Stored


def resource_entry(base: str, stored: Stored, mode: str | None = None) -> dict[str, Any]:
    """A Bundle entry carrying a stored resource."""
    entry: dict[str, Any] = {
        "fullUrl": f"{base}/{stored.res_type}/{stored.res_id}",
        "resource": orjson.Fragment(stored.content),
    }
    if mode:
        entry["search"] = {"mode": mode}
    return entry


def link(relation: str, url: str) -> dict[str, str]:
    return {"relation": relation, "url": url}


def page_url(base: str, path: str, params: list[tuple[str, str]]) -> str:
    """An absolute URL for a page of results."""
    url = f"{base}/{path}" if path else base
    return f"{url}?{urlencode(params)}" if params else url


def bundle(
    kind: str, entries: list[dict[str, Any]], links: list[dict[str, str]], total: int | None
) -> dict[str, Any]:
    """A Bundle of the given type."""
    out: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": instant.to_fhir(instant.now_us())},
        "type": kind,
    }
    if total is not None:
        out["total"] = total
    if links:
        out["link"] = links
    if entries:  # FHIR JSON never holds empty arrays
        out["entry"] = entries
    return out


def history_entry(base: str, stored: Stored) -> dict[str, Any]:
    """A history entry: the version (absent for a deletion) with its request and response."""
    url = f"{stored.res_type}/{stored.res_id}"
    entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
    if not stored.deleted:
        entry["resource"] = orjson.Fragment(stored.content)
    method = stored.method or ("DELETE" if stored.deleted else "PUT")
    entry["request"] = {"method": method, "url": url if method != "POST" else stored.res_type}
    entry["response"] = {
        "status": "204" if stored.deleted else ("201" if stored.version == 1 else "200"),
        "etag": stored.etag,
        "lastModified": instant.to_fhir(stored.last_updated),
    }
    return entry
