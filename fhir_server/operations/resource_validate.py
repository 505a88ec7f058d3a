"""$validate on a resource type or instance (https://hl7.org/fhir/R4/resource-operation-validate.html).

Inputs (OperationDefinition Resource-validate): `resource` (in a Parameters body, or the resource
itself as the POST body), `mode` (create | update | delete; `profile` is taken as "validate against
`profile` only" like no mode), `profile` (a StructureDefinition url). The answer is an
OperationOutcome with 200 whether or not the resource is valid; problems with the request itself
(an unknown mode, no resource to validate, an unknown profile asked for) are 400s. `profile` may
name a StructureDefinition stored on the server (`url` or `url|version`) that the caller may search
for (`interactions/stored_profiles.for_caller`); declared `meta.profile` claims are checked as a
write would check them.

Permissions: validating checks what a write would check, so it needs the SMART permission of the
write it rehearses on that type (create "c", update "u", delete "d"); instance-level validation
reads the stored resource within the caller's grants (404 outside them, like a read).
"""

from __future__ import annotations

from typing import Any

from profiles import validator
from profiles.snapshot import compiled
from profiles.stored import Unusable

from .. import model
from ..auth import enforce
from ..errors import Gone, Invalid, Issue, NotFound, operation_outcome
from ..interactions import read, stored_profiles
from ..interactions.context import Context
from ..store.sql import Tx
from .parameters import OperationInput

MODES = ("create", "update", "delete", "profile")
_NEEDS = {"create": "c", "update": "u", "delete": "d", "profile": "c"}


def validate(
    ctx: Context,
    tx: Tx,
    params: OperationInput,
    res_type: str,
    res_id: str | None = None,
    body_resource: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The OperationOutcome of validating the given (or stored) resource."""
    read.check_type(res_type)
    mode = params.text("mode")
    if mode is not None and mode not in MODES:
        raise Invalid(f"Unknown mode '{mode}': one of {', '.join(MODES)}", "mode")
    enforce.check_operation(ctx.principal, res_type, _NEEDS[mode or ("update" if res_id else "create")])
    profile = params.text("profile")
    resource = body_resource if body_resource is not None else params.complex("resource")
    stored = None
    if res_id is not None and (resource is None or mode in ("update", "delete")):
        try:
            stored = read.read(tx, res_type, res_id, principal=ctx.principal).resource()
        except (NotFound, Gone):
            if resource is None or mode == "delete":
                raise
    if mode == "delete":
        if res_id is None:
            raise Invalid("mode=delete needs a resource id: [type]/[id]/$validate", "mode")
        return operation_outcome(
            [Issue("The resource may be deleted", "informational", severity="information")]
        )
    if resource is None:
        resource = stored
    if resource is None:
        raise Invalid("Give the resource to validate (a 'resource' parameter or the body)", "resource")
    issues = _issues(resource, res_type, res_id, mode, profile, ctx, tx)
    if not [i for i in issues if i.severity in ("error", "fatal")]:
        issues.insert(0, Issue("No errors found", "informational", severity="information"))
    return operation_outcome(issues)


def _issues(
    resource: Any,
    res_type: str,
    res_id: str | None,
    mode: str | None,
    profile: str | None,
    ctx: Context,
    tx: Tx,
) -> list[Issue]:
    if not isinstance(resource, dict) or resource.get("resourceType") != res_type:
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        return [Issue(f"The resource is a {kind}, not a {res_type}", "invalid", ("resourceType",))]
    out: list[Issue] = []
    try:
        model.check_envelope(resource)
    except Invalid as exc:
        return list(exc.issues)
    if mode == "update" and res_id is not None and resource.get("id") != res_id:
        out.append(Issue(f"The resource id must be '{res_id}' to update it", "invalid", (f"{res_type}.id",)))
    if mode == "update" and "id" not in resource:
        out.append(Issue("An update needs the resource id", "required", (f"{res_type}.id",)))
    if profile is not None and compiled(profile) is None and not _stored_for_caller(ctx, tx, profile):
        raise Invalid(f"Unknown profile {profile}", "profile")
    out += validator.issues(
        resource,
        profiles=(profile,) if profile else (),
        declared=profile is None or mode != "profile",
        warnings=True,
        unknown_profiles=ctx.settings.unknown_profiles,
        stored=stored_profiles.resolver(ctx, tx),
    )
    return out


def _stored_for_caller(ctx: Context, tx: Tx, url: str) -> bool:
    """Whether `url` names a StructureDefinition stored here that the caller may search for (one
    that cannot serve as a profile counts: the validation says why)."""
    try:
        return stored_profiles.for_caller(ctx, tx)(url) is not None
    except Unusable:
        return True
