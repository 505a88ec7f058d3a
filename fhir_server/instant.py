"""FHIR `instant` values (https://hl7.org/fhir/R4/datatypes.html#instant) as integer microseconds (UTC)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def to_fhir(us: int) -> str:
    """Format microseconds as a FHIR instant, e.g. 2024-03-05T10:11:12.123456Z."""
    seconds, micro = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micro:06d}Z"


def to_http(us: int) -> str:
    """Format microseconds as an HTTP date (RFC 9110), for Last-Modified."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(us // 1_000_000))


def parse(value: str) -> int:
    """Parse an instant or dateTime with a time zone (or a date, taken as UTC midnight) into microseconds."""
    text = value.strip().replace("Z", "+00:00")
    if len(text) == 4:
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_http(value: str) -> int:
    """Parse an HTTP date (If-Modified-Since) into microseconds."""
    from email.utils import parsedate_to_datetime

    dt = parsedate_to_datetime(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
