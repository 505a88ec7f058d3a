"""Quantity search values `[prefix]number|system|code` (https://hl7.org/fhir/R4/search.html#quantity).

The number follows the number rules (implicit precision, prefixes). `5.4` matches any unit,
`5.4||mg` matches the code or the human unit `mg`, `5.4|http://unitsofmeasure.org|mg` matches that
system and code, and also (by the planner) any value whose UCUM canonical form is comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.search.types.number_query import NumberValue, number_value, parse_decimal
from fhir_server.search.values import fail, split, take_prefix, unescape


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
