"""Which stored resources meet a condition built by search/ (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html).

auth/enforce.py turns the caller's grants into conditions on `tables.resource` (search/match.py);
these run them on the current rows, in the caller's transaction, as one query each.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, and_, or_, select

from . import tables
from .sql import Tx

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
