"""$meta, $meta-add and $meta-delete (https://hl7.org/fhir/R4/resource-operation-meta.html).

- `$meta` at system and type level: the tags, security labels and profiles in use on the resources
  the caller may search (from the search index: `search/meta_summary.py`); no versionId/lastUpdated.
- `$meta` on an instance or a historical version: that version's meta, read with the caller's grants
  (404 outside them, as a read).
- `$meta-add` / `$meta-delete` on an instance: tags and security labels are sets keyed by system +
  code (version and display ignored when matching), profiles by url. The change is stored as a new
  version through the one write path (the R4 OperationDefinitions say nothing against it): history,
  change events, the `_tag`/`_security` index and access rules stay right, and the new version is
  validated like any write (a profile added must be met: 422 otherwise). It needs the update
  permission on the type, like PUT. No change (nothing to add or delete) stores nothing.
"""

from __future__ import annotations

from typing import Any

from ..auth import enforce
from ..errors import Invalid, Unprocessable
from ..interactions import read as read_interaction
from ..interactions import search
from ..interactions.context import Context
from ..interactions.update import _check_version
from ..interactions.vread import vread
from ..interactions.write import WriteResult, checked_body, profiles_for
from ..search import meta_summary, parameters, plan
from ..store.sql import Tx
from .parameters import OperationInput

LABELS = ("tag", "security")


def _answer(meta: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": meta}]}


def summary(ctx: Context, tx: Tx, params: OperationInput, res_type: str | None) -> dict[str, Any]:
    """System or type level: the labels and profiles in use, within the caller's grants."""
    if res_type is not None:
        read_interaction.check_type(res_type)
    q = search.parse(ctx, res_type, [], lenient=False)
    base = ctx.settings.base
    restrict = enforce.search_restriction(ctx.principal, q, base)  # 403 without a search permission
    matching = [plan.condition(q, base_url=base)]
    if restrict is not None:
        matching.append(restrict)
    types = [res_type] if res_type is not None else list(parameters.resource_types())
    found: dict[str, list[Any]] = {"tag": [], "security": [], "profile": []}
    for row in sorted(tx.run_search(meta_summary.labels(matching, types)), key=_row_order):
        if row.kind == "_profile":
            found["profile"].append(row.code)
            continue
        coding = {k: v for k, v in (("system", row.system), ("code", row.code)) if v is not None}
        found[row.kind[1:]].append(coding)
    return _answer({k: v for k, v in found.items() if v})


def _row_order(row: Any) -> tuple[str, str, str]:
    return (row.kind, row.system or "", row.code or "")


def instance(
    ctx: Context, tx: Tx, params: OperationInput, res_type: str, res_id: str, version: str | None = None
) -> dict[str, Any]:
    """The meta of the current version, or of `version`, as a read of it would show."""
    if version is None:
        stored = read_interaction.read(tx, res_type, res_id, principal=ctx.principal)
    else:
        stored = vread(tx, res_type, res_id, version, principal=ctx.principal)
    return _answer(stored.resource().get("meta") or {})


def _given_meta(params: OperationInput) -> dict[str, Any]:
    meta = params.complex("meta")
    if meta is None:
        raise Invalid("The operation needs a 'meta' parameter (valueMeta)", "Parameters.parameter")
    for key in ("profile", *LABELS):
        items = meta.get(key, [])
        if not isinstance(items, list):
            raise Invalid(f"meta.{key} must be a list", f"Parameters.parameter.valueMeta.{key}")
        if key == "profile" and not all(isinstance(u, str) and u for u in items):
            raise Invalid("meta.profile must hold canonical urls", "Parameters.parameter.valueMeta.profile")
        if key != "profile" and not all(isinstance(c, dict) and c.get("code") for c in items):
            raise Invalid(f"Each meta.{key} needs a code", f"Parameters.parameter.valueMeta.{key}")
    return meta


def _key(coding: dict[str, Any]) -> tuple[Any, Any]:
    return (coding.get("system"), coding.get("code"))


def _changed(meta: dict[str, Any], given: dict[str, Any], adding: bool) -> dict[str, Any]:
    out = dict(meta)
    for key in ("profile", *LABELS):
        current = list(meta.get(key, []))
        named = given.get(key, [])
        if key == "profile":
            if adding:
                current += [u for u in dict.fromkeys(named) if u not in current]
            else:
                current = [u for u in current if u not in named]
        else:
            keys = {_key(c) for c in named}
            if adding:
                have = {_key(c) for c in current}
                for c in named:
                    if _key(c) not in have:
                        have.add(_key(c))
                        current.append(c)
            else:
                current = [c for c in current if _key(c) not in keys]
        if current:
            out[key] = current
        else:
            out.pop(key, None)
    return out


def change(
    ctx: Context,
    tx: Tx,
    params: OperationInput,
    res_type: str,
    res_id: str,
    *,
    adding: bool,
    if_match: int | None = None,
) -> tuple[WriteResult | None, dict[str, Any]]:
    """$meta-add / $meta-delete: (the new version, or None when nothing changed; the Parameters answer)."""
    enforce.refuse_server_written(ctx.principal, res_type)  # AuditEvent: the server's alone
    if res_type == "Subscription":  # its owner and server-owned status are checked on a whole resource
        raise Invalid(
            "A Subscription is changed by an update (PUT), not by $meta-add or $meta-delete", res_type
        )
    given = _given_meta(params)
    current = read_interaction.read(tx, res_type, res_id)
    enforce.check_write(tx, ctx.principal, "update", res_type, current)
    _check_version(current, if_match)
    resource = current.resource()
    meta = resource.get("meta") or {}
    new_meta = _changed(meta, given, adding)
    if new_meta == meta:
        return None, _answer(meta)
    resource["meta"] = new_meta
    try:
        checked = checked_body(
            resource, res_type, settings=ctx.settings, stored=profiles_for(ctx, tx, res_type)
        )
    except Invalid as exc:
        raise Unprocessable(exc.message, issues=exc.issues) from None
    stored = tx.update(current, checked)
    enforce.check_written(tx, ctx.principal, "update", stored)
    return WriteResult(stored, 200), _answer(stored.resource().get("meta") or {})
