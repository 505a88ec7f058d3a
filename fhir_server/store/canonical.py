"""The current resource with a canonical url (and version), by its index rows (https://hl7.org/fhir/R4/references.html#canonical).

One indexed statement for a lookup on every write that claims a profile no package holds
(`interactions/stored_profiles.py`): the newest live resource of a type whose `url` uri index row
is the url and, when asked, whose `version` token index row is the version. It answers the
version's header (pk, id, versionId, lastUpdated), not its content, so a caller with the version
already compiled reads nothing more. Index rows exist for current versions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, exists, select

from . import tables as t
from .tables import idx_token, idx_uri

URI_MAX = 512  # what the uri index keeps of a value (search/types/uri.py)
TOKEN_MAX = 255  # what the token index keeps of a code (search/types/token.py)


@dataclass(frozen=True, slots=True)
class Header:
    """Which version a canonical url names now."""

    pk: int
    res_id: str
    version: int
    last_updated: int


def _statement(with_version: bool) -> Select[Any]:
    """Built once with bound parameters, so SQLAlchemy compiles it once (its statement cache)."""
    r, u, v = t.resource.c, idx_uri.c, idx_token.c
    stmt = (
        select(r.pk, r.res_id, r.version, r.last_updated)
        .join(
            idx_uri,
            and_(u.resource_pk == r.pk, u.param_id == bindparam("url_param"), u.uri == bindparam("url")),
        )
        .where(r.res_type == bindparam("res_type"), r.deleted.is_(False))
    )
    if with_version:
        stmt = stmt.where(
            exists().where(
                v.resource_pk == r.pk,
                v.param_id == bindparam("version_param"),
                v.code == bindparam("version"),
            )
        )
    return stmt.order_by(r.last_updated.desc()).limit(1)


_BY_URL = _statement(False)
_BY_URL_AND_VERSION = _statement(True)


def latest(
    conn: Connection,
    res_type: str,
    url_param: int,
    url: str,
    version_param: int | None = None,
    version: str | None = None,
) -> Header | None:
    """The most recently updated live `res_type` with this url (and version), or None."""
    values: dict[str, Any] = {"res_type": res_type, "url_param": url_param, "url": url[:URI_MAX]}
    stmt = _BY_URL
    if version is not None and version_param is not None:
        stmt = _BY_URL_AND_VERSION
        values.update(version_param=version_param, version=version[:TOKEN_MAX])
    row = conn.execute(stmt, values).first()
    return Header(int(row.pk), str(row.res_id), int(row.version), int(row.last_updated)) if row else None
