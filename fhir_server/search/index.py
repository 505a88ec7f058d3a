"""Search index rows of a resource (https://hl7.org/fhir/R4/search.html): one entry per indexed value.

Contract used by the store: `index_rows(resource)` takes the resource as a dict (as stored) and
returns {table kind: [row dict, ...]} where the kinds are the keys of store.tables.INDEX_TABLES and
each row dict holds that table's columns except `resource_pk`.
"""

from __future__ import annotations

from typing import Any

IndexRows = dict[str, list[dict[str, Any]]]


def index_rows(resource: dict[str, Any]) -> IndexRows:
    """Placeholder until the search registry lands: no index rows."""
    return {}
