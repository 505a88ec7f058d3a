"""read: GET [base]/[type]/[id] (https://hl7.org/fhir/R4/http.html#read)."""

from __future__ import annotations

from ..audit import access as audit
from ..auth import enforce
from ..auth.principal import Principal
from ..errors import Gone, NotFound
from ..model import is_resource_type
from ..store.sql import Stored, Tx


def check_type(res_type: str) -> None:
    """404 for a type we do not know (https://hl7.org/fhir/R4/http.html#general)."""
    if not is_resource_type(res_type):
        raise NotFound(f"Unknown resource type '{res_type}'")


def read(tx: Tx, res_type: str, res_id: str, *, principal: Principal | None = None) -> Stored:
    """The current version; 404 if it never existed, 410 if it is deleted.

    `principal`: the caller, whose SMART grants must cover the resource (auth/enforce.py).
    """
    check_type(res_type)
    stored = tx.current(res_type, res_id)
    if stored is None:
        raise NotFound(f"{res_type}/{res_id} is not known")
    enforce.check_read(tx, principal, stored)
    if stored.deleted:
        raise Gone(f"{res_type}/{res_id} was deleted", headers={"ETag": stored.etag})
    audit.note_contents((stored.content,))
    return stored
