"""Enforcing SMART scopes on every interaction, in one place (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html).

`principal.decide()` says whether the caller may perform an interaction on a resource type and under
which grants (a patient compartment, granular query restrictions such as `category=...`). Here those
grants meet the data, always as SQL over the current rows:

* reads, vreads, history: the resource must satisfy a grant, else 404 (its existence is not
  revealed); an older version must also meet a grant on its own content: compartment and plain token
  restrictions (such as `category=`) are evaluated on it; an old version under any other restriction
  is not shown.
* searches: the grants become ONE condition AND-ed into the search (`plan.build(restrict=...)`), so
  paging and totals only ever see permitted rows; `_include`d / `_revinclude`d resources are
  dropped unless readable; chained parameters and `_has` are refused (403) unless the linked type is
  granted without restriction, so they cannot probe data outside the grant.
* writes: the current version (update, patch, delete) and the written result (create, update, patch)
  must satisfy a grant of that interaction, checked in the same database transaction, so a patient
  cannot write outside their compartment; a refusal rolls the write back. A grant confined to a
  patient's compartment also demands that the resource is in no OTHER patient's compartment
  (`search/sole_compartment.py`), so a patient cannot write into, or through, another patient's record.
* references written by a caller whose access is restricted are checked against what it may read:
  a reference it may not read is refused exactly like one to an unknown id (422, same message), so
  references are no oracle of which ids exist (`readable_targets`, run in the flush's batch). A type
  it has no read scope for counts as readable inside the patient compartment its writes are confined to.
* batch and transaction entries go through the same interaction functions, entry by entry.
* operations ($export, $import, $ingest, bulk files) declare the permissions they need and ask
  `operation()`, the one check; matching a resource against a grant lives in `search/match.py`.

A scope that does not cover the interaction at all is 403 with `error="insufficient_scope"`
(RFC 6750 section 3.1). `principal=None` means security is off (internal callers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, false, not_, or_

from ..audit import access as audit
from ..errors import Forbidden, NotFound
from ..search import match, query
from ..search.types import list_param
from ..search.types.base import SqlContext
from ..store import conditions, tables
from ..store.sql import Stored, Tx
from . import async_status
from .principal import SERVER_WRITTEN, Access, Denied, FhirInteraction, Grant, Principal, Withheld, decide

INSUFFICIENT = {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}


def access(
    principal: Principal | None,
    interaction: FhirInteraction,
    res_type: str,
    *,
    instance: bool = False,
    needs: str | None = None,
) -> Access | None:
    """The restricted access the caller has, None when unrestricted (or security is off); 403 when none."""
    if principal is None:
        return None
    decided = decide(principal, interaction, res_type, instance=instance, needs=needs)
    if isinstance(decided, Denied):
        raise Forbidden(f"The access token does not allow this: {decided.reason}", headers=dict(INSUFFICIENT))
    return None if decided.unrestricted else decided


def operation(principal: Principal, res_type: str, needs: str) -> Access | Denied:
    """The one check of an operation ($export, $import, $ingest, a bulk file): it declares the SMART
    permissions it needs (e.g. "rs") on `res_type`; the grants it runs under, or why it may not run."""
    return decide(principal, "operation", res_type, needs=needs)


def check_operation(principal: Principal | None, res_type: str, needs: str) -> None:
    """An operation declares the SMART permissions it needs (e.g. "rs"); 403 without them."""
    access(principal, "operation", res_type, needs=needs)


def refuse_server_written(principal: Principal | None, res_type: str) -> None:
    """403 before anything else (validation included) for a client writing a type only the server
    writes (AuditEvent: principal.SERVER_WRITTEN), whatever its scopes."""
    if principal is not None and res_type in SERVER_WRITTEN:
        raise Forbidden(
            f"{res_type} is written by the server alone: no client may create, change or delete it"
        )


def check_read(tx: Tx, principal: Principal | None, stored: Stored) -> None:
    """read: the current resource must be within the grants (else 404, like an unknown id).

    One exception: the status Task of an asynchronous request (`$ingest`) is readable by whoever made
    the request (`async_status`, answered by the jobs: same client, kind of token, user and patient
    context), whatever its scopes say about Task: Task is
    outside the Patient compartment, and a patient app must be able to poll what it started (as a
    Bulk Data client polls its status URL)."""
    try:
        granted = access(principal, "read", stored.res_type)
        if granted is not None and not _permitted(tx, granted, stored.res_type, stored.res_id):
            raise NotFound(f"{stored.res_type}/{stored.res_id} is not known")
    except (Forbidden, NotFound):
        if principal is None or not async_status.requested_by(
            tx.conn, principal, stored.res_type, stored.res_id
        ):
            raise


def check_version(tx: Tx, principal: Principal | None, version: Stored) -> None:
    """vread: the resource as it is now, and this version's compartment, must be within the grants."""
    granted = access(principal, "vread", version.res_type)
    if granted is None:
        return
    if not _permitted(tx, granted, version.res_type, version.res_id) or not _version_allowed(
        granted, version, tx.base
    ):
        raise NotFound(f"{version.res_type}/{version.res_id} is not known")


def history(
    tx: Tx,
    principal: Principal | None,
    res_type: str | None,
    res_id: str | None,
    rows: list[tuple[int, Stored]],
) -> list[tuple[int, Stored]]:
    """history: only versions of resources within the grants (instance level: 404 otherwise)."""
    if principal is None:
        return rows
    instance = res_id is not None
    granted = access(principal, "history", res_type or "*", instance=instance)
    if instance and res_type is not None and res_id is not None:
        if granted is not None and not _permitted(tx, granted, res_type, res_id):
            raise NotFound(f"{res_type}/{res_id} is not known")
        return [(txn, s) for txn, s in rows if granted is None or _version_allowed(granted, s, tx.base)]
    keep: list[tuple[int, Stored]] = []
    for res_type_, group in _by_type(rows).items():
        per_type = access(principal, "history", res_type_) if res_type is None else granted
        if per_type is None:
            keep += group
            continue
        allowed = _permitted_pks(tx, per_type, res_type_, [s.pk for _, s in group])
        keep += [(txn, s) for txn, s in group if s.pk in allowed and _version_allowed(per_type, s, tx.base)]
    return sorted(keep, key=lambda item: -item[0])


def search_restriction(
    principal: Principal | None, q: query.SearchQuery, base: str = ""
) -> ColumnElement[bool] | None:
    """The condition to AND into a search: the grants of every searched type (None: unrestricted)."""
    if principal is None:
        return None
    _check_links(principal, q.criteria)
    parts: list[ColumnElement[bool]] = []
    restricted = False
    for res_type in q.types or ("*",):
        granted = access(principal, "search", res_type)
        if granted is None:
            parts.append(match.of_type(res_type))
        else:
            restricted = True
            parts.append(_condition(granted, None if res_type == "*" else res_type, base))
    lists = _readable_lists(principal, q.criteria, base)
    if not lists:
        return or_(*parts) if restricted else None
    return and_(or_(*parts), *lists) if restricted else and_(*lists)


def _readable_lists(principal: Principal, criteria: Iterable[Any], base: str) -> list[ColumnElement[bool]]:
    """`_list`: the List must be readable (403 without a List read scope). Under restricted List
    grants, the results are narrowed to the items of the Lists that meet them (the `_list` test
    itself takes the items of every named List)."""
    out: list[ColumnElement[bool]] = []
    for criterion in criteria:
        if not (isinstance(criterion, query.Filter) and criterion.param.type == "list"):
            continue
        granted = access(principal, "read", "List")
        if granted is None:
            continue
        ids = [v.id for v in criterion.values if isinstance(v, list_param.ListValue)]
        readable = _condition(granted, "List", base)
        ctx = SqlContext(base or None, None, None)
        out.append(tables.resource.c.pk.in_(list_param.list_items(ctx, ids, readable)))
    return out


def readable_rows(tx: Tx, principal: Principal | None, rows: Sequence[Any]) -> list[Any]:
    """Of (pk, content) rows (e.g. `_include`d resources), those the caller may read; others dropped."""
    if principal is None or not rows:
        return list(rows)
    pks = [int(r.pk) for r in rows]
    types = conditions.types_of(tx, pks)
    allowed: set[int] = set()
    for res_type in set(types.values()):
        group = [pk for pk, t in types.items() if t == res_type]
        decided = decide(principal, "read", res_type)
        if isinstance(decided, Denied):
            continue
        if decided.unrestricted:
            allowed.update(group)
        else:
            allowed |= _permitted_pks(tx, decided, res_type, group)
    return [r for r in rows if int(r.pk) in allowed]


def check_write(
    tx: Tx, principal: Principal | None, interaction: FhirInteraction, res_type: str, prev: Stored | None
) -> None:
    """Before update, patch or delete: the scopes allow it, and the current version is within the grants
    (a patient compartment: that one alone). Also arms the reference check of the flush (`hide_unreadable`)."""
    granted = access(principal, interaction, res_type)
    hide_unreadable(tx, principal, granted)
    if granted is None or prev is None or prev.deleted:
        return
    if not _permitted(tx, granted, prev.res_type, prev.res_id, sole=True):
        raise Forbidden(f"The access token does not allow to {interaction} {prev.res_type}/{prev.res_id}")


def check_written(tx: Tx, principal: Principal | None, interaction: FhirInteraction, stored: Stored) -> None:
    """After create, update or patch, in the same transaction: the result must be within the grants
    (a patient compartment: that one alone)."""
    granted = access(principal, interaction, stored.res_type)
    if granted is None:
        return
    if not _permitted(tx, granted, stored.res_type, stored.res_id, sole=True):
        raise Forbidden(
            f"The access token does not allow to {interaction} this {stored.res_type}: "
            "it would lie outside the granted patient compartment or restrictions"
        )


def check_written_together(tx: Tx, granted: dict[str, Access], written: Iterable[tuple[str, str]]) -> None:
    """`check_written` for many resources created in one transaction (an ingest chunk), in ONE query:
    each (type, id) must lie within the grants of its type (a patient compartment: that one alone);
    a type missing from `granted` is unrestricted. 403 naming the first one outside them."""
    by_type: dict[str, list[str]] = {}
    for res_type, res_id in written:
        if res_type in granted:
            by_type.setdefault(res_type, []).append(res_id)
    tests = [
        (res_type, ids, _condition(granted[res_type], res_type, tx.base, sole=True))
        for res_type, ids in sorted(by_type.items())
    ]
    tx.flush(check_references=False)
    inside = conditions.keys_meeting(tx, tests)
    for res_type, ids in sorted(by_type.items()):
        for res_id in ids:
            if (res_type, res_id) not in inside:
                raise Forbidden(
                    f"The access token does not allow to create this {res_type}: "
                    "it would lie outside the granted patient compartment or restrictions"
                )


def grants_condition(granted: Access, res_type: str, base: str = "") -> ColumnElement[bool]:
    """The grants as ONE condition on `tables.resource` for a search of `res_type` (an operation that
    looks resources up with the grants recorded with its job, as `search_restriction` does for a caller)."""
    return _condition(granted, res_type, base)


def hide_unreadable(tx: Tx, principal: Principal | None, granted: Access | None) -> None:
    """Make the flush treat references this caller may not read as unknown (`readable_targets`);
    `granted`: the access of the write, whose patient compartments (if confined) are remembered."""
    if principal is None:
        return
    previous = tx.visible
    confined = granted.compartments if granted is not None else frozenset()
    if isinstance(previous, ReadableTargets):
        confined |= previous.compartments
    tx.visible = ReadableTargets(principal, confined)


@dataclass(frozen=True)
class ReadableTargets:
    """The flush's filter of existing reference targets (`Tx.visible`): those the caller may read."""

    principal: Principal
    compartments: frozenset[str]  # the patient compartments the caller's writes are confined to

    def __call__(self, tx: Tx, targets: set[tuple[str, str]]) -> set[tuple[str, str]]:
        return readable_targets(tx, targets, self.principal, self.compartments)


def readable_targets(
    tx: Tx, targets: set[tuple[str, str]], principal: Principal, compartments: frozenset[str]
) -> set[tuple[str, str]]:
    """Of existing (type, id) reference targets, those the caller may read, in ONE query for all types.

    A type without any read scope: for a writer confined to patient compartments (a patient app
    with write-only scopes), what lies in those compartments (its own Patient, say); for any other
    writer (a clinician, a backend service) every target, as before."""
    keep: set[tuple[str, str]] = set()
    tests: list[tuple[str, list[str], ColumnElement[bool]]] = []
    for res_type in sorted({t for t, _ in targets}):
        ids = sorted(i for t, i in targets if t == res_type)
        decided = decide(principal, "read", res_type)
        if isinstance(decided, Denied) and compartments:
            decided = Access("r", tuple(Grant(c) for c in sorted(compartments)))
        if isinstance(decided, Denied) or decided.unrestricted:
            keep.update((res_type, i) for i in ids)
        else:
            tests.append((res_type, ids, _condition(decided, res_type, tx.base)))
    return keep | conditions.keys_meeting(tx, tests)


# ---------------- grants as SQL ----------------
def _condition(
    granted: Access, res_type: str | None, base: str, *, sole: bool = False
) -> ColumnElement[bool]:
    """OR over the grants: (patient compartment) AND (granular query), on `tables.resource`.
    `sole` (writes of `res_type`): a grant's patient compartment must be the only one it is in.
    A restriction this type cannot be searched by matches nothing of it."""
    parts = [match.condition(grant, res_type, base, sole=sole) for grant in granted.grants]
    kept = [part for part in parts if part is not None]
    allowed = or_(*kept) if kept else false()
    if not granted.withheld:
        return allowed
    denied = withheld_condition(granted.withheld, res_type, base)
    return allowed if denied is None else and_(allowed, not_(denied))


def withheld_condition(
    withheld: Iterable[Withheld], res_type: str | None, base: str
) -> ColumnElement[bool] | None:
    """What Consent deny provisions withhold (auth/privacy_consent.py), as ONE condition on
    `tables.resource` rows of `res_type` (None: any type); None when nothing of it is withheld.
    Each decision is noted for the audit trail."""
    parts: list[ColumnElement[bool]] = []
    applied: list[str] = []
    for rule in withheld:
        types = [res_type] if res_type is not None else sorted(rule.types or ())
        if res_type is None and rule.types is None:
            part = match.condition(Grant(rule.compartment, rule.query), None, base)
            if part is not None:
                parts.append(part)
                applied.append(rule.consent)
            continue
        for t in types:
            if rule.types is not None and t not in rule.types:
                continue
            part = match.condition(Grant(rule.compartment, rule.query), t, base)
            if part is not None:  # a restriction this type cannot be searched by withholds nothing of it
                parts.append(part if res_type is not None else and_(match.of_type(t), part))
                applied.append(rule.consent)
    if applied:
        audit.note_consent(applied)
    return or_(*parts) if parts else None


def _permitted(tx: Tx, granted: Access, res_type: str, res_id: str, *, sole: bool = False) -> bool:
    return conditions.holds(tx, res_type, res_id, _condition(granted, res_type, tx.base, sole=sole))


def _permitted_pks(tx: Tx, granted: Access, res_type: str, pks: Iterable[int]) -> set[int]:
    return conditions.pks_meeting(tx, pks, _condition(granted, res_type, tx.base))


def _by_type(rows: list[tuple[int, Stored]]) -> dict[str, list[tuple[int, Stored]]]:
    out: dict[str, list[tuple[int, Stored]]] = {}
    for txn, stored in rows:
        out.setdefault(stored.res_type, []).append((txn, stored))
    return out


# ---------------- versions: the grants checked on the content ----------------
def _version_allowed(granted: Access, version: Stored, base: str) -> bool:
    """An old version meets a grant: its compartment and its granular restrictions, checked on the
    version's own content (`search/match.py`: the search index holds current versions only)."""
    if version.deleted or not version.content:
        return True  # a deletion marker carries no data
    if granted.withheld and match.version_matches(
        version.res_type,
        version.content,
        [Grant(w.compartment, w.query) for w in granted.withheld],
        base,
    ):
        return False  # a Consent withholds this version from the caller
    return match.version_matches(version.res_type, version.content, granted.grants, base)


# ---------------- chains and _has ----------------
def _check_links(principal: Principal, criteria: Iterable[Any], nested: bool = False) -> None:
    """Chained parameters and `_has` reach other resources: only types granted without restriction
    (and `_list` inside them: List)."""
    for criterion in criteria:
        if nested and isinstance(criterion, query.Filter) and criterion.param.type == "list":
            _unrestricted(principal, "List", "_list")
        if isinstance(criterion, query.Chain):
            for target in criterion.target_types:
                _unrestricted(principal, target, "a chained search")
            _check_links(principal, [criterion.criterion], nested=True)
        elif isinstance(criterion, query.Has):
            _unrestricted(principal, criterion.source_type, "a _has search")
            _check_links(principal, [criterion.criterion], nested=True)


def _unrestricted(principal: Principal, res_type: str, what: str) -> None:
    if access(principal, "search", res_type) is not None:
        raise Forbidden(
            f"{what} into {res_type} is not available with patient-level or restricted scopes",
            headers=dict(INSUFFICIENT),
        )
