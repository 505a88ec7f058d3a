"""ValueSets stored on the server as resources, found by canonical url (https://hl7.org/fhir/R4/valueset.html#search).

`resolver(tx)` gives the `valuesets.Resolver` that looks a value set up with the search
`ValueSet?url=...&version=...` inside the caller's transaction; the most recently stored match wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from fhir_server.store.sql import Tx

from .valuesets import Resolver

_SPECIAL = re.compile(r"([\\,$|])")


def _escape(value: str) -> str:
    """A literal search value (https://hl7.org/fhir/R4/search.html#escaping)."""
    return _SPECIAL.sub(r"\\\1", value)


def find(tx: Tx, url: str, version: str | None = None) -> Mapping[str, Any] | None:
    """The stored ValueSet with this url (and version), or None."""
    from fhir_server.search import plan, query

    params = [("url", _escape(url)), ("_sort", "-_lastUpdated"), ("_count", "1")]
    if version is not None:
        params.append(("version", _escape(version)))
    q = query.parse("ValueSet", params, lenient=False)
    row = tx.conn.execute(plan.build(q, default_count=1)).first()
    if row is None:
        return None
    found: Mapping[str, Any] = orjson.loads(row.content)
    return found


def resolver(tx: Tx) -> Resolver:
    """Find value sets stored on the server within `tx`."""

    def resolve(url: str, version: str | None) -> Mapping[str, Any] | None:
        return find(tx, url, version)

    return resolve
