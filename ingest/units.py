"""UCUM units for ingest: vendor aliases, validation and conversion (https://ucum.org/ucum, https://hl7.org/fhir/R4/datatypes.html#Quantity)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

UCUM_SYSTEM = "http://unitsofmeasure.org"


class UnitError(ValueError):
    """A unit that is not UCUM, not a known alias, or not convertible to the wanted unit."""


class ValueRangeError(UnitError):
    """A value too large (or too small) to be converted to the wanted unit."""


# Vendor / human spellings -> UCUM code. Looked up exactly first, then case-folded.
ALIASES: dict[str, str] = {
    "bpm": "/min",
    "beats/min": "/min",
    "beats/minute": "/min",
    "beats per minute": "/min",
    "breaths/min": "/min",
    "breaths/minute": "/min",
    "count/min": "/min",
    "1/min": "/min",
    "{beats}/min": "/min",
    "{breaths}/min": "/min",
    "percent": "%",
    "degc": "Cel",
    "°c": "Cel",
    "celsius": "Cel",
    "degf": "[degF]",
    "°f": "[degF]",
    "fahrenheit": "[degF]",
    "in": "[in_i]",
    "inch": "[in_i]",
    "inches": "[in_i]",
    "ft": "[ft_i]",
    "feet": "[ft_i]",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "pound": "[lb_av]",
    "pounds": "[lb_av]",
    "kilograms": "kg",
    "kg/m^2": "kg/m2",
    "kg/m²": "kg/m2",
    "mmhg": "mm[Hg]",
    "mm hg": "mm[Hg]",
    "mg/dl": "mg/dL",
    "mmol/l": "mmol/L",
    "steps": "{steps}",
    "step": "{steps}",
    "hours": "h",
    "hour": "h",
    "hr": "h",
    "minutes": "min",
    "minute": "min",
    "mins": "min",
    "sec": "s",
    "seconds": "s",
    "ms": "ms",
}

# Apple Health writes molar glucose with the molar mass annotated: "mmol<180.1558800000541>/L".
_MOLAR_MASS_ANNOTATION = re.compile(r"^(?P<pre>[a-zA-Z]*mol)<[0-9.]+>(?P<post>/.*)$")

# Human-readable Quantity.unit per UCUM code.
DISPLAY: dict[str, str] = {
    "/min": "/min",
    "%": "%",
    "Cel": "Cel",
    "[degF]": "degF",
    "cm": "cm",
    "[in_i]": "in",
    "kg": "kg",
    "g": "g",
    "[lb_av]": "lb",
    "kg/m2": "kg/m2",
    "mm[Hg]": "mmHg",
    "mg/dL": "mg/dL",
    "mmol/L": "mmol/L",
    "{steps}": "steps",
    "h": "h",
    "min": "min",
}

# Exact linear factors (from, to) -> factor, tried before the UCUM library.
_FACTORS: dict[tuple[str, str], Decimal] = {
    ("m", "cm"): Decimal(100),
    ("mm", "cm"): Decimal("0.1"),
    ("[in_i]", "cm"): Decimal("2.54"),
    ("[ft_i]", "cm"): Decimal("30.48"),
    ("g", "kg"): Decimal("0.001"),
    ("[lb_av]", "kg"): Decimal("0.45359237"),
    ("h", "min"): Decimal(60),
    ("s", "min"): Decimal(1) / Decimal(60),
    ("min", "h"): Decimal(1) / Decimal(60),
    ("1", "%"): Decimal(100),
    ("/s", "/min"): Decimal(60),
    ("/h", "/min"): Decimal(1) / Decimal(60),
}


def canonical_unit(text: str, aliases: Mapping[str, str] | None = None) -> str:
    """The UCUM code for a unit as a vendor or a person wrote it; raise :class:`UnitError` if unknown.

    ``aliases`` are tried first (measure-specific spellings such as Apple's ``count`` for BMI).
    """
    raw = text.strip()
    if aliases:
        hit = aliases.get(raw) or aliases.get(raw.casefold())
        if hit:
            return hit
    if raw in ALIASES:
        return ALIASES[raw]
    folded = raw.casefold()
    if folded in ALIASES:
        return ALIASES[folded]
    m = _MOLAR_MASS_ANNOTATION.match(raw)
    if m:
        raw = m.group("pre") + m.group("post")
    if is_ucum(raw):
        return raw
    raise UnitError(f"unknown unit {text!r}")


# The UCUM codes this module itself names (aliases, display names, conversion factors): valid, so
# they need no parse (a test parses each); a run with only these never loads the UCUM grammar.
_KNOWN_UCUM = frozenset({*ALIASES.values(), *DISPLAY, *(code for pair in _FACTORS for code in pair)})


@lru_cache(maxsize=4096)
def is_ucum(code: str) -> bool:
    """True when ``code`` is a syntactically valid UCUM expression made of known UCUM atoms."""
    if code in _KNOWN_UCUM:
        return True
    if not code or code != code.strip():
        return False
    try:
        _parser().parse(code)
    except Exception:
        return False
    return True


@lru_cache(maxsize=1)
def _parser() -> Any:
    from ucumvert import get_ucum_parser

    return get_ucum_parser()


@lru_cache(maxsize=1)
def _registry() -> Any:
    from ucumvert import PintUcumRegistry

    return PintUcumRegistry()


def parse_number(text: str | float | Decimal) -> Decimal:
    """A finite decimal from text or a number; raise ``ValueError`` otherwise (no NaN, no infinity)."""
    if isinstance(text, bool):
        raise ValueError(f"not a number: {text!r}")
    if isinstance(text, float):
        if not math.isfinite(text):
            raise ValueError(f"not a finite number: {text!r}")
        return Decimal(repr(text))
    if isinstance(text, int | Decimal):
        d = Decimal(text)
    else:
        s = text.strip()
        if not s or not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", s):
            raise ValueError(f"not a number: {text!r}")
        try:
            d = Decimal(s)
        except InvalidOperation as exc:  # pragma: no cover - the regex already guards this
            raise ValueError(f"not a number: {text!r}") from exc
    if not d.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    return d


def json_number(d: Decimal) -> int | float:
    """The JSON number for a decimal: an int when written as a plain integer, else a float (``72.0``, ``1e2``)."""
    if d.as_tuple().exponent == 0:
        return int(d)
    return float(d)


def format_number(n: int | float | Decimal) -> str:
    """Shortest text that reads back as the same JSON number (``72``, ``36.6``, ``72.0``)."""
    if isinstance(n, bool):
        raise ValueError("booleans are not numbers")
    if isinstance(n, int):
        return str(n)
    if isinstance(n, Decimal):
        return format_number(json_number(n))
    text = repr(n)
    if "e" in text or "E" in text:  # positional, with a fraction, so it reads back as a float
        text = format(Decimal(text), "f")
        text = text if "." in text else text + ".0"
    return text


def convert(value: Decimal, from_code: str, to_code: str) -> Decimal:
    """``value`` in UCUM ``from_code`` expressed in UCUM ``to_code``; raise :class:`UnitError` if impossible
    (:class:`ValueRangeError` when the value is too large or too small for the conversion)."""
    if from_code == to_code:
        return value
    try:
        return _convert(value, from_code, to_code)
    except ArithmeticError as exc:  # decimal's InvalidOperation, Overflow...: beyond its exponent/precision
        raise ValueRangeError(
            f"{value} {from_code!r} is out of range for a conversion to {to_code!r}"
        ) from exc


def _convert(value: Decimal, from_code: str, to_code: str) -> Decimal:
    factor = _FACTORS.get((from_code, to_code))
    if factor is not None:
        return _tidy(value * factor)
    if (from_code, to_code) == ("[degF]", "Cel"):
        return _tidy((value - 32) * Decimal(5) / Decimal(9))
    if (from_code, to_code) == ("Cel", "[degF]"):
        return _tidy(value * Decimal(9) / Decimal(5) + 32)
    try:
        reg = _registry()
        q = reg.Quantity(float(value), reg.from_ucum(from_code)).to(reg.from_ucum(to_code))
    except Exception as exc:
        raise UnitError(f"cannot convert {from_code!r} to {to_code!r}") from exc
    magnitude = float(q.magnitude)
    if not math.isfinite(magnitude):
        raise ValueRangeError(f"{value} {from_code!r} is out of range for a conversion to {to_code!r}")
    return _tidy(Decimal(repr(magnitude)))


def _tidy(d: Decimal) -> Decimal:
    """Round conversion noise to 10 significant digits and drop trailing zeros of the fraction.

    Raises ``decimal.InvalidOperation`` for a value beyond the context's precision or exponents.
    """
    if d == 0:
        return Decimal(0)
    digits = 10 - d.adjusted() - 1
    q = d.quantize(Decimal(1).scaleb(-digits)) if digits > 0 else d
    q = q.normalize()
    exp = q.as_tuple().exponent
    if isinstance(exp, int) and exp > 0:
        q = q.quantize(Decimal(1))
    return q


def display(code: str) -> str:
    """The human-readable ``Quantity.unit`` for a UCUM code."""
    return DISPLAY.get(code, code)
