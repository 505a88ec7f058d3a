"""One entry of a batch or transaction Bundle: its request parsed, performed, and its response entry.

https://hl7.org/fhir/R4/http.html#transaction: every entry is performed by the same interaction
functions as the plain REST API, so a rule lives in one place.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from .. import input_limits, instant
from ..errors import FhirError, Invalid, MethodNotAllowed
from ..store.sql import Stored, Tx
from . import create, delete, history, patch, read, update, vread
from .context import Context
from .write import WriteResult

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


@dataclass
class Request:
    """An entry's request: method, target, conditions and resource, with its place in the Bundle."""

    index: int
    method: str
    url: str
    res_type: str | None
    res_id: str | None
    tail: list[str]
    params: list[tuple[str, str]]
    resource: Any
    full_url: str | None
    if_match: int | None = None
    if_none_exist: str | None = None
    if_none_match: str | None = None
    assigned_id: str | None = None
    # A conditional create the transaction resolved with the others (conditional_creates.Resolved).
    resolved: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def parse_entry(index: int, entry: Any, base: str) -> Request:
    """Check and split an entry's request; 400 naming the entry when it is malformed."""
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict):
        raise Invalid("A Bundle entry must be an object", where)
    req = entry.get("request")
    if not isinstance(req, dict):
        raise Invalid("The entry has no request", f"{where}.request")
    method = req.get("method")
    if method not in METHODS:
        raise Invalid(f"Unsupported request method '{method}'", f"{where}.request.method")
    url = req.get("url")
    if not isinstance(url, str) or not url:
        raise Invalid("The entry request has no url", f"{where}.request.url")
    if url.startswith(base + "/"):
        url = url[len(base) + 1 :]
    parts = urlsplit(url)
    path = [p for p in parts.path.strip("/").split("/") if p]
    params = parse_qsl(parts.query, keep_blank_values=True)
    res_type = path[0] if path else None
    res_id = path[1] if len(path) > 1 and not path[1].startswith(("_", "$")) else None
    tail = path[2:] if res_id else path[1:]
    resource = entry.get("resource")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise Invalid(f"A {method} entry needs a resource", f"{where}.resource")
    if_match = None
    if req.get("ifMatch") is not None:
        if_match = parse_etag(str(req["ifMatch"]), f"{where}.request.ifMatch")
    full_url = entry.get("fullUrl")
    return Request(
        index=index,
        method=method,
        url=url,
        res_type=res_type,
        res_id=res_id,
        tail=tail,
        params=params,
        resource=resource,
        full_url=full_url if isinstance(full_url, str) else None,
        if_match=if_match,
        if_none_exist=req.get("ifNoneExist"),
        if_none_match=req.get("ifNoneMatch"),
    )


def parse_etag(value: str, where: str) -> int:
    """The version number in an ETag such as W/"3" (If-Match)."""
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise Invalid(f"Invalid ETag '{value[:40]}': expected W/\"<versionId>\"", where)
    return input_limits.integer(text, where)


def _binary_json(data: Any, where: str) -> Any:
    """The JSON (a JSON Patch) carried base64-encoded in a Binary's data."""
    try:
        raw = base64.b64decode(data, validate=True) if isinstance(data, str) else None
    except ValueError:
        raw = None
    if raw is None:
        raise Invalid("Binary.data is not base64", where)
    return input_limits.loads_json(raw, where)


def perform(ctx: Context, tx: Tx, req: Request) -> dict[str, Any]:
    """Do what the entry asks and return the response entry (raises FhirError on failure)."""
    loc = f"{req.where}.resource"
    if req.res_type is None:
        raise Invalid("The entry request url names no resource type", f"{req.where}.request.url")
    if req.method == "POST":
        if req.tail or req.res_id:
            raise MethodNotAllowed(f"POST to '{req.url}' is not supported in a Bundle")
        result = create.create(
            ctx,
            tx,
            req.res_type,
            req.resource,
            if_none_exist=req.if_none_exist,
            location=loc,
            assigned_id=req.assigned_id,
            matched=_matched(tx, req),
        )
        return write_entry(ctx, result)
    if req.method == "PUT":
        if req.res_id is None:
            if not req.params:
                raise Invalid("PUT needs an id or search criteria", f"{req.where}.request.url")
            result = update.conditional_update(
                ctx,
                tx,
                req.res_type,
                urlencode(req.params),
                req.resource,
                if_match=req.if_match,
                location=loc,
            )
        else:
            result = update.update(
                ctx, tx, req.res_type, req.res_id, req.resource, if_match=req.if_match, location=loc
            )
        return write_entry(ctx, result)
    if req.method == "PATCH":
        if req.res_id is None and not req.params:
            raise Invalid("PATCH needs a resource id or search criteria", f"{req.where}.request.url")
        body = req.resource
        if isinstance(body, dict) and body.get("resourceType") == "Binary" and "data" in body:
            body = _binary_json(body["data"], f"{req.where}.resource.data")
        if req.res_id is None:
            criteria = urlencode(req.params)
            return write_entry(
                ctx, patch.conditional_patch(ctx, tx, req.res_type, criteria, body, if_match=req.if_match)
            )
        return write_entry(ctx, patch.patch(ctx, tx, req.res_type, req.res_id, body, if_match=req.if_match))
    if req.method == "DELETE":
        if req.res_id is None:
            gone = delete.conditional_delete(ctx, tx, req.res_type, urlencode(req.params))
        else:
            gone = delete.delete(tx, req.res_type, req.res_id, principal=ctx.principal)
        response: dict[str, Any] = {"status": "204 No Content"}
        if gone is not None:
            response["etag"] = gone.etag
        return {"response": response}
    return _get(ctx, tx, req)


def _matched(tx: Tx, req: Request) -> list[Stored] | None:
    """The matches of a conditional create the transaction resolved up front; None: search now."""
    resolved = req.resolved
    if resolved is None:
        return None
    if resolved.existing is not None:
        return [resolved.existing]
    if resolved.same_as is not None:  # created by an earlier entry, under the id it names
        assert req.res_type is not None and resolved.same_id is not None
        found = tx.current(req.res_type, resolved.same_id)
        return [found] if found is not None and not found.deleted else []
    return []


def _get(ctx: Context, tx: Tx, req: Request) -> dict[str, Any]:
    assert req.res_type is not None
    if req.res_id is not None and not req.tail:
        return read_entry(ctx, read.read(tx, req.res_type, req.res_id, principal=ctx.principal))
    if req.res_id is not None and len(req.tail) == 2 and req.tail[0] == "_history":
        return read_entry(
            ctx, vread.vread(tx, req.res_type, req.res_id, req.tail[1], principal=ctx.principal)
        )
    if req.tail == ["_history"]:
        body = history.history(ctx, tx, req.params, req.res_type, req.res_id)
        return {"resource": body, "response": {"status": "200 OK"}}
    if req.res_id is None and not req.tail:
        from . import search

        body = search.search(ctx, tx, req.res_type, req.params)
        return {"resource": body, "response": {"status": "200 OK"}}
    raise Invalid(f"Unsupported request url '{req.url}'", f"{req.where}.request.url")


def read_entry(ctx: Context, stored: Stored) -> dict[str, Any]:
    return {
        "fullUrl": f"{ctx.settings.base}/{stored.res_type}/{stored.res_id}",
        "resource": orjson.Fragment(stored.content),
        "response": {
            "status": "200 OK",
            "etag": stored.etag,
            "lastModified": instant.to_fhir(stored.last_updated),
        },
    }


def write_entry(ctx: Context, result: WriteResult) -> dict[str, Any]:
    stored = result.stored
    status = {200: "200 OK", 201: "201 Created"}[result.status]
    return {
        "fullUrl": f"{ctx.settings.base}/{stored.res_type}/{stored.res_id}",
        "resource": orjson.Fragment(stored.content),
        "response": {
            "status": status,
            "location": f"{stored.res_type}/{stored.res_id}/_history/{stored.version}",
            "etag": stored.etag,
            "lastModified": instant.to_fhir(stored.last_updated),
        },
    }


def error_entry(error: FhirError) -> dict[str, Any]:
    """A batch entry that failed: its status and OperationOutcome."""
    return {"response": {"status": f"{error.status}", "outcome": error.outcome()}}
