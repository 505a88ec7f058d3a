"""Date index values (https://hl7.org/fhir/R4/search.html#date) and the FHIR date parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.search.types import RowSink, date
from fhir_server.search.types.date import MAX, MIN, date_range

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = 1_000_000


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def index(elements: list[Any], fhir_type: str) -> list[tuple[Any, ...]]:
    sink: RowSink = {"date": []}
    date.values(elements, fhir_type, 9, 0, sink)
    return sink["date"]


def test_year_is_the_whole_year() -> None:
    assert date_range("2024") == (
        micros(datetime(2024, 1, 1, tzinfo=UTC)),
        micros(datetime(2025, 1, 1, tzinfo=UTC)) - 1,
    )


def test_month_is_the_whole_month_including_december() -> None:
    assert date_range("2024-02") == (
        micros(datetime(2024, 2, 1, tzinfo=UTC)),
        micros(datetime(2024, 3, 1, tzinfo=UTC)) - 1,
    )
    assert date_range("2023-12")[1] == micros(datetime(2024, 1, 1, tzinfo=UTC)) - 1  # type: ignore[index]


def test_day_is_the_whole_day() -> None:
    low = micros(datetime(2024, 3, 5, tzinfo=UTC))
    assert date_range("2024-03-05") == (low, low + 86_400 * US - 1)


def test_datetime_to_the_second_is_that_second_with_its_offset() -> None:
    low = micros(datetime(2024, 3, 5, 10, 30, 15, tzinfo=timezone(timedelta(hours=-5))))
    assert date_range("2024-03-05T10:30:15-05:00") == (low, low + US - 1)


def test_fraction_is_that_microsecond() -> None:
    low = micros(datetime(2024, 3, 5, 10, 30, 15, 123000, tzinfo=UTC))
    assert date_range("2024-03-05T10:30:15.123Z") == (low, low)


def test_datetime_without_zone_is_utc() -> None:
    assert date_range("2024-03-05T10:30:15") == date_range("2024-03-05T10:30:15Z")


@pytest.mark.parametrize(
    "text", ["2024-02-30", "2024-13", "24", "2024-03-05T25:00:00Z", "2024-03-05T10:30:61Z", "soon", ""]
)
def test_invalid_dates_give_none(text: str) -> None:
    assert date_range(text) is None


def test_period_without_start_or_end_is_open() -> None:
    assert index([{"end": "2020"}], "Period") == [(9, 0, MIN, date_range("2020")[1])]  # type: ignore[index]
    assert index([{"start": "2020"}], "Period") == [(9, 0, date_range("2020")[0], MAX)]  # type: ignore[index]
    assert index([{}], "Period") == []


def test_timing_gives_one_row_per_event() -> None:
    rows = index([{"event": ["2020-01-01", "2020-01-02"], "repeat": {"frequency": 1}}], "Timing")
    assert [r[2] for r in rows] == [date_range("2020-01-01")[0], date_range("2020-01-02")[0]]  # type: ignore[index]


def test_age_and_range_and_unparseable_strings_are_not_dates() -> None:
    assert index([{"value": 3, "code": "a"}], "Age") == []
    assert index(["about a week ago"], "string") == []


zones = st.one_of(
    st.just(UTC),
    st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones))
def test_parsed_datetime_matches_python_datetime(moment: datetime) -> None:
    offset = moment.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    zone = (
        "Z"
        if moment.tzinfo is UTC
        else f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    )
    stamp = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    text = stamp + f".{moment.microsecond:06d}" + zone
    expected = micros(moment.astimezone(UTC))
    assert date_range(text) == (expected, expected)
    second = moment.replace(microsecond=0)
    low = micros(second.astimezone(UTC))
    assert date_range(stamp + zone) == (low, low + US - 1)


@given(st.dates(min_value=datetime(1, 1, 1).date(), max_value=datetime(9998, 12, 31).date()))
def test_parsed_date_is_the_utc_day(day: Any) -> None:
    low = micros(datetime(day.year, day.month, day.day, tzinfo=UTC))
    assert date_range(day.isoformat()) == (low, low + 86_400 * US - 1)
    year = date_range(day.isoformat()[:4])
    assert year is not None and year[0] <= low and low + 86_400 * US - 1 <= year[1]
