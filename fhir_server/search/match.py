"""Matching a resource against a restriction: a patient compartment and granular search criteria (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html#finer-grained-resource-constraints-using-search-parameters).

A restriction is what a SMART grant confines access to (`auth/principal.Grant`): the compartment
of one patient and/or `param=value` criteria. It is tested two ways:

* on the current rows, in SQL (`condition`): the criteria become a search condition on
  `tables.resource`, AND-ed into reads, searches and writes;
* on an old version's own content, in memory (`version_matches`): the search index holds current
  versions only, so a version is indexed on the fly; only compartment and plain token criteria are
  evaluable there, anything else does not match (not shown rather than shown unchecked).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, Protocol

import orjson
from sqlalchemy import ColumnElement, and_, true

from ..errors import FhirError
from ..store import tables
from . import plan, query, sole_compartment
from .compartment import patient_compartment_params
from .index import index_tuples
from .parameters import param_id
from .types.string import MAX_LEN
from .types.token import TokenValue

Pairs = tuple[tuple[str, str], ...]


class Restriction(Protocol):
    """A patient compartment ("Patient/123", None: any) and criteria all to hold (`auth/principal.Grant`)."""

    @property
    def compartment(self) -> str | None: ...

    @property
    def query(self) -> Pairs: ...


def condition(
    restriction: Restriction, res_type: str | None, base: str, *, sole: bool = False
) -> ColumnElement[bool] | None:
    """The restriction as ONE condition on `tables.resource` rows (of `res_type`, None: any type);
    None when its criteria cannot be searched on this type (it matches nothing of it). `sole`
    (writes of `res_type`): its patient compartment must be the only one the row is in."""
    try:
        criteria = query.parse(res_type, list(restriction.query), lenient=False)
    except FhirError:
        return None
    compartment = _compartment(restriction.compartment)
    part = plan.condition(criteria, compartment=compartment, base_url=base or None)
    alone = sole_compartment.only_in(compartment, res_type, base) if sole and res_type else None
    return part if alone is None else and_(part, alone)


def of_type(res_type: str) -> ColumnElement[bool]:
    """A grant without restriction on `res_type` ("*": every type), as a condition on `tables.resource`."""
    return true() if res_type == "*" else tables.resource.c.res_type == res_type


def version_matches(res_type: str, content: bytes, restrictions: Iterable[Restriction], base: str) -> bool:
    """A version (its JSON `content`) meets one of the restrictions, checked on its own content."""
    resource = orjson.loads(content)
    index = index_tuples(resource)
    return any(
        (r.compartment is None or _in_compartment(resource, index.get("reference", []), r.compartment, base))
        and _restriction_holds(_token_restriction(res_type, tuple(r.query)), index.get("token", []))
        for r in restrictions
    )


def _compartment(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    kind, _, ident = text.partition("/")
    return kind, ident


# A granular restriction as (param_ids, token values) per parameter, all to hold; None: not evaluable.
TokenRestriction = tuple[tuple[frozenset[int], tuple[TokenValue, ...]], ...] | None


@functools.lru_cache(maxsize=256)
def _token_restriction(res_type: str, pairs: Pairs) -> TokenRestriction:
    """A granular restriction (e.g. `category=vital-signs`) parsed once. Only plain token parameters
    are evaluable on a version's index rows; any other restriction (another type, a modifier, a
    chain) is None: an old version under it is then not shown rather than shown unchecked."""
    try:
        restriction = query.parse(res_type, list(pairs), lenient=False)
    except FhirError:
        return None
    out: list[tuple[frozenset[int], tuple[TokenValue, ...]]] = []
    for criterion in restriction.criteria:
        if not isinstance(criterion, query.Filter) or criterion.modifier or criterion.param.type != "token":
            return None
        values = tuple(value for value in criterion.values if isinstance(value, TokenValue))
        if len(values) != len(criterion.values):
            return None
        out.append((frozenset(criterion.param.ids), values))
    return tuple(out)


def _restriction_holds(restriction: TokenRestriction, tokens: list[tuple[Any, ...]]) -> bool:
    """Every parameter of the restriction matches one of the version's token rows (param_id, grp,
    system, code, display), as the search matches them."""
    if restriction is None:
        return False
    for ids, values in restriction:
        rows = [(system, code) for pid, _, system, code, _ in tokens if pid in ids]
        if not any(_token_matches(value, rows) for value in values):
            return False
    return True


def _token_matches(value: TokenValue, rows: list[tuple[str | None, str | None]]) -> bool:
    return any(
        (value.code is None or code == value.code[:MAX_LEN])
        and (not value.system_given or system == value.system)
        for system, code in rows
    )


def _in_compartment(
    resource: dict[str, Any], references: list[tuple[Any, ...]], compartment: str, base: str
) -> bool:
    """`references`: the resource's reference index rows (param_id, grp, target_type, target_id, url)."""
    kind, _, ident = compartment.partition("/")
    res_type = resource.get("resourceType", "")
    if res_type == kind and resource.get("id") == ident:
        return True
    ids = {param_id(res_type, code) for code in patient_compartment_params(res_type)}
    if not ids:
        return False
    own = f"{base}/{kind}/{ident}" if base else None
    return any(
        pid in ids and target_type == kind and target_id == ident and url in (None, own)
        for pid, _, target_type, target_id, url in references
    )
