"""The statements behind Observation/$lastn and Observation/$stats (https://hl7.org/fhir/R4/observation-operations.html).

`$lastn`: the most recent `max` Observations per subject and code, one window function
(`row_number() OVER (PARTITION BY subject, system, code ORDER BY date DESC, pk DESC)`) over the
matching Observations, on SQLite and PostgreSQL alike.

`$stats`: the quantity values of the chosen codes as rows (Observation.value of an Observation with
the code; each component of such an Observation, a panel, under the component's code; a component
with the code), read from the value table idx_observation_value (search/observation_values.py; one
index range scan per subject and code), then aggregates per (code, unit[, bucket]) in ONE statement: count, sum, average,
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
    BigInteger,
    ColumnElement,
    Float,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)

from fhir_server.search import observation_values, parameters
from fhir_server.store import observation_rollup, tables

_R = tables.resource
SECOND = 1_000_000
HOUR = 3600 * SECOND
DAY = 24 * HOUR
WEEK = 7 * DAY
# Added before integer division so it never sees a negative number (both databases truncate):
# a whole number of weeks, ~19,000 years.
SHIFT = 1_000_000 * WEEK
EPOCH_TO_MONDAY = 3 * DAY  # 1970-01-01 was a Thursday; ISO weeks start on Monday
SLOT = observation_rollup.SLOT  # 15 minutes: the slots of observation_value_rollup
assert observation_rollup.SHIFT == SHIFT


def _pid(code: str) -> int:
    return parameters.param_id("Observation", code)


def _code_test(t: Any, codes: Sequence[tuple[str | None, str]]) -> ColumnElement[bool]:
    return or_(*[and_(t.c.code == c, t.c.system == s) if s else t.c.code == c for s, c in codes])


# ---------------------------------------------------------------- $lastn


def lastn(matching: Sequence[ColumnElement[bool]], most: int, one_subject: bool = False) -> Select[Any]:
    """(pk, content) of the `most` latest Observations meeting `matching` per subject and code,
    ordered by code, then newest first; an Observation with several codings appears once per coding.
    `one_subject`: `matching` admits a single subject, so the subject need not be looked up per row."""
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
                partition_by=(code.c.system, code.c.code)
                if one_subject
                else (who, code.c.system, code.c.code),
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


_V = tables.idx_observation_value


@dataclass(frozen=True)
class Values:
    """Which value rows (idx_observation_value, search/observation_values.py) the statistics read:
    those of `subject` found by one of `codes`, whose time lies in [low, high] (µs, inclusive; None:
    open), of Observations within `restrict` (a condition on `resource`; None: no restriction)."""

    subject: tuple[str, str]
    base: str
    codes: Sequence[tuple[str | None, str]]
    low: int | None = None
    high: int | None = None
    restrict: ColumnElement[bool] | None = None
    within: ColumnElement[bool] | None = None  # a further condition on the value rows

    def subjects(self) -> list[str]:
        """The subject as the index holds it: relative, or absolute under the server base."""
        relative = f"{self.subject[0]}/{self.subject[1]}"
        base = self.base.rstrip("/")
        return [relative, f"{base}/{relative}"] if base else [relative]

    def conditions(self, subject: str | None = None) -> list[ColumnElement[bool]]:
        """On `_V`: the rows of the subject (or of one of its forms) found by the codes, in the period."""
        out = [
            _V.c.subject == subject if subject is not None else _V.c.subject.in_(self.subjects()),
            _code_test(_V, self.codes),
        ]
        if self.low is not None:
            out.append(_V.c.effective >= self.low)
        if self.high is not None:
            out.append(_V.c.effective <= self.high)
        if self.restrict is not None:
            out.append(
                _V.c.resource_pk.in_(select(_R.c.pk).where(_R.c.res_type == "Observation", self.restrict))
            )
        if self.within is not None:
            out.append(self.within)
        return out


def value_rows(values: Values) -> Any:
    """A subquery, one row per quantity value of the codes: pk, grp, system, code, value, unit,
    canon_value, canon_code, at (the start of Observation.effective, µs; NULL when it has none).

    Observation.value under the Observation's code; a component's value under the component's code,
    once, whether it was found by the Observation's code (a panel) or by its own."""
    columns = (
        _V.c.resource_pk.label("pk"),
        _V.c.grp,
        _V.c.value_system.label("system"),
        _V.c.value_code.label("code"),
        _V.c.value,
        _V.c.unit,
        _V.c.canon_value,
        _V.c.canon_code,
        _V.c.effective.label("at"),
    )
    found = values.conditions()
    own = select(*columns).where(*found, _V.c.grp == observation_values.OWN)
    parts = select(*columns).where(*found, _V.c.grp > observation_values.OWN).distinct()
    return union_all(own, parts).subquery()


def span(values: Values) -> Select[Any]:
    """(earliest, latest) time of the values. Without a restriction, each (subject form, code,
    value or components) is two probes at the ends of the index, not a scan of the values."""
    if values.restrict is not None:
        rows = value_rows(values)
        return select(func.min(rows.c.at), func.max(rows.c.at))
    ends = []
    for subject in values.subjects():
        for code in values.codes:
            for which in (_V.c.grp == observation_values.OWN, _V.c.grp > observation_values.OWN):
                conds = [
                    *Values(values.subject, values.base, [code], values.low, values.high).conditions(subject)
                ]
                ends.append(
                    select(
                        func.min(_V.c.effective).label("low"), func.max(_V.c.effective).label("high")
                    ).where(*conds, which)
                )
    both = union_all(*ends).subquery()
    return select(func.min(both.c.low), func.max(both.c.high))


@dataclass(frozen=True)
class Zone:
    """The UTC offsets of a time zone over a span: `offsets[i]` (µs) holds before `changes[i]`;
    the last offset after the last change."""

    changes: tuple[int, ...]
    offsets: tuple[int, ...]

    def granule(self) -> int:
        """The widest of an hour, half an hour, a quarter, a minute, a second (µs) that divides every
        offset and change instant: then no bucket boundary nor offset change falls inside a granule
        (bucket boundaries are local hour starts or midnights), so values can be summed per granule first."""
        for width in (HOUR, HOUR // 2, HOUR // 4, 60 * SECOND, SECOND):
            if all(v % width == 0 for v in (*self.changes, *self.offsets)):
                return width
        return 1

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


def _measures(rows: Any) -> list[Any]:
    """Count, sum, minimum and maximum of the values as given and in canonical units (they merge exactly)."""
    return [
        func.count(rows.c.value).label("count"),
        func.sum(rows.c.value).label("sum"),
        func.min(rows.c.value).label("minimum"),
        func.max(rows.c.value).label("maximum"),
        func.count(rows.c.canon_value).label("canon_count"),
        func.sum(rows.c.canon_value).label("canon_sum"),
        func.min(rows.c.canon_value).label("canon_minimum"),
        func.max(rows.c.canon_value).label("canon_maximum"),
    ]


def totals(rows: Any, bucket: Callable[[Any], tuple[Any, Any]] | None, granule: int = 1) -> Select[Any]:
    """Plain GROUP BY (no window) per (system, code, unit, canon_code[, bucket, offset]): count, sum,
    minimum, maximum of the values as given and in canonical units; a code with several units is then
    merged over its units in canonical units by the caller (sums, minima and maxima merge exactly).

    With a bucket, the values are first summed per `granule` (µs; Zone.granule: no bucket boundary
    or offset change inside one), a GROUP BY on one integer, and only those partial sums are
    bucketed, so the zone's CASE runs once per granule instead of once per value."""
    keys = [rows.c.system, rows.c.code, rows.c.unit, rows.c.canon_code]
    cols = _measures(rows)
    if bucket is None:
        return select(*keys, *cols).group_by(*keys)
    # SHIFT (a whole number of weeks) keeps the division on positive numbers, as in bucket_key
    slot = ((rows.c.at + SHIFT) // granule).label("slot")
    part = select(*keys, slot, *cols).where(rows.c.at.is_not(None)).group_by(*keys, slot).subquery()
    return _bucketed(part, bucket, granule)


def _bucketed(part: Any, bucket: Callable[[Any], tuple[Any, Any]], width: int) -> Select[Any]:
    """The partial sums of `part` (per system, code, unit, canon_code and `slot` of `width` µs) merged per bucket."""
    key, offset = bucket(part.c.slot * width - SHIFT)
    outer = [
        part.c.system,
        part.c.code,
        part.c.unit,
        part.c.canon_code,
        key.label("bucket"),
        offset.label("offset"),
    ]
    merged = [
        cast(func.sum(part.c.count), BigInteger).label("count"),  # not numeric (PostgreSQL's sum of bigint)
        func.sum(part.c.sum).label("sum"),
        func.min(part.c.minimum).label("minimum"),
        func.max(part.c.maximum).label("maximum"),
        cast(func.sum(part.c.canon_count), BigInteger).label("canon_count"),
        func.sum(part.c.canon_sum).label("canon_sum"),
        func.min(part.c.canon_minimum).label("canon_minimum"),
        func.max(part.c.canon_maximum).label("canon_maximum"),
    ]
    return select(*outer, *merged).group_by(*outer)


def rolled_up(values: Values) -> bool:
    """Whether the series of `values` can be summed from observation_value_rollup: one code with its
    system (several codes may find one value twice, a panel and its component: value_rows drops the
    second, the slots cannot) and no restriction of the caller's grants (a condition per Observation)."""
    return values.restrict is None and len(values.codes) == 1 and values.codes[0][0] is not None


def rollup_totals(values: Values, bucket: Callable[[Any], tuple[Any, Any]]) -> Select[Any]:
    """`totals` of the series form from the 15-minute slots of observation_value_rollup
    (store/observation_rollup.py; the zone's granule must be a multiple of SLOT): the slots wholly
    inside [low, high], plus the values of the part-covered slots at either end, summed per slot."""
    R = observation_rollup.observation_value_rollup
    system, code = values.codes[0]
    first = None if values.low is None else -((-(values.low + SHIFT)) // SLOT)  # first whole slot
    last = None if values.high is None else (values.high + 1 + SHIFT) // SLOT - 1  # last whole slot
    found = [R.c.subject.in_(values.subjects()), R.c.code == code, R.c.system == system, R.c.count > 0]
    if first is not None:
        found.append(R.c.slot >= first)
    if last is not None:
        found.append(R.c.slot <= last)
    rolled = select(
        func.nullif(R.c.value_system, "").label("system"),
        R.c.value_code.label("code"),
        func.nullif(R.c.unit, "").label("unit"),
        func.nullif(R.c.canon_code, "").label("canon_code"),
        R.c.slot,
        *[R.c[m] for m in observation_rollup.MEASURES],
    ).where(*found)
    edges = []
    if first is not None:
        edges.append(_V.c.effective < first * SLOT - SHIFT)
    if last is not None:
        edges.append(_V.c.effective >= (last + 1) * SLOT - SHIFT)
    if not edges:
        part = rolled.subquery()
        return _bucketed(part, bucket, SLOT)
    edge = Values(values.subject, values.base, values.codes, values.low, values.high, within=or_(*edges))
    rows = value_rows(edge)
    keys = [rows.c.system, rows.c.code, rows.c.unit, rows.c.canon_code]
    slot = ((rows.c.at + SHIFT) // SLOT).label("slot")
    raw = select(*keys, slot, *_measures(rows)).where(rows.c.at.is_not(None)).group_by(*keys, slot)
    return _bucketed(union_all(rolled, raw).subquery(), bucket, SLOT)


def sources(rows: Any, limit: int | None) -> Select[Any]:
    """(pk, content) of the Observations the values come from."""
    stmt = select(_R.c.pk, _R.c.content).where(_R.c.pk.in_(select(rows.c.pk))).order_by(_R.c.pk)
    return stmt if limit is None else stmt.limit(limit)
