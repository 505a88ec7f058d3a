"""Date search parameters (https://hl7.org/fhir/R4/search.html#date).

Index rows (param_id, grp, low, high): inclusive bounds in integer microseconds since 1970-01-01T00:00:00Z.
A value stands for the whole range its precision implies: "2024" is the year, "2024-03" the month,
"2024-03-05" the day, a dateTime to the minute that minute, to the second that second, and with a
fraction that microsecond. Values without a time zone are taken as UTC. Period ->
[start.low or MIN, end.high or MAX]; Timing -> one row per event; instant as dateTime.

Search values are inclusive microsecond ranges too. Format `yyyy-mm-ddThh:mm:ss[.fff][Z|(+|-)hh:mm]`, filled from the left; minutes must follow an hour.
The range covers the precision given: `2013` is the whole year, `2013-01-14T10:00` that minute.
Values without a time zone are taken as UTC, like the index (docs/index-rows.md). `ap` widens the
range by 10% of the gap between now and the value, either side.
"""

from __future__ import annotations

import calendar
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from fhir_server.search.types.base import Parsing, RowSink, SearchType, SqlContext
from fhir_server.search.values import Prefix, fail, take_prefix

KIND = "date"
MIN = -(2**62)
MAX = 2**62
US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
_EPOCH = date(1970, 1, 1).toordinal()
_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_DATE_TYPES = frozenset(("date", "dateTime", "instant", "string", "*"))


def _days(year: int, month: int, day: int) -> int:
    return date(year, month, day).toordinal() - _EPOCH


@functools.lru_cache(maxsize=65536)
def date_range(text: str) -> tuple[int, int] | None:
    """(low, high) inclusive microseconds of a FHIR date, dateTime or instant; None if invalid."""
    m = _DATE.fullmatch(text)
    if m is None:
        return None
    year_s, month_s, day_s, hour_s, minute_s, second_s, fraction, zone = m.groups()
    year = int(year_s)
    try:
        if month_s is None:
            low = _days(year, 1, 1) * US_PER_DAY
            return low, _days(year + 1, 1, 1) * US_PER_DAY - 1 if year < 9999 else MAX
        month = int(month_s)
        if day_s is None:
            low = _days(year, month, 1) * US_PER_DAY
            nxt = _days(year + month // 12, month % 12 + 1, 1) if (year, month) != (9999, 12) else None
            return low, nxt * US_PER_DAY - 1 if nxt is not None else MAX
        day_us = _days(year, month, int(day_s)) * US_PER_DAY
    except ValueError:
        return None
    if hour_s is None:
        return day_us, day_us + US_PER_DAY - 1
    hour, minute = int(hour_s), int(minute_s)
    if hour > 23 or minute > 59:
        return None
    low = day_us + (hour * 3600 + minute * 60) * US_PER_SECOND
    if second_s is None:
        span = 60 * US_PER_SECOND
    else:
        second = int(second_s)
        if second > 59:
            return None
        low += second * US_PER_SECOND
        span = US_PER_SECOND
        if fraction is not None:
            low += int(fraction[:6].ljust(6, "0"))
            span = 1
    if zone is not None and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        zone_hours, zone_minutes = int(zone[1:3]), int(zone[4:6])
        if zone_hours > 14 or zone_minutes > 59:
            return None
        low -= sign * (zone_hours * 3600 + zone_minutes * 60) * US_PER_SECOND
    return low, low + span - 1


def _period(element: dict[str, Any]) -> tuple[int, int] | None:
    start, end = element.get("start"), element.get("end")
    low_range = date_range(start) if start.__class__ is str else None
    high_range = date_range(end) if end.__class__ is str else None
    if low_range is None and high_range is None:
        return None
    return (low_range[0] if low_range else MIN), (high_range[1] if high_range else MAX)


def values(
    elements: list[Any],
    fhir_type: str,
    param_id: int,
    grp: int,
    sink: RowSink,
    aux_param_id: int | None = None,
) -> None:
    """Append one date row per date/dateTime/instant, Period or Timing event."""
    rows = sink[KIND]
    for element in elements:
        if element.__class__ is str:
            if fhir_type in _DATE_TYPES:
                bounds = date_range(element)
                if bounds is not None:
                    rows.append((param_id, grp, *bounds))
        elif element.__class__ is dict:
            if fhir_type == "Period" or (fhir_type == "*" and ("start" in element or "end" in element)):
                bounds = _period(element)
                if bounds is not None:
                    rows.append((param_id, grp, *bounds))
            elif fhir_type == "Timing" or (fhir_type == "*" and "event" in element):
                events = element.get("event")
                for event in events if events.__class__ is list else ():
                    if event.__class__ is str and (bounds := date_range(event)) is not None:
                        rows.append((param_id, grp, *bounds))


# ---------------------------------------------------------------- search values

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+\- ]\d{2}:\d{2})?)?)?)?$"
)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
SECOND = 1_000_000
MINUTE = 60 * SECOND
DAY = 86_400 * SECOND


@dataclass(frozen=True)
class DateValue:
    """A prefixed date: inclusive range [low, high] and `ap` range [ap_low, ap_high], in µs since 1970 UTC."""

    prefix: Prefix
    low: int
    high: int
    ap_low: int
    ap_high: int


def _micros(dt: datetime) -> int:
    delta = dt - _EPOCH_UTC
    return (delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds


def search_range(text: str, param: str) -> tuple[int, int]:
    """The inclusive µs range a searched date, dateTime or instant stands for (a 400 when invalid)."""
    match = _DATE_RE.match(text)
    if not match:
        fail(param, f"{text!r} is not a date (expected yyyy[-mm[-dd[Thh:mm[:ss[.fff]][Z|+hh:mm]]]])")
    g = match.groupdict()
    year = int(g["y"])
    month = int(g["m"] or 1)
    day = int(g["d"] or 1)
    hour = int(g["H"] or 0)
    minute = int(g["M"] or 0)
    second = int(g["S"] or 0)
    fraction = g["f"] or ""
    micro = int((fraction + "000000")[:6])
    tz = g["tz"]
    zone = UTC
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1  # a '+' decoded from a query string arrives as a space
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        if offset >= timedelta(hours=24) or int(tz[4:6]) >= 60:
            fail(param, f"{text!r} has an invalid time zone")
        zone = timezone(sign * offset)
    try:
        start = datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    except ValueError:
        fail(param, f"{text!r} is not a valid date")
    if year < 1:
        fail(param, f"{text!r} is not a valid date")
    low = _micros(start)
    if g["m"] is None:
        span = (366 if calendar.isleap(year) else 365) * DAY
    elif g["d"] is None:
        span = calendar.monthrange(year, month)[1] * DAY
    elif g["H"] is None:
        span = DAY
    elif g["S"] is None:
        span = MINUTE
    elif not fraction:
        span = SECOND
    else:
        span = 10 ** max(0, 6 - len(fraction))
    return low, low + span - 1


def parse_date(text: str, param: str, now_us: int) -> DateValue:
    """Parse `[prefix]date`; `now_us` anchors the `ap` approximation."""
    prefix, rest = take_prefix(text, param)
    low, high = search_range(rest, param)
    gap = abs(now_us - (low + high) // 2) // 10
    return DateValue(prefix, low, high, low - gap, high + gap)


# ---------------------------------------------------------------- SQL


def date_test(v: DateValue, low: Any, high: Any) -> ColumnElement[bool]:
    """Prefix semantics on ranges (https://hl7.org/fhir/R4/search.html#prefix); all bounds inclusive."""
    inside = and_(low >= v.low, high <= v.high)
    match v.prefix:
        case "eq":
            return inside
        case "ne":
            return or_(low < v.low, high > v.high)
        case "gt":
            return high > v.high
        case "lt":
            return low < v.low
        case "ge":
            return or_(high > v.high, inside)
        case "le":
            return or_(low < v.low, inside)
        case "sa":
            return low > v.high
        case "eb":
            return high < v.low
        case _:  # ap: the ranges overlap once the search range is widened
            return and_(low <= v.ap_high, high >= v.ap_low)


def test(ctx: SqlContext, modifier: str | None, v: DateValue, t: Any) -> ColumnElement[bool]:
    """The prefixed date range against one idx_date row's [low, high]."""
    return date_test(v, t.c.low, t.c.high)


def parser(p: Parsing) -> Callable[[str], DateValue]:
    """`[prefix]date` values (also of `_lastUpdated`)."""
    return partial(parse_date, param=p.name, now_us=p.now_us)


DATE = SearchType(
    "date",
    frozenset({"missing"}),
    parser,
    test=test,
    sort_column=lambda t, descending: t.c.high if descending else t.c.low,
    values=values,
)
