"""Patient/$everything (https://hl7.org/fhir/R4/patient-operation-everything.html, OperationDefinition patient-everything).

`[base]/Patient/[id]/$everything` (one patient) and `[base]/Patient/$everything` (every Patient the
caller may read), GET or POST. The answer is a searchset Bundle: the Patient compartment
(mode `match`), then the resources its members reference (mode `include`), each resource once over
all pages, in surrogate-key order. Inputs: `start`/`end` (care dates, search/everything.py), `_since`
(lastUpdated at or after) and `_type` (only these types) filter what is returned, compartment and
referenced alike, not which references are followed; `_count` (page size, `next` link with a signed
`_cursor`).

Access: the operation needs read and search on Patient (`enforce.check_operation`); the patients
are those the caller may read, and every resource of a page passes `enforce.readable_rows`, so a
restricted token (a patient's, a category grant) sees only what its grants allow. The references
that are followed are those of the members the caller may read.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..audit import access as audit
from ..auth import enforce
from ..errors import Invalid, NotFound
from ..interactions import read as read_interaction
from ..interactions.context import Context
from ..interactions.search import cursor_key, type_and_id
from ..model import is_resource_type
from ..references import local_target, walk
from ..search import cursor_signing, everything, query
from ..search.bundle import bundle, link, page_url
from ..search.types.base import SqlContext
from ..search.types.date import search_range
from ..store.sql import Tx
from .parameters import OperationInput

_COMPARTMENT = "c"
_REFERENCED = "r"


def filters(params: OperationInput) -> everything.Filters:
    """`_type`, `_since`, `start`, `end` (400 naming the parameter when malformed)."""
    types: list[str] = []
    for value in params.values.get("_type", ()):
        if not isinstance(value, str):
            raise Invalid("Parameter '_type' takes resource types", expression="_type")
        for name in value.split(","):
            name = name.strip()
            if not is_resource_type(name):
                raise Invalid(f"Parameter '_type': '{name}' is not a resource type", expression="_type")
            types.append(name)
    since = params.text("_since")
    start = params.text("start")
    end = params.text("end")
    low_start = search_range(start, "start")[0] if start is not None else None
    high_end = search_range(end, "end")[1] if end is not None else None
    if low_start is not None and high_end is not None and low_start > high_end:
        raise Invalid("'start' is after 'end'", expression="start")
    return everything.Filters(
        types=tuple(dict.fromkeys(types)),
        since=search_range(since, "_since")[0] if since is not None else None,
        start=low_start,
        end=high_end,
    )


def _cursor(ctx: Context, params: OperationInput) -> tuple[str, int]:
    text = params.text("_cursor")
    if text is None:
        return _COMPARTMENT, 0
    payload = cursor_signing.verify(text, cursor_key(ctx))
    if payload is None or payload[:1] not in (_COMPARTMENT, _REFERENCED) or not payload[1:].isdigit():
        raise Invalid("This _cursor was not issued by this server", expression="_cursor")
    return payload[:1], int(payload[1:])


def _patients(ctx: Context, tx: Tx, patient_id: str | None) -> list[str]:
    if patient_id is not None:
        read_interaction.read(tx, "Patient", patient_id, principal=ctx.principal)  # 404 outside the grants
        return [patient_id]
    q = query.parse("Patient", [], lenient=False)
    restrict = enforce.search_restriction(ctx.principal, q, ctx.settings.base)
    return [str(row.res_id) for row in tx.run_search(everything.patients(restrict))]


def everything_bundle(ctx: Context, tx: Tx, params: OperationInput, patient_id: str | None) -> dict[str, Any]:
    """One page of $everything for the patient `patient_id` (None: type level)."""
    enforce.check_operation(ctx.principal, "Patient", "rs")
    f = filters(params)
    count = params.integer("_count", 1)
    size = min(count if count is not None else ctx.settings.default_count, ctx.settings.max_count)
    phase, after = _cursor(ctx, params)
    ids = _patients(ctx, tx, patient_id)
    if not ids and patient_id is None:
        raise NotFound("There is no Patient this request may read")
    base = ctx.settings.base
    sql = SqlContext(base.rstrip("/") or None, None, None)

    found: list[Any] = []  # (pk, content) in page order
    included_from = 0  # index in `found` where referenced resources start
    next_cursor: str | None = None
    if phase == _COMPARTMENT:
        rows = list(tx.run_search(everything.compartment_page(ids, f, sql, after, size + 1)))
        if len(rows) > size:
            found, next_cursor = rows[:size], f"{_COMPARTMENT}{rows[size - 1].pk}"
        else:
            found, phase, after = rows, _REFERENCED, 0
        included_from = len(found)
    if phase == _REFERENCED and next_cursor is None:
        room = size - len(found)
        # `_type` and `_since` filter what is returned, not what the members reference
        care_only = everything.Filters(start=f.start, end=f.end)
        members = list(tx.run_search(everything.compartment_page(ids, care_only, sql, 0, None)))
        targets = _targets(enforce.readable_rows(tx, ctx.principal, members), base)
        stmt = everything.referenced_page(targets, [int(m.pk) for m in members], f, after, room + 1)
        rows = list(tx.run_search(stmt))
        if room == 0 and rows:
            next_cursor = f"{_REFERENCED}0"
        elif len(rows) > room:
            rows = rows[:room]
            next_cursor = f"{_REFERENCED}{rows[-1].pk}"
        found += rows
    kept = {int(r.pk) for r in enforce.readable_rows(tx, ctx.principal, found)}
    entries = [
        _entry(base, r.content, "match" if n < included_from else "include")
        for n, r in enumerate(found)
        if int(r.pk) in kept
    ]
    audit.note_contents([r.content for r in found if int(r.pk) in kept])
    path = f"Patient/{patient_id}/$everything" if patient_id is not None else "Patient/$everything"
    used = [
        (k, str(v)) for k, vs in params.values.items() if k != "_cursor" for v in vs if isinstance(v, str)
    ]
    links = [link("self", page_url(base, path, used))]
    if next_cursor is not None:
        signed = cursor_signing.sign(next_cursor, cursor_key(ctx))
        links.append(link("next", page_url(base, path, [*used, ("_cursor", signed)])))
    total = len(entries) if next_cursor is None and params.text("_cursor") is None else None
    return bundle("searchset", entries, links, total)


def _targets(members: list[Any], base: str) -> set[tuple[str, str]]:
    """The local (type, id) every member references (contained resources included)."""
    out: set[tuple[str, str]] = set()
    for member in members:
        for element, _ in walk(orjson.loads(member.content), "", contained=True):
            target = local_target(element["reference"], base)
            if target is not None:
                out.add(target)
    return out


def _entry(base: str, content: bytes, mode: str) -> dict[str, Any]:
    rtype, rid = type_and_id(content)
    return {
        "fullUrl": f"{base}/{rtype}/{rid}",
        "resource": orjson.Fragment(content),
        "search": {"mode": mode},
    }
