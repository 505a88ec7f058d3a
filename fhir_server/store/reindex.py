"""Rebuild the search index from the stored resources, e.g. after the SearchParameter definitions change.

https://hl7.org/fhir/R4/search.html: the index holds rows for current versions only; this recomputes
them batch by batch in key order, each batch in its own transaction, so it can run on a live server.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from sqlalchemy import Engine, delete, insert, select

from ..search.index import index_rows
from . import tables as t


def reindex(engine: Engine, *, batch: int = 1000, progress: Callable[[int], None] | None = None) -> int:
    """Recompute every current resource's index rows; returns how many resources were indexed."""
    r = t.resource.c
    last = 0
    done = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                select(r.pk, r.content).where(r.pk > last, r.deleted.is_(False)).order_by(r.pk).limit(batch)
            ).all()
            if not rows:
                return done
            pks = [row.pk for row in rows]
            buckets: dict[str, list[dict[str, object]]] = {}
            for row in rows:
                for kind, kind_rows in index_rows(orjson.loads(row.content)).items():
                    buckets.setdefault(kind, []).extend({"resource_pk": row.pk, **x} for x in kind_rows)
            for table in t.INDEX_TABLES.values():
                conn.execute(delete(table).where(table.c.resource_pk.in_(pks)))
            for kind, kind_rows in buckets.items():
                conn.execute(insert(t.INDEX_TABLES[kind]), kind_rows)
            last = pks[-1]
            done += len(rows)
            if progress is not None:
                progress(done)
