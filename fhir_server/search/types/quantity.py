"""Quantity search parameters (https://hl7.org/fhir/R4/search.html#quantity).

Index rows (param_id, grp, value, system, code, unit, canon_value, canon_code): Quantity and its
specialisations (Age, Duration, Count, Distance, SimpleQuantity, MoneyQuantity) as they are, plus the
value in UCUM canonical units (search/ucum.py) when the system is UCUM, or absent and the code or
unit parses as UCUM; Money -> system urn:iso:std:iso:4217, code = currency. Range and SampledData
are not indexed.

Search values are `[prefix]number|system|code`. The number follows the number rules (implicit precision, prefixes). `5.4` matches any unit,
`5.4||mg` matches the code or the human unit `mg`, `5.4|http://unitsofmeasure.org|mg` matches that
system and code, and also (by the SQL test) any value whose UCUM canonical form is comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from fhir_server.search import ucum
from fhir_server.search.types.base import Parsing, RowSink, SearchType, SqlContext
from fhir_server.search.types.number import NumberValue, number_test, number_value, parse_decimal
from fhir_server.search.values import fail, split, take_prefix, unescape

KIND = "quantity"
ISO_4217 = "urn:iso:std:iso:4217"
_QUANTITY_TYPES = frozenset(
    ("Quantity", "Age", "Duration", "Count", "Distance", "SimpleQuantity", "MoneyQuantity")
)
# Every element type with quantity rows (a branch selecting another, Range or SampledData, adds none).
INDEXED_TYPES = _QUANTITY_TYPES | {"Money"}


def _short(value: Any, limit: int) -> str | None:
    return value[:limit] if value.__class__ is str and value else None


def canonical_value(
    value: float, system: str | None, code: str | None, unit: str | None
) -> tuple[float, str] | None:
    """(canon_value, canon_code) of a quantity, or None when its unit is not convertible UCUM."""
    if system == ucum.UCUM_SYSTEM:
        return ucum.to_canonical(value, code or unit or "")
    if system is None:
        for candidate in (code, unit):
            if candidate and (converted := ucum.to_canonical(value, candidate)) is not None:
                return converted
    return None


def values(
    elements: list[Any],
    fhir_type: str,
    param_id: int,
    grp: int,
    sink: RowSink,
    aux_param_id: int | None = None,
) -> None:
    """Append one quantity row per Quantity (or Money) with a numeric value."""
    rows = sink[KIND]
    for element in elements:
        if element.__class__ is not dict:
            continue
        value = element.get("value")
        if value.__class__ not in (int, float):
            continue
        value = float(value)
        if fhir_type == "Money" or (fhir_type == "*" and "currency" in element):
            rows.append(
                (param_id, grp, value, ISO_4217, _short(element.get("currency"), 64), None, None, None)
            )
        elif fhir_type in _QUANTITY_TYPES or fhir_type == "*":
            system = _short(element.get("system"), 255)
            code = _short(element.get("code"), 64)
            unit = _short(element.get("unit"), 64)
            canon = canonical_value(value, system, code, unit)
            if canon is None:
                rows.append((param_id, grp, value, system, code, unit, None, None))
            else:
                rows.append((param_id, grp, value, system, code, unit, canon[0], canon[1]))


# ---------------------------------------------------------------- search values


@dataclass(frozen=True)
class QuantityValue:
    """A prefixed number with an optional system and unit code (None: not constrained)."""

    number: NumberValue
    system: str | None
    code: str | None


def parse_quantity(text: str, param: str) -> QuantityValue:
    """Parse `[prefix]number[|[system]|[code]]`."""
    parts = split(text, "|", param)
    if len(parts) not in (1, 3):
        fail(param, f"{text!r} is not a quantity (expected [prefix]number|system|code)")
    prefix, rest = take_prefix(unescape(parts[0], param), param)
    number = number_value(prefix, parse_decimal(rest, param))
    if len(parts) == 1:
        return QuantityValue(number, None, None)
    system = unescape(parts[1], param) or None
    code = unescape(parts[2], param) or None
    if system is not None and code is None:
        fail(param, f"{text!r} gives a unit system without a unit code")
    return QuantityValue(number, system, code)


# ---------------------------------------------------------------- SQL


def canonical_number(ctx: SqlContext, v: QuantityValue) -> tuple[NumberValue, str] | None:
    """The search number converted to UCUM canonical units (each bound converted)."""
    convert = ctx.canonical
    if convert is None or v.code is None:
        return None
    n = v.number
    out = [convert(v.code, float(x)) for x in (n.value, n.low, n.high, n.ap_low, n.ap_high)]
    if any(o is None for o in out):
        return None
    codes = {o[1] for o in out if o is not None}
    if len(codes) != 1:
        return None
    vals = [Decimal(repr(o[0])) for o in out if o is not None]
    return NumberValue(n.prefix, vals[0], vals[1], vals[2], vals[3], vals[4]), codes.pop()


def test(ctx: SqlContext, modifier: str | None, v: QuantityValue, t: Any) -> ColumnElement[bool]:
    """The number, and the unit when given (UCUM units also by their canonical form), against one row."""
    raw = number_test(v.number, t.c.value)
    if v.code is None:
        return raw
    if v.system is None:
        return and_(or_(t.c.code == v.code, t.c.unit == v.code), raw)
    exact = and_(t.c.system == v.system, t.c.code == v.code, raw)
    converted = canonical_number(ctx, v) if v.system == ucum.UCUM_SYSTEM else None
    if converted is None:
        return exact
    number, code = converted
    return or_(exact, and_(t.c.canon_code == code, number_test(number, t.c.canon_value)))


def _parser(p: Parsing) -> Callable[[str], QuantityValue]:
    return partial(parse_quantity, param=p.name)


QUANTITY = SearchType(
    "quantity",
    frozenset({"missing"}),
    _parser,
    test=test,
    sort_column=lambda t, descending: t.c.value,
    values=values,
)
