"""Calendar buckets of a time zone for the `$stats` series form (hour, day, ISO week, month; IANA zones via zoneinfo,
https://www.iana.org/time-zones).

The database sees only UTC microseconds: the zone becomes its list of offset changes over the span
of the data (search/observation_stats.Zone), and a bucket key from the database is turned back into
the bucket's start and end here, as local times with their UTC offsets.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import Invalid
from ..search.observation_stats import DAY, EPOCH_TO_MONDAY, HOUR, SECOND, SHIFT, WEEK, Zone

INTERVALS = ("hour", "day", "week", "month")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def zone_named(name: str | None) -> ZoneInfo:
    """The IANA zone (UTC when not given); 400 when unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(f"Unknown time zone {name!r} (an IANA name such as Europe/Berlin)", "timezone") from exc


def _us(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds


def in_zone(us: int, tz: timezone | ZoneInfo) -> datetime:
    """The instant `us` (µs since the epoch) as a datetime in `tz`."""
    return (_EPOCH + timedelta(microseconds=us)).astimezone(tz)


def _offset(tz: ZoneInfo, us: int) -> int:
    off = in_zone(us, tz).utcoffset()
    return int(off.total_seconds()) * SECOND if off is not None else 0


def offsets(tz: ZoneInfo, low: int, high: int) -> Zone:
    """The zone's UTC offsets from `low` to `high` (µs): changes found day by day, then exactly."""
    changes: list[int] = []
    values = [_offset(tz, low - DAY)]
    t = low - DAY
    while t <= high + DAY:
        nxt = t + DAY
        if _offset(tz, nxt) != values[-1]:
            lo, hi = t, nxt  # offset(lo) == values[-1] != offset(hi)
            while hi - lo > 1:  # to the microsecond: the change itself (a granule boundary)
                mid = (lo + hi) // 2
                if _offset(tz, mid) == values[-1]:
                    lo = mid
                else:
                    hi = mid
            changes.append(hi)
            values.append(_offset(tz, hi))
        t = nxt
    return Zone(tuple(changes), tuple(values))


def month_starts(tz: ZoneInfo, low: int, high: int) -> list[int]:
    """The starts (µs) of the local months from the one holding `low` to the one after `high`."""
    first = in_zone(low, tz)
    year, month = first.year, first.month
    out: list[int] = []
    while True:
        start = _us(datetime(year, month, 1, tzinfo=tz))
        out.append(start)
        if start > high:
            return out
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def bounds(interval: str, key: int, offset: int, tz: ZoneInfo, months: list[int]) -> tuple[str, str]:
    """The bucket's start and end (the next bucket's start) as FHIR dateTimes with offsets."""
    if interval == "hour":
        start_us = key * HOUR - SHIFT - offset
        start = in_zone(start_us, timezone(timedelta(microseconds=offset)))
        end = in_zone(start_us + HOUR, tz)
    elif interval in ("day", "week"):
        width = DAY if interval == "day" else WEEK
        shift = SHIFT + (EPOCH_TO_MONDAY if interval == "week" else 0)
        first = (_EPOCH + timedelta(microseconds=key * width - shift)).date()
        start = _local_midnight(first, tz)
        end = _local_midnight(first + timedelta(microseconds=width), tz)
    else:
        start, end = in_zone(months[key - 1], tz), in_zone(months[key], tz)
    return fhir_datetime(start), fhir_datetime(end)


class HourBounds:
    """`bounds` of hourly buckets by arithmetic on the zone's offsets (`offsets`: they cover the data's
    span and a day either side): the same text as `bounds("hour", ...)`, a tenth of the time, for the
    8,760 buckets of a year."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.suffixes: dict[int, str] = {}
        self.days: dict[int, str] = {}
        self.texts: dict[tuple[int, int], str] = {}

    def _text(self, local_us: int, offset: int) -> str:
        known = self.texts.get((local_us, offset))  # a bucket's end is mostly the next one's start
        if known is not None:
            return known
        text = self.texts[(local_us, offset)] = self._format(local_us, offset)
        return text

    def _format(self, local_us: int, offset: int) -> str:
        suffix = self.suffixes.get(offset)
        if suffix is None:
            shown = datetime(2000, 1, 1, tzinfo=timezone(timedelta(microseconds=offset)))
            suffix = self.suffixes[offset] = fhir_datetime(shown)[19:]
        days, rest = divmod(local_us, DAY)
        if rest % SECOND:
            return (_NAIVE_EPOCH + timedelta(microseconds=local_us)).isoformat() + suffix
        day = self.days.get(days)
        if day is None:
            day = self.days[days] = (_NAIVE_EPOCH + timedelta(days=days)).date().isoformat()
        seconds = rest // SECOND
        return f"{day}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{suffix}"

    def __call__(self, key: int, offset: int) -> tuple[str, str]:
        start_us = key * HOUR - SHIFT - offset
        end_us = start_us + HOUR
        end_offset = self.zone.offsets[bisect_right(self.zone.changes, end_us)]
        return self._text(start_us + offset, offset), self._text(end_us + end_offset, end_offset)


_NAIVE_EPOCH = datetime(1970, 1, 1)


def fhir_datetime(dt: datetime) -> str:
    """A FHIR dateTime with its offset (Z for UTC)."""
    text = dt.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
