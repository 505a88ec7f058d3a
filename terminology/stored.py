"""ValueSets stored on the server as resources, found by canonical url (https://hl7.org/fhir/R4/valueset.html#search).

`resolver(tx, principal)` gives the `valuesets.Resolver` that looks a value set up with the search
`ValueSet?url=...&version=...` inside the caller's transaction, within the caller's SMART grants
(fhir_server/auth/enforce.py): a value set the caller may not search for is not found. The most
recently stored match wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from fhir_server.auth import enforce
from fhir_server.auth.principal import Principal
from fhir_server.errors import Forbidden
from fhir_server.search import plan, query
from fhir_server.search.values import escape
from fhir_server.store.repository import UnitOfWork
from fhir_server.store.sql import Tx

from .valuesets import Resolver


def find(
    tx: UnitOfWork,
    url: str,
    version: str | None = None,
    *,
    principal: Principal | None = None,
    base: str = "",
) -> Mapping[str, Any] | None:
    """The stored ValueSet with this url (and version) that `principal` may search for, or None."""
    params = [("url", escape(url)), ("_sort", "-_lastUpdated"), ("_count", "1")]
    if version is not None:
        params.append(("version", escape(version)))
    q = query.parse("ValueSet", params, lenient=False)
    try:
        restrict = enforce.search_restriction(principal, q, base)
    except Forbidden:
        return None
    row = tx.run_search(plan.build(q, restrict=restrict, base_url=base or None, default_count=1)).first()
    if row is None:
        return None
    found: Mapping[str, Any] = orjson.loads(row.content)
    return found


def resolver(tx: Tx, principal: Principal | None = None, base: str = "") -> Resolver:
    """Find value sets stored on the server within `tx`, as `principal` may (None: security off)."""

    def resolve(url: str, version: str | None) -> Mapping[str, Any] | None:
        return find(tx, url, version, principal=principal, base=base)

    return resolve
