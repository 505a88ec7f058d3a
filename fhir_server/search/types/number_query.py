"""Number search values with implicit precision ranges (https://hl7.org/fhir/R4/search.html#number).

`100` means [99.5, 100.5): the range is half a unit of the last significant digit either side, so
`100.00` is [99.995, 100.005) and `1e2` (one significant figure) is [50, 150). With gt/lt/ge/le/sa/eb
the value is taken as exact; `ap` widens the range to 10% of the value either side.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from fhir_server.search.values import Prefix, fail, take_prefix

_NUMBER_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_HALF = Decimal("0.5")
_TENTH = Decimal("0.1")


@dataclass(frozen=True)
class NumberValue:
    """A prefixed decimal with its implicit range [low, high) and its `ap` range [ap_low, ap_high]."""

    prefix: Prefix
    value: Decimal
    low: Decimal
    high: Decimal
    ap_low: Decimal
    ap_high: Decimal


def parse_decimal(text: str, param: str) -> Decimal:
    """A FHIR decimal (exponent form allowed) that fits a double; anything else is a 400."""
    if len(text) > 64 or not _NUMBER_RE.match(text):
        fail(param, f"{text!r} is not a number")
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex already rules these out
        fail(param, f"{text!r} is not a number")
    if not math.isfinite(float(value)) or (value != 0 and float(value) == 0.0):
        fail(param, f"{text!r} is out of range")
    return value


def number_range(value: Decimal) -> tuple[Decimal, Decimal]:
    """The implicit range [low, high) given by the precision of `value` as written."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    half = _HALF.scaleb(exponent)
    return value - half, value + half


def parse_number(text: str, param: str) -> NumberValue:
    """Parse `[prefix]number`."""
    prefix, rest = take_prefix(text, param)
    return number_value(prefix, parse_decimal(rest, param))


def number_value(prefix: Prefix, value: Decimal) -> NumberValue:
    """Build the value with its ranges."""
    low, high = number_range(value)
    spread = abs(value) * _TENTH
    return NumberValue(prefix, value, low, high, min(low, value - spread), max(high, value + spread))
