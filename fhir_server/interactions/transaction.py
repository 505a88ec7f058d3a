"""transaction and batch Bundles (https://hl7.org/fhir/R4/http.html#transaction).

A transaction runs in ONE database transaction: every entry succeeds or nothing is kept. Entries run
in the order the spec defines (DELETE, POST, PUT/PATCH, GET/HEAD); urn:uuid full URLs get their ids
before anything is written and every reference to them is rewritten; conditional references
(`Patient?identifier=...`) must resolve to exactly one resource. A batch performs each entry on its
own, each in its own database transaction, and reports each outcome.

A resource can appear in a transaction only once (#trules): two entries that change the same
resource, by url or by the resource a conditional url resolves to, make it 400. In a batch such
entries depend on each other, which #brules forbids: each of them is answered 400. A transaction
first locks everything its entries name, in one fixed order (Store.lock_all), so crossing
transactions queue instead of deadlocking; contention that still rolls it back runs it again from
the body as sent (Store.transact).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlencode

import orjson

from ..errors import FhirError, Invalid, PreconditionFailed
from ..references import rewrite, walk
from ..search.bundle import bundle
from ..store.sql import Tx, new_id
from . import conditional_creates
from .bundle_entry import Request, error_entry, parse_entry, perform
from .conditional import lock_key, matches
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
    first = _requests(ctx, body)  # a malformed Bundle is 400 before the database is touched
    fresh = _fresh(body)
    fresh()  # the first attempt works on `body` itself, through `first`
    unused = iter([first])
    source = f"transaction:{_bundle_id(body)}"
    responses = ctx.transact(
        lambda tx: _perform_all(ctx, tx, next(unused, []) or _requests(ctx, fresh())), source
    )
    return bundle("transaction-response", [r for r in responses if r is not None], [], None)


def _bundle_id(body: dict[str, Any]) -> str:
    """The Bundle's id for the change events of its writes (store/outbox.py); a new one when it has none."""
    given = body.get("id")
    return given if isinstance(given, str) and given else new_id()


def _fresh(value: Any) -> Callable[[], Any]:
    """`value` on the first call, an equal unshared copy on each later one: a write run again starts
    from what the client sent, not from what the rolled-back attempt rewrote in place."""
    pristine = orjson.dumps(value)
    calls = itertools.count()
    return lambda: value if next(calls) == 0 else orjson.loads(pristine)


def _requests(ctx: Context, body: Any) -> list[Request]:
    """The entries parsed and checked: a fullUrl twice, or one resource changed twice, is 400."""
    base = ctx.settings.base
    requests = [parse_entry(i, e, base) for i, e in enumerate(entries_of(body, "transaction"))]
    _check_unique_full_urls(requests)
    _claimed(requests)
    return requests


def _perform_all(ctx: Context, tx: Tx, requests: list[Request]) -> list[dict[str, Any] | None]:
    """Lock what the entries name, then perform them in the order #trules gives; responses by index."""
    ctx.store.lock_all(tx, _lock_keys(requests))
    claimed = _claimed(requests)
    responses: list[dict[str, Any] | None] = [None] * len(requests)
    ordered = sorted(requests, key=lambda r: (_ORDER[r.method], r.index))
    for req in ordered:  # what conditional deletes resolve to, before any delete runs
        if req.method == "DELETE" and req.res_id is None and req.res_type and req.params:
            found = matches(ctx, tx, req.res_type, urlencode(req.params))
            if len(found) == 1:
                _claim(claimed, f"{req.res_type}/{found[0].res_id}", req)
    for req in ordered:
        if req.method == "DELETE":
            responses[req.index] = perform(ctx, tx, req)
    mapping = _assign_ids(ctx, tx, requests, claimed)
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
    return responses


def changed_target(req: Request) -> str | None:
    """What a PUT, PATCH or DELETE entry changes as its url names it: `Type/id` or `Type?criteria`."""
    if req.method not in ("PUT", "PATCH", "DELETE") or req.res_type is None:
        return None
    if req.res_id is not None:
        return f"{req.res_type}/{req.res_id}"
    return lock_key(req.res_type, urlencode(req.params)) if req.params else None


def _claimed(requests: list[Request]) -> dict[str, Request]:
    """Each changed target with the entry changing it; 400 when two entries change one target."""
    claimed: dict[str, Request] = {}
    for req in requests:
        target = changed_target(req)
        if target is not None:
            _claim(claimed, target, req)
    return claimed


def _claim(claimed: dict[str, Request], target: str, req: Request) -> None:
    other = claimed.setdefault(target, req)
    if other is not req:
        raise Invalid(
            f"{other.where} and {req.where} both change {target}: a resource can appear in a "
            "transaction only once",
            f"{req.where}.request.url",
        )


def _lock_keys(requests: list[Request]) -> Iterator[str]:
    """The locks a transaction takes before it writes: what its entries change, and every
    conditional url it will search (ifNoneExist, conditional references) as `matches` locks it."""
    for req in requests:
        target = changed_target(req)
        if target is not None:
            yield target
        if req.method == "POST" and req.res_type and req.if_none_exist:
            yield lock_key(req.res_type, req.if_none_exist)
        if isinstance(req.resource, dict):
            for element, _ in walk(req.resource, "", contained=True):
                conditional = _conditional_reference(element["reference"])
                if conditional is not None:
                    yield lock_key(*conditional)


def _conditional_reference(ref: str) -> tuple[str, str] | None:
    """(type, criteria) of a conditional reference such as `Patient?identifier=x`, else None."""
    head, sep, criteria = ref.partition("?")
    return (head, criteria) if sep and "/" not in head else None


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


def _assign_ids(
    ctx: Context, tx: Any, requests: list[Request], claimed: dict[str, Request]
) -> dict[str, str]:
    """Map every entry's fullUrl to the reference it will have on this server; claim what
    conditional updates resolve to. A conditional create resolved to an earlier entry of the Bundle
    (conditional_creates.py) shares the id that entry was given."""
    by_index = {req.index: req for req in requests}
    mapping: dict[str, str] = {}
    together = conditional_creates.resolve(ctx, tx, requests)
    for req in requests:
        if req.res_type is None:
            continue
        target: str | None = None
        resolved = together.get(req.index)
        if resolved is not None:
            req.resolved = resolved
            if resolved.existing is not None:
                target = f"{req.res_type}/{resolved.existing.res_id}"
            elif resolved.same_as is not None:
                resolved.same_id = by_index[resolved.same_as].assigned_id
                target = f"{req.res_type}/{resolved.same_id}"
            else:
                req.assigned_id = new_id()
                target = f"{req.res_type}/{req.assigned_id}"
        elif req.method == "POST":
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
            _claim(claimed, target, req)
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
        conditional = _conditional_reference(ref)
        if conditional is not None:
            head, criteria = conditional
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
    entries = entries_of(body, "batch")
    refused = _interdependent(entries, base)
    source = f"batch:{_bundle_id(body)}"
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        try:
            if i in refused:
                raise refused[i]
            answered = _perform_alone(ctx, i, entry, source)
            out.append(answered)  # only once committed: the closing flush may still refuse the entry
        except FhirError as exc:
            out.append(error_entry(exc))
    return bundle("batch-response", out, [], None)


def _perform_alone(ctx: Context, index: int, entry: Any, source: str) -> dict[str, Any]:
    """One batch entry in its own write transaction (run again from the entry as sent on contention)."""
    base = ctx.settings.base
    parse_entry(index, entry, base)  # a malformed entry is 400 before the database is touched
    fresh = _fresh(entry)
    return ctx.transact(lambda tx: perform(ctx, tx, parse_entry(index, fresh(), base)), source)


def _interdependent(entries: Iterable[Any], base: str) -> dict[int, FhirError]:
    """Entries of a batch that change the same resource depend on each other (#brules): each is 400."""
    by_target: dict[str, list[Request]] = {}
    for i, entry in enumerate(entries):
        try:
            req = parse_entry(i, entry, base)
        except FhirError:
            continue  # answered when its turn comes
        target = changed_target(req)
        if target is not None:
            by_target.setdefault(target, []).append(req)
    refused: dict[int, FhirError] = {}
    for target, reqs in by_target.items():
        if len(reqs) > 1:
            where = ", ".join(r.where for r in reqs)
            for req in reqs:
                refused[req.index] = Invalid(
                    f"{where} all change {target}: the entries of a batch must not depend on each other",
                    f"{req.where}.request.url",
                )
    return refused


__all__ = ["batch", "transaction"]
