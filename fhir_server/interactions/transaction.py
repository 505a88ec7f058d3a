"""transaction and batch Bundles (https://hl7.org/fhir/R4/http.html#transaction).

A transaction runs in ONE database transaction: every entry succeeds or nothing is kept. Entries run
in the order the spec defines (DELETE, POST, PUT/PATCH, GET/HEAD); urn:uuid full URLs get their ids
before anything is written and every reference to them is rewritten; conditional references
(`Patient?identifier=...`) must resolve to exactly one resource. A batch performs each entry on its
own, each in its own database transaction, and reports each outcome.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from ..errors import FhirError, Invalid, PreconditionFailed
from ..references import rewrite
from ..search.bundle import bundle
from ..store.sql import new_id
from .bundle_entry import Request, error_entry, parse_entry, perform
from .conditional import matches
from .context import Context

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


def entries_of(body: Any, kind: str) -> list[Any]:
    """The entries of a Bundle of the expected type; 400 for anything else."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise Invalid("Expected a Bundle", "Bundle")
    if body.get("type") != kind:
        raise Invalid(f"Expected a Bundle of type '{kind}', got '{body.get('type')}'", "Bundle.type")
    entries = body.get("entry", [])
    if not isinstance(entries, list):
        raise Invalid("Bundle.entry must be an array", "Bundle.entry")
    return entries


def transaction(ctx: Context, body: Any) -> dict[str, Any]:
    """Perform a transaction Bundle; return the transaction-response Bundle."""
    base = ctx.settings.base
    requests = [parse_entry(i, e, base) for i, e in enumerate(entries_of(body, "transaction"))]
    _check_unique_full_urls(requests)
    responses: list[dict[str, Any] | None] = [None] * len(requests)
    with ctx.store.write() as tx:
        ordered = sorted(requests, key=lambda r: (_ORDER[r.method], r.index))
        for req in ordered:
            if req.method == "DELETE":
                responses[req.index] = perform(ctx, tx, req)
        mapping = _assign_ids(ctx, tx, requests)
        for req in requests:
            if isinstance(req.resource, dict):
                _resolve_references(ctx, tx, req, mapping)
        for req in ordered:
            if req.method in ("POST", "PUT", "PATCH"):
                responses[req.index] = perform(ctx, tx, req)
        tx.flush()
        for req in ordered:
            if req.method in ("GET", "HEAD"):
                responses[req.index] = perform(ctx, tx, req)
    return bundle("transaction-response", [r for r in responses if r is not None], [], None)


def _check_unique_full_urls(requests: list[Request]) -> None:
    seen: dict[str, int] = {}
    for req in requests:
        if req.full_url and req.method in ("POST", "PUT"):
            if req.full_url in seen:
                raise Invalid(
                    f"fullUrl '{req.full_url}' appears twice (entries {seen[req.full_url]} and {req.index})",
                    f"{req.where}.fullUrl",
                )
            seen[req.full_url] = req.index


def _assign_ids(ctx: Context, tx: Any, requests: list[Request]) -> dict[str, str]:
    """Map every entry's fullUrl to the reference it will have on this server."""
    mapping: dict[str, str] = {}
    for req in requests:
        if req.res_type is None:
            continue
        target: str | None = None
        if req.method == "POST":
            if req.if_none_exist:
                found = matches(ctx, tx, req.res_type, req.if_none_exist)
                if len(found) > 1:
                    raise PreconditionFailed(
                        f"ifNoneExist '{req.if_none_exist}' matches more than one {req.res_type}",
                        f"{req.where}.request.ifNoneExist",
                    )
                if found:
                    target = f"{req.res_type}/{found[0].res_id}"
            if target is None:
                req.assigned_id = new_id()
                target = f"{req.res_type}/{req.assigned_id}"
        elif req.method == "PUT" and req.res_id:
            target = f"{req.res_type}/{req.res_id}"
        elif req.method == "PUT" and req.params:
            found = matches(ctx, tx, req.res_type, urlencode(req.params))
            if len(found) > 1:
                raise PreconditionFailed(
                    f"Conditional update '{req.url}' matches more than one {req.res_type}",
                    f"{req.where}.request.url",
                )
            rid = found[0].res_id if found else (req.resource or {}).get("id") or new_id()
            if isinstance(req.resource, dict):
                req.resource["id"] = rid
            target = f"{req.res_type}/{rid}"
        if target and req.full_url:
            mapping[req.full_url] = target
    return mapping


def _resolve_references(ctx: Context, tx: Any, req: Request, mapping: dict[str, str]) -> None:
    def replace(ref: str) -> str | None:
        if ref in mapping:
            return mapping[ref]
        if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
            raise Invalid(
                f"Reference '{ref}' matches no fullUrl in this transaction", f"{req.where}.resource"
            )
        head, sep, criteria = ref.partition("?")
        if sep and "/" not in head:
            found = matches(ctx, tx, head, criteria)
            if len(found) != 1:
                raise PreconditionFailed(
                    f"Conditional reference '{ref}' matches {len(found)} resources; it must match exactly one",
                    f"{req.where}.resource",
                )
            return f"{head}/{found[0].res_id}"
        return None

    rewrite(req.resource, replace)


def batch(ctx: Context, body: Any) -> dict[str, Any]:
    """Perform each entry of a batch Bundle on its own; failures are reported per entry."""
    base = ctx.settings.base
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(entries_of(body, "batch")):
        try:
            req = parse_entry(i, entry, base)
            with ctx.store.write() as tx:
                out.append(perform(ctx, tx, req))
        except FhirError as exc:
            out.append(error_entry(exc))
    return bundle("batch-response", out, [], None)


__all__ = ["batch", "transaction"]
