"""Bulk Data kick-off request parameters (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#query-parameters).

`export_params(...)` checks the parameters of a system, Patient or Group `$export` (from the query
string of a GET, or the Parameters resource of a POST) and returns the job parameters: the resource
types to export, what restricts each (Patient compartment, `_typeFilter` searches, the caller's
scopes), `_since`, `_elements`. Repeated parameters count as one comma-separated value. A parameter
the server does not support, or a bad value, is a 400 — unless `Prefer: handling=lenient`, when it is
left out and reported as a warning in the completion manifest's `error` files; a malformed `_since`
or `_outputFormat` is always a 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .. import instant, model
from ..errors import Forbidden, Invalid, NotFound
from ..search import compartment as comp
from ..search import query as search_query
from ..store import group_members as group
from ..store.repository import Repository
from . import elements

OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
SUPPORTED = (
    "_outputFormat",
    "_since",
    "_type",
    "_elements",
    "patient",
    "includeAssociatedData",
    "_typeFilter",
)
RELEVANT_PROVENANCE = "RelevantProvenanceResources"
LATEST_PROVENANCE = "LatestProvenanceResources"
_INSTANT = re.compile(
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)"
    r"(\.[0-9]{1,9})?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
_PATIENT_REF = re.compile(r"(?:.*/)?Patient/([A-Za-z0-9\-.]{1,64})")


@dataclass(frozen=True)
class KickOff:
    """One kick-off request as plain values."""

    level: str  # system | patient | group
    pairs: list[tuple[str, str]]  # parameters in order (POST Parameters flattened the same way)
    method: str = "GET"
    lenient: bool = False
    group_id: str | None = None


def parameters_pairs(body: Any) -> list[tuple[str, str]]:
    """The (name, value) pairs of a POST kick-off's Parameters resource; 400 when it is not one."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise Invalid("A POST kick-off takes a Parameters resource", "Parameters")
    pairs: list[tuple[str, str]] = []
    for i, param in enumerate(body.get("parameter") or []):
        where = f"Parameters.parameter[{i}]"
        if not isinstance(param, dict) or not isinstance(param.get("name"), str):
            raise Invalid("Each parameter needs a name", where)
        values = [(k, v) for k, v in param.items() if k.startswith("value")]
        if len(values) != 1:
            raise Invalid(f"Parameter '{param['name']}' needs exactly one value[x]", where)
        key, value = values[0]
        if key == "valueReference":
            value = value.get("reference") if isinstance(value, dict) else None
        if not isinstance(value, str | int | float | bool):
            raise Invalid(f"Parameter '{param['name']}' has an unsupported value type {key}", where)
        pairs.append((param["name"], str(value).lower() if isinstance(value, bool) else str(value)))
    return pairs


class _Checker:
    """Collects problems: each is an error, or under lenient handling a warning."""

    def __init__(self, lenient: bool) -> None:
        self.lenient = lenient
        self.warnings: list[str] = []

    def problem(self, message: str, expression: str, *, forbidden: bool = False) -> None:
        if not self.lenient:
            raise (Forbidden if forbidden else Invalid)(message, expression)
        self.warnings.append(f"{message} (ignored: Prefer handling=lenient)")


def _values(pairs: list[tuple[str, str]], name: str) -> list[str]:
    joined = ",".join(v for k, v in pairs if k == name)
    return [v.strip() for v in joined.split(",") if v.strip()]


def _single(pairs: list[tuple[str, str]], name: str) -> str | None:
    values = list(dict.fromkeys(v.strip() for k, v in pairs if k == name and v.strip()))
    if len(values) > 1:
        raise Invalid(f"{name} may be given once", name)
    return values[0] if values else None


def parse_since(text: str) -> int:
    """A FHIR instant (a '+' decoded from a query string as a space is put back); 400 otherwise."""
    value = text.strip().replace(" ", "+")
    if not _INSTANT.fullmatch(value):
        raise Invalid(
            f"_since must be a FHIR instant with a time zone, e.g. 2024-01-31T10:00:00Z: '{text}'", "_since"
        )
    try:
        return instant.parse(value)
    except ValueError:
        raise Invalid(f"_since is not a valid instant: '{text}'", "_since") from None


def _grants(principal: Any, resource_type: str) -> list[dict[str, Any]] | str | None:
    """The caller's access to export a type: None (all), a list of grants, or a reason it is denied."""
    if principal is None:
        return None
    from ..auth import enforce
    from ..auth.principal import Access

    access = enforce.operation(principal, resource_type, needs="rs")
    if not isinstance(access, Access):
        return str(access.reason)
    if access.unrestricted:
        return None
    grants = [{"compartment": g.compartment, "query": [list(p) for p in g.query]} for g in access.grants]
    # Consent denies (auth/privacy_consent.py) of this type: excluded from the export
    withheld = [
        {"compartment": w.compartment, "query": [list(p) for p in w.query], "withheld": True}
        for w in access.withheld
        if (w.types is None or resource_type in w.types) and _searchable(resource_type, w.query)
    ]
    return grants + withheld


def _searchable(resource_type: str, pairs: tuple[tuple[str, str], ...]) -> bool:
    """A restriction this type cannot be searched by withholds nothing of it (as in auth/enforce.py)."""
    try:
        search_query.parse(resource_type, list(pairs), lenient=False)
    except Invalid:
        return False
    return True


def _check_type_filters(
    check: _Checker, values: list[str], types: list[str], max_count: int
) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for value in values:
        rtype, sep, text = value.partition("?")
        if not sep or not model.is_resource_type(rtype):
            check.problem(f"_typeFilter '{value}' is not [resource type]?[search query]", "_typeFilter")
            continue
        if rtype not in types:
            check.problem(f"_typeFilter '{value}' names a type that is not exported", "_typeFilter")
            continue
        pairs = parse_qsl(text, keep_blank_values=True)
        try:
            q = search_query.parse(rtype, pairs, lenient=check.lenient, max_count=max_count)
        except Invalid as exc:
            check.problem(f"_typeFilter '{value}': {exc.message}", "_typeFilter")
            continue
        if q.sort or q.includes or q.count is not None or q.summary or q.elements or q.total:
            check.problem(
                f"_typeFilter '{value}': only search criteria are allowed (no _sort, _count, _include, "
                "_summary, _elements, _total)",
                "_typeFilter",
            )
            continue
        for name, val in q.ignored:
            if val:
                check.warnings.append(f"_typeFilter '{value}': parameter '{name}' ignored")
        out.setdefault(rtype, []).append(urlencode(list(q.used)))
    return out


def _patients(check: _Checker, store: Repository, refs: list[str], members: set[str] | None) -> list[str]:
    ids: list[str] = []
    for ref in refs:
        m = _PATIENT_REF.fullmatch(ref)
        if m is None:
            check.problem(f"patient '{ref}' is not a Patient reference", "patient")
        elif m.group(1) not in ids:
            ids.append(m.group(1))
    with store.read() as tx:
        found = {pid for pid in ids if (p := tx.current("Patient", pid)) is not None and not p.deleted}
    kept = []
    for pid in ids:
        if pid not in found:
            check.problem(f"Patient/{pid} does not exist on this server", "patient")
        elif members is not None and pid not in members:
            check.problem(f"Patient/{pid} is not a member of the group", "patient")
        else:
            kept.append(pid)
    return kept


def group_members(store: Repository, group_pk: int, base: str) -> set[str]:
    """The ids of the Patients listed in Group.member.entity (current index)."""
    from ..search.parameters import param_id

    with store.read() as tx:
        return group.patient_ids(tx, group_pk, param_id("Group", "member"), base)


def _group(store: Repository, group_id: str) -> int:
    with store.read() as tx:
        found = tx.current("Group", group_id)
    if found is None or found.deleted:
        raise NotFound(f"Group/{group_id} does not exist", "Group")
    return found.pk


def export_params(
    store: Repository, kick: KickOff, principal: Any, *, base: str, max_count: int
) -> dict[str, Any]:
    """Check a kick-off and return the job parameters (see the module docstring)."""
    check = _Checker(kick.lenient)
    pairs = kick.pairs
    for name in dict.fromkeys(k for k, _ in pairs):
        if name not in SUPPORTED:
            check.problem(f"Unsupported $export parameter '{name}'", name)

    fmt = _single(pairs, "_outputFormat") or "application/fhir+ndjson"
    if fmt.replace(" ", "+") not in OUTPUT_FORMATS:
        raise Invalid(
            f"Unsupported _outputFormat '{fmt}'; this server writes application/fhir+ndjson", "_outputFormat"
        )
    since_text = _single(pairs, "_since")
    since = parse_since(since_text) if since_text is not None else None

    group_pk: int | None = None
    if kick.level == "group":
        assert kick.group_id is not None
        denied = _grants(principal, "Group")
        if isinstance(denied, str):
            raise Forbidden(f"Not allowed to read Group/{kick.group_id}: {denied}", "Group")
        group_pk = _group(store, kick.group_id)

    allowed = comp.compartment_types() if kick.level != "system" else sorted(model.resource_types())
    requested = list(dict.fromkeys(_values(pairs, "_type")))
    types: list[str] = []
    for rtype in requested:
        if not model.is_resource_type(rtype):
            check.problem(f"_type: unknown resource type '{rtype}'", "_type")
        elif rtype not in allowed:
            check.problem(f"_type: {rtype} is not in the Patient compartment", "_type")
        else:
            types.append(rtype)
    if requested and not types:
        raise Invalid("_type names no resource type that this export can return", "_type")

    associated = list(dict.fromkeys(_values(pairs, "includeAssociatedData")))
    provenance = RELEVANT_PROVENANCE in associated
    for value in associated:
        if value not in (RELEVANT_PROVENANCE, LATEST_PROVENANCE) or (
            value == LATEST_PROVENANCE and not provenance
        ):
            check.problem(f"includeAssociatedData '{value}' is not supported", "includeAssociatedData")
    explicit = bool(types)
    if not types:
        types = list(allowed)
    added = provenance and "Provenance" not in types  # else Provenance is exported anyway, a superset
    if added:
        types.append("Provenance")

    grants: dict[str, list[dict[str, Any]]] = {}
    permitted: list[str] = []
    for rtype in types:
        access = _grants(principal, rtype)
        if isinstance(access, str):
            if explicit:
                check.problem(f"Not allowed to export {rtype}: {access}", "_type", forbidden=True)
            continue
        if access is not None:
            grants[rtype] = access
        permitted.append(rtype)
    if not permitted:
        raise Forbidden("The granted scopes allow exporting none of the requested resource types")

    wanted_elements, problems = elements.parse(_values(pairs, "_elements"))
    for problem in problems:
        check.problem(f"_elements: {problem}", "_elements")

    patients: list[str] | None = None
    patient_refs = _values(pairs, "patient")
    if patient_refs:
        if kick.level == "system":
            check.problem("patient applies to Patient and Group exports only", "patient")
        elif kick.method != "POST":
            check.problem("patient is supported in POST kick-off requests only", "patient")
        else:
            members = group_members(store, group_pk, base) if group_pk is not None else None
            patients = _patients(check, store, patient_refs, members)
            if not patients:
                raise Invalid("None of the requested patients can be exported", "patient")

    filters = _check_type_filters(check, _values(pairs, "_typeFilter"), permitted, max_count)
    return {
        "level": kick.level,
        "group": {"id": kick.group_id, "pk": group_pk} if kick.level == "group" else None,
        "patients": patients,
        "types": permitted,
        "since": since,
        "elements": wanted_elements,
        "type_filters": filters,
        "grants": grants,
        "provenance": "relevant" if added else "default",
        "output_format": "application/fhir+ndjson",
        "warnings": check.warnings,
    }


def request_pairs(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Query parameters of a GET kick-off (HTTP-level `_format`/`_pretty` are not export parameters)."""
    return [(k, v) for k, v in items if k not in ("_format", "_pretty")]
