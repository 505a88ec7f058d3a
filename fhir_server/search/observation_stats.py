"""The statements behind Observation/$lastn and Observation/$stats (https://hl7.org/fhir/R4/observation-operations.html).

`$lastn`: the most recent `max` Observations per subject and code, one window function
(`row_number() OVER (PARTITION BY subject, system, code ORDER BY date DESC, pk DESC)`) over the
matching Observations, on SQLite and PostgreSQL alike.

`$stats`: the quantity values of the chosen codes as rows (Observation.value of an Observation with
the code; each component of such an Observation, a panel, under the component's code; a component
with the code), then aggregates per (code, unit[, bucket]) in ONE statement: count, sum, average,
minimum, maximum, the sample variance (two passes over a windowed mean) and percentiles (linear
interpolation between ranked values, as `percentile_cont`, from `row_number()` ranks). A code whose
values come in several units is computed in UCUM canonical units (`canon_value`); units of different
dimensions stay apart. A bucket is the value's local calendar hour, day, ISO week or month: the UTC
offset at the value's instant comes from a CASE over the zone's offset changes (computed in Python
with zoneinfo), so both databases bucket across DST the same way; an hour keeps its offset in its key,
so the repeated hour of a DST fall-back stays two buckets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)

from fhir_server.search import parameters
from fhir_server.search.types.base import SqlContext
from fhir_server.store import tables

_R = tables.resource
SECOND = 1_000_000
HOUR = 3600 * SECOND
DAY = 24 * HOUR
WEEK = 7 * DAY
# Added before integer division so it never sees a negative number (both databases truncate):
# a whole number of weeks, ~19,000 years.
SHIFT = 1_000_000 * WEEK
EPOCH_TO_MONDAY = 3 * DAY  # 1970-01-01 was a Thursday; ISO weeks start on Monday


# The composite search parameter whose token and quantity rows share `grp` per component, so a
# component's code and value are paired (search/types/composite.py).
PAIRS = "component-code-value-quantity"


def _pid(code: str) -> int:
    return parameters.param_id("Observation", code)


def _code_test(t: Any, codes: Sequence[tuple[str | None, str]]) -> ColumnElement[bool]:
    return or_(*[and_(t.c.code == c, t.c.system == s) if s else t.c.code == c for s, c in codes])


def subject_test(subject: tuple[str, str], ctx: SqlContext) -> ColumnElement[bool]:
    """On `resource`: Observation.subject is the (type, id) given."""
    ref = tables.idx_reference.alias()
    return _R.c.pk.in_(
        select(ref.c.resource_pk).where(
            ref.c.param_id == _pid("subject"),
            ref.c.target_type == subject[0],
            ref.c.target_id == subject[1],
            ctx.local(ref),
        )
    )


def not_in_error() -> ColumnElement[bool]:
    """On `resource`: the status is not entered-in-error (excluded from statistics)."""
    t = tables.idx_token.alias()
    return _R.c.pk.not_in(
        select(t.c.resource_pk).where(t.c.param_id == _pid("status"), t.c.code == "entered-in-error")
    )


def statistics_base(
    subject: tuple[str, str], base: str, restrict: ColumnElement[bool] | None
) -> list[ColumnElement[bool]]:
    """On `resource`: the live Observations of `subject` that count for statistics, within `restrict`."""
    out = [
        _R.c.res_type == "Observation",
        _R.c.deleted.is_(False),
        subject_test(subject, SqlContext(base.rstrip("/") or None, None, None)),
        not_in_error(),
    ]
    if restrict is not None:
        out.append(restrict)
    return out


# ---------------------------------------------------------------- $lastn


def lastn(matching: Sequence[ColumnElement[bool]], most: int) -> Select[Any]:
    """(pk, content) of the `most` latest Observations meeting `matching` per subject and code,
    ordered by code, then newest first; an Observation with several codings appears once per coding."""
    code = tables.idx_token.alias()
    subject = tables.idx_reference.alias()
    date = tables.idx_date.alias()
    when = (
        select(func.max(date.c.high))
        .where(date.c.resource_pk == _R.c.pk, date.c.param_id == _pid("date"))
        .scalar_subquery()
    )
    who = (
        select(func.min(subject.c.target_type + "/" + subject.c.target_id))
        .where(subject.c.resource_pk == _R.c.pk, subject.c.param_id == _pid("subject"))
        .scalar_subquery()
    )
    ranked = (
        select(
            _R.c.pk,
            code.c.system,
            code.c.code,
            when.label("at"),
            func.row_number()
            .over(
                partition_by=(who, code.c.system, code.c.code),
                order_by=(when.desc().nulls_last(), _R.c.pk.desc()),
            )
            .label("rn"),
        )
        .join(code, and_(code.c.resource_pk == _R.c.pk, code.c.param_id == _pid("code")))
        .where(*matching)
        .subquery()
    )
    return (
        select(_R.c.pk, _R.c.content, ranked.c.system, ranked.c.code, ranked.c.at)
        .join(ranked, ranked.c.pk == _R.c.pk)
        .where(ranked.c.rn <= most)
        .order_by(ranked.c.system, ranked.c.code, ranked.c.at.desc().nulls_last(), _R.c.pk.desc())
    )


# ---------------------------------------------------------------- $stats


def value_rows(matching: Sequence[ColumnElement[bool]], codes: Sequence[tuple[str | None, str]]) -> Any:
    """A subquery, one row per quantity value of the codes: pk, grp, system, code, value, unit,
    canon_value, canon_code, at (the start of Observation.effective, µs; NULL when it has none)."""
    matched = select(_R.c.pk).where(*matching)

    def quantity_columns(t: Any, q: Any) -> list[Any]:
        return [
            t.c.system.label("system"),
            t.c.code.label("code"),
            q.c.value.label("value"),
            func.coalesce(q.c.code, q.c.unit).label("unit"),
            q.c.canon_value.label("canon_value"),
            q.c.canon_code.label("canon_code"),
        ]

    # Observation.value of an Observation with the code
    t1, q1 = tables.idx_token.alias(), tables.idx_quantity.alias()
    own = (
        select(t1.c.resource_pk.label("pk"), literal(-1).label("grp"), *quantity_columns(t1, q1))
        .join(q1, and_(q1.c.resource_pk == t1.c.resource_pk, q1.c.param_id == _pid("value-quantity")))
        .where(t1.c.param_id == _pid("code"), _code_test(t1, codes), t1.c.resource_pk.in_(matched))
    )
    # every component of an Observation with the code (a panel), under the component's code
    t2, c2, q2 = tables.idx_token.alias(), tables.idx_token.alias(), tables.idx_quantity.alias()
    panel = (
        select(c2.c.resource_pk.label("pk"), c2.c.grp.label("grp"), *quantity_columns(c2, q2))
        .join(t2, and_(t2.c.resource_pk == c2.c.resource_pk, t2.c.param_id == _pid("code")))
        .join(
            q2,
            and_(
                q2.c.resource_pk == c2.c.resource_pk,
                q2.c.param_id == _pid(PAIRS),
                q2.c.grp == c2.c.grp,
            ),
        )
        .where(c2.c.param_id == _pid(PAIRS), _code_test(t2, codes), c2.c.resource_pk.in_(matched))
    )
    # a component with the code, in any Observation
    c3, q3, t3 = tables.idx_token.alias(), tables.idx_quantity.alias(), tables.idx_token.alias()
    part = (
        select(c3.c.resource_pk.label("pk"), c3.c.grp.label("grp"), *quantity_columns(c3, q3))
        .join(
            q3,
            and_(
                q3.c.resource_pk == c3.c.resource_pk,
                q3.c.param_id == _pid(PAIRS),
                q3.c.grp == c3.c.grp,
            ),
        )
        .where(c3.c.param_id == _pid(PAIRS), _code_test(c3, codes), c3.c.resource_pk.in_(matched))
        .where(
            ~exists().where(
                t3.c.resource_pk == c3.c.resource_pk, t3.c.param_id == _pid("code"), _code_test(t3, codes)
            )
        )
    )
    # the branches never give the same value twice (a panel's components are `panel`'s, not `part`'s)
    rows = union_all(own, panel, part).subquery()
    date = tables.idx_date.alias()  # Observation.effective[x] is one value: at most one row
    return (
        select(rows, date.c.low.label("at"))
        .outerjoin(date, and_(date.c.resource_pk == rows.c.pk, date.c.param_id == _pid("date")))
        .subquery()
    )


@dataclass(frozen=True)
class Zone:
    """The UTC offsets of a time zone over a span: `offsets[i]` (µs) holds before `changes[i]`;
    the last offset after the last change."""

    changes: tuple[int, ...]
    offsets: tuple[int, ...]

    def offset_sql(self, at: Any) -> Any:
        if not self.changes:
            return literal(self.offsets[0])
        whens = [
            (at < change, literal(offset)) for change, offset in zip(self.changes, self.offsets, strict=False)
        ]
        return case(*whens, else_=literal(self.offsets[-1]))


def bucket_key(interval: str, at: Any, zone: Zone, months: Sequence[int]) -> tuple[Any, Any]:
    """(key, offset) columns: the bucket of instant `at` (µs) in `zone`. hour/day/week: the local time
    divided by the width; month: the index in `months` (the month starts, µs, ascending). The
    offset is part of an hour's key (the repeated hour of a fall-back is two buckets), else 0."""
    offset = zone.offset_sql(at)
    local = at + offset + SHIFT
    if interval == "hour":
        return local // HOUR, offset
    if interval == "day":
        return local // DAY, literal(0)
    if interval == "week":
        return (local + EPOCH_TO_MONDAY) // WEEK, literal(0)
    whens = [(at < start, literal(n)) for n, start in enumerate(months)]
    return (case(*whens, else_=literal(len(months))) if whens else literal(0)), literal(0)


FRACTIONS = {  # percentile statistics as a / b
    "median": (1, 2),
    "20-percent": (1, 5),
    "80-percent": (4, 5),
    "4-lower": (1, 4),
    "4-upper": (3, 4),
}


def percentile_label(name: str) -> str:
    """The result column of a percentile statistic."""
    return "p_" + name.replace("-", "_")


def within(rows: Any, low: int | None, high: int | None) -> Any:
    """The value rows whose time lies in [low, high] (µs, inclusive; None: open)."""
    conds = []
    if low is not None:
        conds.append(rows.c.at >= low)
    if high is not None:
        conds.append(rows.c.at <= high)
    return select(rows).where(*conds).subquery()


def aggregate(
    rows: Any, bucket: Callable[[Any], tuple[Any, Any]] | None, spread: bool = True, ranks: bool = True
) -> Select[Any]:
    """Per (system, code, unit[, bucket key, offset]): count, sum, average, minimum, maximum, squares
    (the sum of squared deviations; when `spread`) and one column per percentile (when `ranks`): the
    windows behind those two are computed only when asked for. A code whose values come in more
    than one unit (window min and max of the unit differ) is computed in canonical units.
    `bucket(at)` gives the (key, offset) columns of the series form."""
    unit_of = func.coalesce(rows.c.unit, "")
    by_code = (rows.c.system, rows.c.code)
    mixed = func.min(unit_of).over(partition_by=by_code) != func.max(unit_of).over(partition_by=by_code)
    flagged = select(rows, mixed.label("mixed")).subquery()
    is_mixed = flagged.c.mixed
    v = case((is_mixed, flagged.c.canon_value), else_=flagged.c.value)
    unit = case((is_mixed, flagged.c.canon_code), else_=flagged.c.unit)
    usable = or_(~is_mixed, flagged.c.canon_value.is_not(None))
    keys = [flagged.c.system, flagged.c.code, unit.label("unit")]
    if bucket is not None:
        key, offset = bucket(flagged.c.at)
        keys += [key.label("bucket"), offset.label("offset")]
        usable = and_(usable, flagged.c.at.is_not(None))
    part = [k for k in keys]
    windows: list[Any] = []
    if spread:
        windows.append(func.avg(v).over(partition_by=part).label("mean"))
    if ranks:
        windows.append((func.row_number().over(partition_by=part, order_by=v) - 1).label("rn"))
        windows.append(func.count().over(partition_by=part).label("n"))
    inner = select(*keys, v.label("v"), *windows).where(usable).subquery()
    out = [inner.c.system, inner.c.code, inner.c.unit]
    group = [inner.c.system, inner.c.code, inner.c.unit]
    if bucket is not None:
        out += [inner.c.bucket, inner.c.offset]
        group += [inner.c.bucket, inner.c.offset]
    cols: list[Any] = [
        func.count(inner.c.v).label("count"),
        func.sum(inner.c.v).label("sum"),
        func.avg(inner.c.v).label("average"),
        func.min(inner.c.v).label("minimum"),
        func.max(inner.c.v).label("maximum"),
    ]
    if spread:
        cols.append(func.sum((inner.c.v - inner.c.mean) * (inner.c.v - inner.c.mean)).label("squares"))
    for name, (a, b) in FRACTIONS.items() if ranks else ():
        low_rank = ((inner.c.n - 1) * a) // b  # integer division on both databases
        fraction = cast((inner.c.n - 1) * a - low_rank * b, Float) / b
        at_low = func.max(case((inner.c.rn == low_rank, inner.c.v), else_=null()))
        at_next = func.max(case((inner.c.rn == low_rank + 1, inner.c.v), else_=null()))
        frac = func.max(fraction)
        cols.append((at_low + frac * (func.coalesce(at_next, at_low) - at_low)).label(percentile_label(name)))
    return select(*out, *cols).group_by(*group).order_by(*group)


def totals(rows: Any, bucket: Callable[[Any], tuple[Any, Any]] | None) -> Select[Any]:
    """Plain GROUP BY (no window) per (system, code, unit, canon_code[, bucket, offset]): count, sum,
    minimum, maximum of the values as given and in canonical units; a code with several units is then
    merged over its units in canonical units by the caller (sums, minima and maxima merge exactly)."""
    keys = [rows.c.system, rows.c.code, rows.c.unit, rows.c.canon_code]
    conds = []
    if bucket is not None:
        key, offset = bucket(rows.c.at)
        keys += [key.label("bucket"), offset.label("offset")]
        conds.append(rows.c.at.is_not(None))
    cols = [
        func.count(rows.c.value).label("count"),
        func.sum(rows.c.value).label("sum"),
        func.min(rows.c.value).label("minimum"),
        func.max(rows.c.value).label("maximum"),
        func.count(rows.c.canon_value).label("canon_count"),
        func.sum(rows.c.canon_value).label("canon_sum"),
        func.min(rows.c.canon_value).label("canon_minimum"),
        func.max(rows.c.canon_value).label("canon_maximum"),
    ]
    return select(*keys, *cols).where(*conds).group_by(*keys)


def span(rows: Any) -> Select[Any]:
    """(earliest, latest) time of the values."""
    return select(func.min(rows.c.at), func.max(rows.c.at))


def sources(rows: Any, limit: int | None) -> Select[Any]:
    """(pk, content) of the Observations the values come from."""
    stmt = select(_R.c.pk, _R.c.content).where(_R.c.pk.in_(select(rows.c.pk))).order_by(_R.c.pk)
    return stmt if limit is None else stmt.limit(limit)
