"""Shared rules of every write: body checks, validation and the result handed back to HTTP.

https://hl7.org/fhir/R4/http.html#create and #update: the server sets id and meta, checks the
resource type against the URL, and validates before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from profiles.validator import StoredProfiles

from .. import validation
from ..errors import Invalid, Issue
from ..settings import Settings
from ..store.sql import Stored, Tx
from . import stored_profiles
from .context import Context
from .read import check_type


@dataclass(frozen=True)
class WriteResult:
    """What a write did: the stored version, the HTTP status it earns, and whether it created."""

    stored: Stored
    status: int
    created: bool = False


def profiles_for(ctx: Context, tx: Tx, res_type: str) -> StoredProfiles:
    """The stored profiles a write of `res_type` in `tx` is validated with; writing a
    StructureDefinition makes the transaction look them up again."""
    if res_type == "StructureDefinition":
        stored_profiles.written(tx)
    return stored_profiles.resolver(ctx, tx)


def checked_body(
    body: Any,
    res_type: str,
    *,
    location: str = "",
    settings: Settings | None = None,
    stored: StoredProfiles | None = None,
) -> dict[str, Any]:
    """The body as a validated resource of `res_type` (`fhir_server/validation.py`); 400 with every
    problem otherwise. `stored` finds the profiles stored on the server (`profiles_for`)."""
    check_type(res_type)
    if not isinstance(body, dict):
        raise Invalid("The body must be a JSON object holding a FHIR resource", location or "$this")
    rtype = body.get("resourceType")
    if rtype is None:  # reported as missing, not as a type named 'None'
        where = f"{location or res_type}.resourceType"
        message = f"The resource has no resourceType (the URL says '{res_type}')"
        raise Invalid(message, where, issues=[Issue(message, "required", (where,))])
    if rtype != res_type:
        raise Invalid(
            f"The resource type '{rtype}' does not match the type in the URL '{res_type}'",
            f"{location or res_type}.resourceType",
        )
    validation.validate(
        body,
        location=location,
        unknown_profiles=settings.unknown_profiles if settings is not None else "ignore",
        r4b_models=settings.validate_with_r4b_models if settings is not None else False,
        stored=stored,
    )
    return body


def checked_id(body: dict[str, Any], res_id: str) -> None:
    """An update body must carry the id of its URL (https://hl7.org/fhir/R4/http.html#update)."""
    if "id" not in body:
        raise Invalid(f"The resource has no id; the URL says '{res_id}'", f"{body['resourceType']}.id")
    if body["id"] != res_id:
        raise Invalid(
            f"The resource id '{body['id']}' does not match the id in the URL '{res_id}'",
            f"{body['resourceType']}.id",
        )
