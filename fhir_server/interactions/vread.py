"""vread: GET [base]/[type]/[id]/_history/[vid] (https://hl7.org/fhir/R4/http.html#vread)."""

from __future__ import annotations

from .. import input_limits
from ..audit import access as audit
from ..auth import enforce
from ..auth.principal import Principal
from ..errors import Gone, NotFound
from ..store.sql import Stored, Tx
from .read import check_type


def vread(
    tx: Tx, res_type: str, res_id: str, version_id: str, *, principal: Principal | None = None
) -> Stored:
    """A specific version; 404 if unknown, 410 if that version is a deletion."""
    check_type(res_type)
    if not version_id.isdigit():
        raise NotFound(f"{res_type}/{res_id} has no version '{version_id}'")
    stored = tx.version(res_type, res_id, input_limits.integer(version_id, "vid"))
    if stored is None:
        raise NotFound(f"{res_type}/{res_id} has no version {version_id}")
    enforce.check_version(tx, principal, stored)
    if stored.deleted:
        raise Gone(f"Version {version_id} of {res_type}/{res_id} is a deletion")
    audit.note_contents((stored.content,))
    return stored
