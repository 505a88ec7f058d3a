"""Which stored resources meet a condition built by search/ (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html).

auth/enforce.py turns the caller's grants into conditions on `tables.resource` (search/match.py);
these run them on the current rows, in the caller's transaction, as one query each.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

from sqlalchemy import ColumnElement, and_, case, or_, select, update

from . import fast, tables
from .sql import Stored, Tx

K = TypeVar("K", bound=Hashable)
_COLUMNS_PER_QUERY = 500  # PostgreSQL allows 1664 columns in a select list

_R = tables.resource


def holds(tx: Tx, res_type: str, res_id: str, condition: ColumnElement[bool]) -> bool:
    """The current `res_type/res_id` meets `condition`; one written in this transaction as written."""
    tx.flush(check_references=False)
    found = tx.conn.execute(
        select(_R.c.pk).where(_R.c.res_type == res_type, _R.c.res_id == res_id, condition)
    ).first()
    return found is not None


def pks_meeting(tx: Tx, pks: Iterable[int], condition: ColumnElement[bool]) -> set[int]:
    """Of the rows `pks`, those meeting `condition`."""
    keys = list(set(pks))
    if not keys:
        return set()
    rows = tx.conn.execute(select(_R.c.pk).where(_R.c.pk.in_(keys), condition))
    return {int(pk) for (pk,) in rows}


def live_versions(tx: Tx, pks: Iterable[int]) -> dict[int, int]:
    """The current version of each row `pks` that is not deleted."""
    keys = sorted(set(pks))
    out: dict[int, int] = {}
    for start in range(0, len(keys), 500):
        rows = tx.conn.execute(
            select(_R.c.pk, _R.c.version).where(
                _R.c.pk.in_(keys[start : start + 500]), _R.c.deleted.is_(False)
            )
        )
        out.update({int(pk): int(version) for pk, version in rows})
    return out


def met_by_version(
    tx: Tx, version: Stored, index: fast.IndexRows, tests: Mapping[K, ColumnElement[bool]]
) -> set[K]:
    """Of the `tests`, those the resource `version.pk` meets when `version` (a version that is not the
    current one: older, or since deleted) is its current row with `index` as its index rows
    (search/index.index_tuples of its content). Under a SAVEPOINT of `tx`, the resource row and its
    index rows are put back to that version, exactly as the write path stores them (`fast.Batch`
    reindex: stale rows out, the version's rows in), each condition runs as in `pks_meeting`, and
    everything is rolled back to the savepoint. Every other resource is seen as it is now. The tests
    run as the columns of one query (`CASE WHEN condition`), not one query each.
    On PostgreSQL the row is locked until the rollback (a concurrent writer of that resource waits,
    or this waits for it; one resource at a time, so no lock cycle through resource rows)."""
    if not tests:
        return set()
    tx.flush(check_references=False)
    assert tx.sql is not None
    met: set[K] = set()
    savepoint = tx.conn.begin_nested()
    try:
        tx.conn.execute(
            update(_R)
            .where(_R.c.pk == version.pk)
            .values(
                version=version.version,
                last_updated=version.last_updated,
                deleted=False,
                content=version.content,
            )
        )
        tx.sql.write(tx.conn, fast.Batch(reindex=[(version.pk, index)]))
        items = list(tests.items())
        for start in range(0, len(items), _COLUMNS_PER_QUERY):  # every test in one query
            chunk = items[start : start + _COLUMNS_PER_QUERY]
            row = tx.conn.execute(
                select(*(case((condition, 1), else_=0) for _, condition in chunk)).where(
                    _R.c.pk == version.pk
                )
            ).one()
            met.update(key for (key, _), hit in zip(chunk, row, strict=True) if hit)
    finally:
        savepoint.rollback()
    return met


def types_of(tx: Tx, pks: list[int]) -> dict[int, str]:
    """The resource type of each row `pks`."""
    return dict(tx.conn.execute(select(_R.c.pk, _R.c.res_type).where(_R.c.pk.in_(pks))).tuples().all())


def keys_meeting(tx: Tx, tests: list[tuple[str, list[str], ColumnElement[bool]]]) -> set[tuple[str, str]]:
    """Of the (type, ids, condition) tests, the (type, id) of the rows meeting them, in ONE query."""
    if not tests:
        return set()
    where = or_(*(and_(_R.c.res_type == t, _R.c.res_id.in_(ids), c) for t, ids, c in tests))
    rows = tx.conn.execute(select(_R.c.res_type, _R.c.res_id).where(where)).tuples()
    return {(str(t), str(i)) for t, i in rows}


def latest_change(tx: Tx, res_type: str) -> tuple[int, int]:
    """(newest last_updated, number of rows) of `res_type`, deleted ones included: changes whenever
    one of them is created, updated or deleted (one probe of `ix_resource_type_updated`)."""
    from sqlalchemy import func

    row = tx.conn.execute(
        select(func.max(_R.c.last_updated), func.count()).where(_R.c.res_type == res_type)
    ).one()
    return int(row[0] or 0), int(row[1] or 0)
