"""Observation/$stats, and its series form (https://hl7.org/fhir/R4/observation-operation-stats.html; the series
inputs `interval` and `timezone` are ours: OperationDefinition Observation-stats-series, operations/definitions.py).

Inputs: `subject` (required, `Patient/123`), the codes (`code` with `system`, or `coding`; GET also
takes `coding=system|code`), `duration` (hours before now) or `period` (a Period; GET also takes
`start`/`end`), `statistic` (1..*: average, maximum, minimum, count, sum, median, std-dev, variance,
20-percent, 80-percent, 4-lower, 4-upper), `include` and `limit` (source Observations).
Series form: `interval` = hour | day | week | month, and `timezone` (IANA, default UTC): the same
statistics per calendar bucket of that zone (operations/calendar_buckets.py).

The answer is a Parameters: one `statistics` Observation per code and unit (and bucket), status
final, with the subject, the code, `effectivePeriod` (the input period, or the bucket: start
inclusive, end = the next bucket's start) and one component per statistic (code from
http://terminology.hl7.org/CodeSystem/observation-statistics). A blood pressure panel gives one
Observation per component code (systolic, diastolic). Observations entered-in-error are left out. All
aggregates are computed by the database (search/observation_stats.py); std-dev is the square root
of the database's variance. Access: read and search on Observation, the caller's grants AND-ed in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from ..auth import enforce
from ..errors import Invalid
from ..interactions.context import Context
from ..interactions.search import parse
from ..references import local_target
from ..search import observation_stats as sql
from ..search.types.date import search_range
from ..store.sql import Tx
from . import calendar_buckets
from .parameters import OperationInput, parameters

STATISTICS_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-statistics"
UCUM = "http://unitsofmeasure.org"
SUPPORTED = ("average", "maximum", "minimum", "count", "sum", "median", "std-dev", "variance", *sql.FRACTIONS)
SUPPORTED = tuple(dict.fromkeys(SUPPORTED))
MAX_BUCKETS = 100_000
# work_mem of the aggregates: a year of hourly groups hashes in memory (with PostgreSQL's default of
# 4 MB the series was a sort spilled to disk, twice as slow; bench/README.md)
SERIES_MEMORY_MB = 32


def _codes(params: OperationInput) -> list[tuple[str | None, str]]:
    system = params.text("system")
    out: list[tuple[str | None, str]] = []
    for value in params.values.get("code", ()):
        if not isinstance(value, str):
            raise Invalid("Parameter 'code' takes codes", expression="code")
        out += [(system, c.strip()) for c in value.split(",") if c.strip()]
    for value in params.values.get("coding", ()):
        if isinstance(value, str):
            sys_, bar, text = value.rpartition("|")
            value = {"system": sys_, "code": text} if bar else {"code": value}
        code = value.get("code") if isinstance(value, dict) else None
        if not isinstance(code, str) or not code:
            raise Invalid("Parameter 'coding' needs a code", expression="coding")
        found = value.get("system")
        out.append((found if isinstance(found, str) and found else None, code))
    if not out:
        raise Invalid("$stats needs a 'code' (with 'system') or a 'coding'", expression="code")
    return list(dict.fromkeys(out))


def _statistics(params: OperationInput) -> list[str]:
    out: list[str] = []
    for value in params.values.get("statistic", ()):
        if not isinstance(value, str):
            raise Invalid("Parameter 'statistic' takes codes", expression="statistic")
        for code in (c.strip() for c in value.split(",")):
            if code not in SUPPORTED:
                raise Invalid(
                    f"Statistic '{code}' is not supported (supported: {', '.join(SUPPORTED)})", "statistic"
                )
            out.append(code)
    if not out:
        raise Invalid("$stats needs at least one 'statistic'", expression="statistic")
    return list(dict.fromkeys(out))


def _period(params: OperationInput) -> tuple[int | None, int | None]:
    duration = params.text("duration")
    period = params.one("period")
    start, end = params.text("start"), params.text("end")
    if isinstance(period, dict):
        start, end = period.get("start"), period.get("end")
        if not all(v is None or isinstance(v, str) for v in (start, end)):
            raise Invalid("Parameter 'period' must be a Period", expression="period")
    elif period is not None:
        raise Invalid(
            "Parameter 'period' must be a Period (GET: give 'start' and 'end')", expression="period"
        )
    if duration is not None:
        if period is not None or start is not None or end is not None:
            raise Invalid("Give 'duration' or 'period', not both", expression="duration")
        try:
            hours = Decimal(duration)
        except InvalidOperation as exc:
            raise Invalid("Parameter 'duration' must be a number of hours", expression="duration") from exc
        if not hours.is_finite() or hours <= 0 or hours > 1_000_000:
            raise Invalid("Parameter 'duration' must be a positive number of hours", expression="duration")
        now = int(time.time() * 1_000_000)
        return now - int(hours * 3600 * 1_000_000), now
    low = search_range(start, "period.start")[0] if start else None
    high = search_range(end, "period.end")[1] if end else None
    if low is not None and high is not None and low > high:
        raise Invalid("The period starts after it ends", expression="period")
    return low, high


def _subject(params: OperationInput, base: str) -> tuple[str, str]:
    text = params.text("subject")
    if text is None:
        raise Invalid("$stats needs a 'subject' (e.g. Patient/123)", expression="subject")
    target = local_target(text, base)
    if target is None:
        raise Invalid("Parameter 'subject' must reference a resource on this server", expression="subject")
    return target


def stats(ctx: Context, tx: Tx, params: OperationInput) -> dict[str, Any]:
    """The Parameters answer of $stats (and its series form)."""
    enforce.check_operation(ctx.principal, "Observation", "rs")
    base = ctx.settings.base
    subject = _subject(params, base)
    codes = _codes(params)
    wanted = _statistics(params)
    low, high = _period(params)
    interval = params.text("interval")
    if interval is not None and interval not in calendar_buckets.INTERVALS:
        raise Invalid(f"Parameter 'interval' is one of {', '.join(calendar_buckets.INTERVALS)}", "interval")
    tz = calendar_buckets.zone_named(params.text("timezone"))
    include = bool(params.boolean("include"))
    limit = params.integer("limit", 1)
    limit = min(limit, ctx.settings.max_count) if limit is not None else ctx.settings.max_count

    q = parse(ctx, "Observation", [], lenient=False)
    restrict = enforce.search_restriction(ctx.principal, q, base)
    values = sql.Values(subject, base, codes, low, high, restrict)
    rows = sql.value_rows(values)
    spread = bool({"variance", "std-dev"} & set(wanted))
    ranks = bool(set(sql.FRACTIONS) & set(wanted))
    build = _Builder(subject, wanted).build
    answer: list[Any] = []
    if interval is None:
        period = {
            k: calendar_buckets.fhir_datetime(calendar_buckets.in_zone(v, tz))
            for k, v in (("start", low), ("end", high))
            if v is not None
        }
        for row in _aggregates(tx, rows, None, spread, ranks):
            answer.append(build(row, period))
    else:
        first, last = tuple(tx.run_search(sql.span(values)).one())
        if first is not None:
            first, last = int(first), int(last)
            if interval == "hour" and (last - first) // sql.HOUR > MAX_BUCKETS:
                raise Invalid(f"More than {MAX_BUCKETS} hourly buckets: narrow the period", "interval")
            zone = calendar_buckets.offsets(tz, first, last)
            months = calendar_buckets.month_starts(tz, first, last) if interval == "month" else []

            def bucket(at: Any) -> tuple[Any, Any]:
                return sql.bucket_key(interval, at, zone, months)

            granule = zone.granule()
            rollup = granule % sql.SLOT == 0 and sql.rolled_up(values)
            plain = sql.rollup_totals(values, bucket) if rollup else None
            hours = calendar_buckets.HourBounds(zone)
            for row in _aggregates(tx, rows, bucket, spread, ranks, granule, plain):
                if interval == "hour":
                    start, end = hours(int(row["bucket"]), int(row["offset"]))
                else:
                    start, end = calendar_buckets.bounds(
                        interval, int(row["bucket"]), int(row["offset"]), tz, months
                    )
                answer.append(build(row, {"start": start, "end": end}))
    if include:
        for src in tx.run_search(sql.sources(rows, limit)):
            answer.append({"name": "source", "resource": orjson.Fragment(src.content)})
    return parameters(answer)


def _aggregates(
    tx: Tx,
    rows: Any,
    bucket: Callable[[Any], tuple[Any, Any]] | None,
    spread: bool,
    ranks: bool,
    granule: int = 1,
    plain: Any = None,
) -> list[dict[str, Any]]:
    """The database's aggregates per code, unit (and bucket). Without a variance or a percentile asked
    for, one plain GROUP BY (sql.totals, or `plain`: sql.rollup_totals) whose groups of a code with
    several units are merged here in canonical units; otherwise the windowed statement (sql.aggregate)."""
    if spread or ranks:
        stmt = sql.aggregate(rows, bucket, spread, ranks)
        return [dict(r._mapping) for r in tx.run_search(stmt, memory_mb=SERIES_MEMORY_MB)]
    if plain is None:
        plain = sql.totals(rows, bucket, granule)
    result = tx.run_search(plain, memory_mb=SERIES_MEMORY_MB)
    at = {name: i for i, name in enumerate(result.keys())}
    found = result.all()  # plain tuples: a year of hours is 8,760 rows
    sys_, code, unit, n, total, low, high = (
        at[k] for k in ("system", "code", "unit", "count", "sum", "minimum", "maximum")
    )
    b, o = at.get("bucket"), at.get("offset")
    units: dict[tuple[Any, Any], set[Any]] = {}
    for r in found:
        units.setdefault((r[sys_], r[code]), set()).add(r[unit])
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in found:
        key = (r[sys_], r[code], r[unit], None if b is None else r[b], None if o is None else r[o])
        if len(units[key[:2]]) == 1:
            merged[key] = {
                "system": key[0],
                "code": key[1],
                "unit": key[2],
                "bucket": key[3],
                "offset": key[4],
                "count": r[n],
                "sum": r[total],
                "minimum": r[low],
                "maximum": r[high],
                "average": r[total] / r[n],
            }
            continue
        if not r[at["canon_count"]]:
            continue  # not convertible: left out, as the windowed statement does
        key = (key[0], key[1], r[at["canon_code"]], key[3], key[4])
        into = merged.setdefault(
            key,
            {"system": key[0], "code": key[1], "unit": key[2], "bucket": key[3], "offset": key[4]}
            | {"count": 0, "sum": 0.0, "minimum": None, "maximum": None},
        )
        into["count"] += r[at["canon_count"]]
        into["sum"] += r[at["canon_sum"]]
        lowest, highest = r[at["canon_minimum"]], r[at["canon_maximum"]]
        into["minimum"] = lowest if into["minimum"] is None else min(into["minimum"], lowest)
        into["maximum"] = highest if into["maximum"] is None else max(into["maximum"], highest)
        into["average"] = into["sum"] / into["count"]
    # (system, code, unit) are a few distinct texts: ranked once, so the sort compares integers
    rank = {p: i for i, p in enumerate(sorted({k[:3] for k in merged}, key=lambda p: tuple(map(_order, p))))}
    return [merged[k] for k in sorted(merged, key=lambda k: (rank[k[:3]], _order(k[3]), _order(k[4])))]


def _order(v: Any) -> tuple[Any, ...]:
    """The order of the aggregate rows: as the texts `str(v).zfill(24)` sort ('' for None), without
    making them for the integers (a bucket key, an offset: 8,760 of each in a year of hours)."""
    if v is None:
        return (0, "")
    if isinstance(v, int):
        return (1, 0, -v) if v < 0 else (1, 1, v)  # zfill puts '-' first, then the digits
    return (2, str(v).zfill(24))


def _number(value: Any) -> float:
    return float(value)


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


class _Builder:
    """The statistics Observations as JSON bytes (orjson.Fragment entries of the Parameters), built from
    byte templates made once per (code, unit): a year of hourly buckets is 8,760 Observations, and
    nested dicts of each (about 30 containers) cost more in building and in garbage collection than
    the database's aggregate (bench/README.md "Clinical operations")."""

    def __init__(self, subject: tuple[str, str], wanted: list[str]) -> None:
        self.wanted = wanted
        self.simple = set(wanted) <= {"count", "average", "maximum", "minimum", "sum"}
        self.subject = _json({"reference": f"{subject[0]}/{subject[1]}"})
        self.shapes: dict[tuple[Any, Any, Any], tuple[bytes, list[tuple[str, bytes, bytes]]]] = {}

    def _shape(self, system: Any, code: Any, unit: Any) -> tuple[bytes, list[tuple[str, bytes, bytes]]]:
        coding: dict[str, Any] = {"system": system, "code": code} if system else {"code": code}
        head = (
            b'{"name":"statistics","resource":{"resourceType":"Observation","status":"final","code":'
            + _json({"coding": [coding]})
            + b',"subject":'
            + self.subject
        )
        parts = []
        for stat in self.wanted:
            code_json = b'{"code":' + _json({"coding": [{"system": STATISTICS_SYSTEM, "code": stat}]})
            if stat == "count":
                parts.append((stat, code_json + b',"valueInteger":', b"}"))
                continue
            tail = b"}}"
            if unit:
                shown = unit if stat != "variance" else f"({unit})2"
                tail = b"," + _json({"unit": shown, "system": UCUM, "code": shown})[1:] + b"}"
            parts.append((stat, code_json + b',"valueQuantity":{"value":', tail))
        return head, parts

    def build(self, row: Any, period: dict[str, str]) -> orjson.Fragment:
        """One `statistics` parameter: the Observation of one aggregate row (as _observation was)."""
        key = (row["system"], row["code"], row["unit"])
        shape = self.shapes.get(key)
        if shape is None:
            shape = self.shapes[key] = self._shape(*key)
        head, parts = shape
        out = [head, b',"effectivePeriod":', _json(period)] if period else [head]
        if self.simple:  # every statistic is a column of the row, never absent
            comps = [
                before + (_json(int(row["count"])) if stat == "count" else _json(float(row[stat]))) + after
                for stat, before, after in parts
            ]
        else:
            values = _values(row, self.wanted)
            comps = [
                before + _json(values[stat]) + after
                for stat, before, after in parts
                if values[stat] is not None
            ]
        out += [b',"component":[', b",".join(comps), b"]}}"]
        return orjson.Fragment(b"".join(out))


def _values(got: Any, wanted: list[str]) -> dict[str, float | int | None]:
    n = int(got["count"])
    squares = got.get("squares")
    variance = float(squares) / (n - 1) if n > 1 and squares is not None else None
    return {
        "count": n,
        "average": _number(got["average"]),
        "maximum": _number(got["maximum"]),
        "minimum": _number(got["minimum"]),
        "sum": _number(got["sum"]),
        "variance": variance,
        "std-dev": math.sqrt(max(variance, 0.0)) if variance is not None else None,
        **{name: _number(got[sql.percentile_label(name)]) for name in sql.FRACTIONS if name in wanted},
    }
