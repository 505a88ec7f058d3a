"""Date search parameter index values (https://hl7.org/fhir/R4/search.html#date).

Rows (param_id, grp, low, high): inclusive bounds in integer microseconds since 1970-01-01T00:00:00Z.
A value stands for the whole range its precision implies: "2024" is the year, "2024-03" the month,
"2024-03-05" the day, a dateTime to the minute that minute, to the second that second, and with a
fraction that microsecond. Values without a time zone are taken as UTC. Period ->
[start.low or MIN, end.high or MAX]; Timing -> one row per event; instant as dateTime.
"""

from __future__ import annotations

import functools
import re
from datetime import date
from typing import Any

from fhir_server.search.types import RowSink

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
