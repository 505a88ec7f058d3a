"""ValueSet/$expand: the codes of a value set (https://hl7.org/fhir/R4/valueset-operation-expand.html).

`[base]/ValueSet/$expand?url=...[&valueSetVersion=...]` expands a value set the server ships or
has stored; `[base]/ValueSet/[id]/$expand` a stored ValueSet resource; POST may send the value set
itself (`valueSet`). Supported inputs besides: `filter` (text in the code or display, ignoring
case), `offset` / `count` (paging), `activeOnly`, `includeDefinition`; `excludeNested` is moot
(expansions are flat). The answer is the ValueSet with `expansion.contains`; a value set the server
does not know is a 404, one it cannot expand (e.g. all of SNOMED CT) a 422 naming it. Stored value
sets are read within the caller's SMART grants (fhir_server/auth/enforce.py).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from terminology import stored
from terminology.service import TerminologyService, service
from terminology.valuesets import Contains, Expansion

from .. import instant
from ..errors import Invalid
from ..interactions import read
from ..interactions.context import Context
from ..store.sql import Tx
from .parameters import OperationInput

MAX_COUNT = 10_000
UNSUPPORTED = ("context", "contextDirection", "date")
_HEADER = ("id", "url", "version", "name", "title", "status", "experimental", "publisher", "description")


def terminology(ctx: Context, tx: Tx) -> TerminologyService:
    """The terminology service, also finding the value sets stored on the server that the caller may see."""
    return service().with_store(stored.resolver(tx, ctx.principal, ctx.settings.base))


def expansion_for(ctx: Context, tx: Tx, params: OperationInput, res_id: str | None) -> Expansion:
    """Expand the value set the request names: the stored ValueSet `res_id`, the `valueSet` sent,
    or the one with canonical `url` (and `valueSetVersion`)."""
    for name in UNSUPPORTED:
        if params.one(name) is not None:
            raise Invalid(f"Parameter '{name}' is not supported; give the value set's url", expression=name)
    svc = terminology(ctx, tx)
    if res_id is not None:
        return svc.expand_definition(read.read(tx, "ValueSet", res_id, principal=ctx.principal).resource())
    sent = params.complex("valueSet")
    if sent is not None:
        if sent.get("resourceType") != "ValueSet":
            raise Invalid("Parameter 'valueSet' must be a ValueSet resource", expression="valueSet")
        return svc.expand_definition(sent)
    url = params.text("url")
    if url is None:
        raise Invalid("Name the value set: a 'url' parameter, a 'valueSet', or ValueSet/[id]/$expand", "url")
    return svc.expansion(url, params.text("valueSetVersion"))


def _entry(c: Contains) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if c.system is not None:
        out["system"] = c.system
    if c.version is not None:
        out["version"] = c.version
    if c.abstract:
        out["abstract"] = True
    if c.inactive:
        out["inactive"] = True
    out["code"] = c.code
    if c.display:
        out["display"] = c.display
    return out


def _matches(c: Contains, text: str) -> bool:
    return text in c.code.lower() or (c.display is not None and text in c.display.lower())


def expand(ctx: Context, tx: Tx, params: OperationInput, res_id: str | None = None) -> dict[str, Any]:
    """The ValueSet with its expansion, as the operation answers it."""
    found = expansion_for(ctx, tx, params, res_id)
    codes = list(found.contains)
    echoed: list[dict[str, Any]] = []
    text = params.text("filter")
    if text is not None:
        codes = [c for c in codes if _matches(c, text.lower())]
        echoed.append({"name": "filter", "valueString": text})
    if params.boolean("activeOnly"):
        codes = [c for c in codes if not c.inactive]
        echoed.append({"name": "activeOnly", "valueBoolean": True})
    total = len(codes)
    offset = params.integer("offset") or 0
    count = params.integer("count")
    if count is not None and count > MAX_COUNT:
        raise Invalid(f"Parameter 'count' may be at most {MAX_COUNT}", expression="count")
    page = codes[offset : offset + count] if count is not None else codes[offset:]
    if offset:
        echoed.append({"name": "offset", "valueInteger": offset})
    if count is not None:
        echoed.append({"name": "count", "valueInteger": count})
    used = [{"name": "used-codesystem", "valueUri": u} for u in found.used_systems]
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": instant.to_fhir(instant.now_us()),
        "total": total,
    }
    if offset or count is not None:
        expansion["offset"] = offset
    if used or echoed:
        expansion["parameter"] = used + echoed
    if page:
        expansion["contains"] = [_entry(c) for c in page]
    definition = found.definition
    out: dict[str, Any] = {"resourceType": "ValueSet"}
    out.update({k: definition[k] for k in _HEADER if k in definition})
    out.setdefault("status", "active")
    if params.boolean("includeDefinition") and "compose" in definition:
        out["compose"] = orjson.loads(orjson.dumps(definition["compose"]))
    out["expansion"] = expansion
    return out
