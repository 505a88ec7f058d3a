"""Removing resources for good once a retention period is over (the AuditEvent sweeper, docs/audit.md).

Unlike a FHIR delete, which keeps every version for history, this takes out the resource row, all
its versions and its index rows: what a retention policy asks for (https://hl7.org/fhir/R4/auditevent.html#6.4.4.2).
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from . import tables as t


def purge_older_than(conn: Connection, res_type: str, before_us: int, limit: int) -> int:
    """Remove up to `limit` resources of `res_type` last updated before `before_us`; how many went."""
    r = t.resource.c
    pks = [
        int(pk)
        for pk in conn.execute(
            select(r.pk)
            .where(r.res_type == res_type, r.last_updated < before_us)
            .order_by(r.last_updated)
            .limit(limit)
        ).scalars()
    ]
    if not pks:
        return 0
    for table in t.INDEX_TABLES.values():
        conn.execute(delete(table).where(table.c.resource_pk.in_(pks)))
    conn.execute(delete(t.resource_version).where(t.resource_version.c.resource_pk.in_(pks)))
    conn.execute(delete(t.resource).where(r.pk.in_(pks)))
    return len(pks)
