"""Number search parameters (https://hl7.org/fhir/R4/search.html#number).

Index rows (param_id, grp, value): decimal, integer, positiveInt, unsignedInt -> value as float. Other
types a number parameter may reach (RiskAssessment probability as Range) are not indexed.

Search values have implicit precision ranges: `100` means [99.5, 100.5): the range is half a unit of the last significant digit either side, so
`100.00` is [99.995, 100.005) and `1e2` (one significant figure) is [50, 150). With gt/lt/ge/le/sa/eb
the value is taken as exact; `ap` widens the range to 10% of the value either side.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from fhir_server.search.types.base import Parsing, RowSink, SearchType, SqlContext
from fhir_server.search.values import Prefix, fail, take_prefix

KIND = "number"
_NUMBER_TYPES = frozenset(("decimal", "integer", "positiveInt", "unsignedInt", "integer64", "*"))


def values(
    elements: list[Any],
    fhir_type: str,
    param_id: int,
    grp: int,
    sink: RowSink,
    aux_param_id: int | None = None,
) -> None:
    """Append one number row per numeric element."""
    if fhir_type not in _NUMBER_TYPES:
        return
    rows = sink[KIND]
    for element in elements:
        if element.__class__ in (int, float):
            rows.append((param_id, grp, float(element)))


# ---------------------------------------------------------------- search values

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


# ---------------------------------------------------------------- SQL


def number_test(v: NumberValue, col: Any) -> ColumnElement[bool]:
    """Prefix semantics on a point value (https://hl7.org/fhir/R4/search.html#number)."""
    value, low, high = float(v.value), float(v.low), float(v.high)
    match v.prefix:
        case "eq":
            return and_(col >= low, col < high)
        case "ne":
            return or_(col < low, col >= high)
        case "gt" | "sa":
            return col > value
        case "lt" | "eb":
            return col < value
        case "ge":
            return col >= value
        case "le":
            return col <= value
        case _:  # ap
            return and_(col >= float(v.ap_low), col <= float(v.ap_high))


def test(ctx: SqlContext, modifier: str | None, v: NumberValue, t: Any) -> ColumnElement[bool]:
    """The prefixed number against one idx_number row."""
    return number_test(v, t.c.value)


def _parser(p: Parsing) -> Callable[[str], NumberValue]:
    return partial(parse_number, param=p.name)


NUMBER = SearchType(
    "number",
    frozenset({"missing"}),
    _parser,
    test=test,
    sort_column=lambda t, descending: t.c.value,
    values=values,
)
