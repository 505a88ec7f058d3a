"""The statement behind system- and type-level `$meta` (https://hl7.org/fhir/R4/resource-operation-meta.html):
the tags, security labels and profiles in use.

Read from the search index, so it costs one index scan, not a read of every resource: `_tag` and
`_security` rows of `idx_token`, `_profile` rows of `idx_uri`, of the current resources that meet
`matching` (the searched types and the caller's grants, AND-ed as for a search). Index rows keep no
display of a tag (it is lower-cased for `:text`), so the summary gives system and code only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, literal, null, select, union

from ..store import tables
from . import parameters

KINDS = ("_tag", "_security")
MAX_LABELS = 10_000


def _param_ids(res_types: Sequence[str], code: str) -> list[int]:
    return [parameters.param_id(t, code) for t in res_types if parameters.get(t, code) is not None]


def labels(matching: Sequence[ColumnElement[bool]], res_types: Sequence[str]) -> Select[Any]:
    """Distinct (kind, system, code) rows: kind `_tag`, `_security` or `_profile` (code: the profile url)."""
    r = tables.resource
    token = tables.idx_token
    uri = tables.idx_uri
    parts: list[Select[Any]] = []
    for kind in KINDS:
        parts.append(
            select(literal(kind).label("kind"), token.c.system, token.c.code)
            .join(r, r.c.pk == token.c.resource_pk)
            .where(token.c.param_id.in_(_param_ids(res_types, kind)), and_(*matching))
        )
    parts.append(
        select(literal("_profile").label("kind"), null().label("system"), uri.c.uri.label("code"))
        .join(r, r.c.pk == uri.c.resource_pk)
        .where(uri.c.param_id.in_(_param_ids(res_types, "_profile")), and_(*matching))
    )
    combined = union(*parts).subquery()
    return select(combined.c.kind, combined.c.system, combined.c.code).limit(MAX_LABELS)
