"""Date search values as inclusive microsecond ranges (https://hl7.org/fhir/R4/search.html#date).

Format `yyyy-mm-ddThh:mm:ss[.fff][Z|(+|-)hh:mm]`, filled from the left; minutes must follow an hour.
The range covers the precision given: `2013` is the whole year, `2013-01-14T10:00` that minute.
Values without a time zone are taken as UTC, like the index (docs/index-rows.md). `ap` widens the
range by 10% of the gap between now and the value, either side.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from fhir_server.search.values import Prefix, fail, take_prefix

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+\- ]\d{2}:\d{2})?)?)?)?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds


def date_range(text: str, param: str) -> tuple[int, int]:
    """The inclusive µs range a date, dateTime or instant stands for."""
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
    low, high = date_range(rest, param)
    gap = abs(now_us - (low + high) // 2) // 10
    return DateValue(prefix, low, high, low - gap, high + gap)
