"""UCUM canonical units for quantity search (https://hl7.org/fhir/R4/search.html#quantity, https://ucum.org/ucum).

`canonical("mg/dL")` -> Canonical(code="g.m-3", factor=0.01, offset=0.0): the value in canonical
units is `value * factor + offset`. The canonical code is the product of base units, sorted by
name, each with its exponent ("g.m-3", "s-1", "K"; "1" when dimensionless), so two units are
comparable exactly when their canonical codes are equal (kg and [lb_av] both give "g").

The atoms, prefixes and definitions come from the UCUM essence (ucum-essence.xml, version 2.2, the
copy vendored in the `ucumvert` package), resolved recursively by the small parser below; results
are cached per unit string, so indexing pays a dict lookup per quantity.

Choices beyond UCUM's own canonical form, made so that search is clinically meaningful:
- `mol` is kept as a base unit (UCUM defines it as the dimensionless 6.02214076e23), so mmol/L
  does not compare equal to a count per litre.
- Arbitrary units ([IU], [arb'U], ...) are base units of their own, never convertible to others.
- Special units: Cel, [degF] and [degRe] are affine conversions to K, and only on their own
  (not inside a compound unit); other special units (pH, bels, ...) have no canonical form.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

UCUM_SYSTEM = "http://unitsofmeasure.org"

Dims = dict[str, int]


@dataclass(frozen=True, slots=True)
class Canonical:
    """How to express a value of some unit in canonical units."""

    code: str
    factor: float
    offset: float = 0.0

    def convert(self, value: float) -> float:
        """The value in canonical units, to 15 significant digits (so 100 mg/dL and 1 g/L agree)."""
        if self.factor == 1.0 and self.offset == 0.0:
            return value
        return _round(value * self.factor + self.offset)


def _round(value: float) -> float:
    return float(f"{value:.15g}")


@dataclass(frozen=True, slots=True)
class _Unit:
    value: float
    unit: str
    metric: bool
    arbitrary: bool
    special: str | None  # function name of a special unit
    special_value: float


@dataclass(frozen=True)
class _Essence:
    prefixes: dict[str, float]
    base: frozenset[str]
    units: dict[str, _Unit]


# Affine special units: (factor, offset) to kelvin; the UCUM function's value/unit is checked on load.
_AFFINE_TO_K = {
    "Cel": (1.0, 273.15),
    "degF": (5.0 / 9.0, 459.67 * 5.0 / 9.0),
    "degRe": (5.0 / 4.0, 273.15),
}
_EXTRA_BASE = ("mol",)  # kept as a dimension (see the module docstring)


@functools.cache
def _essence() -> _Essence:
    ns = {"u": "http://unitsofmeasure.org/ucum-essence"}
    source = importlib.resources.files("ucumvert").joinpath("vendor/ucum-essence.xml")
    root = ET.fromstring(source.read_bytes())
    prefixes = {}
    for p in root.findall("u:prefix", ns):
        value = p.find("u:value", ns)
        assert value is not None
        prefixes[p.attrib["Code"]] = float(value.attrib["value"])
    base = frozenset(b.attrib["Code"] for b in root.findall("u:base-unit", ns)) | frozenset(_EXTRA_BASE)
    units = {}
    for u in root.findall("u:unit", ns):
        value = u.find("u:value", ns)
        assert value is not None
        function = value.find("u:function", ns)
        units[u.attrib["Code"]] = _Unit(
            value=float(value.attrib.get("value", "1")),
            unit=value.attrib.get("Unit", "1"),
            metric=u.attrib.get("isMetric") == "yes",
            arbitrary=u.attrib.get("isArbitrary") == "yes",
            special=None if function is None else function.attrib["name"],
            special_value=0.0 if function is None else float(function.attrib["value"]),
        )
    return _Essence(prefixes=prefixes, base=base, units=units)


class UcumError(ValueError):
    """Not a valid (or not a convertible) UCUM unit expression."""


def _multiply(into: Dims, dims: Dims, power: int) -> None:
    for name, exp in dims.items():
        total = into.get(name, 0) + exp * power
        if total:
            into[name] = total
        else:
            into.pop(name, None)


@functools.cache
def _atom(code: str) -> tuple[float, tuple[tuple[str, int], ...]]:
    """(factor, dims) of one atom without prefix."""
    essence = _essence()
    if code in essence.base:
        return 1.0, ((code, 1),)
    unit = essence.units.get(code)
    if unit is None:
        raise UcumError(f"unknown unit atom {code!r}")
    if unit.special is not None:
        raise UcumError(f"special unit {code!r} inside an expression")
    if unit.arbitrary and unit.unit == "1":
        return 1.0, ((code, 1),)
    factor, dims = _parse(unit.unit)
    return unit.value * factor, tuple(sorted(dims.items()))


_EXPONENT = re.compile(r"^(.*?[^0-9+\-])([+-]?[0-9]+)$", re.ASCII)


def _simple_unit(token: str) -> tuple[float, Dims]:
    """One annotatable: atom or prefix+atom, with an optional integer exponent."""
    if token.isascii() and token.isdigit():
        return float(int(token)), {}
    exponent = 1
    m = _EXPONENT.match(token)
    if m is not None and not token.endswith("]"):
        token, exponent = m.group(1), int(m.group(2))
    essence = _essence()
    if token in essence.units or token in essence.base:
        factor, dims = _atom(token)
    else:
        for prefix in sorted((p for p in essence.prefixes if token.startswith(p)), key=len, reverse=True):
            rest = token[len(prefix) :]
            unit = essence.units.get(rest)
            if rest in essence.base or (unit is not None and unit.metric):
                factor, dims = _atom(rest)
                factor *= essence.prefixes[prefix]
                break
        else:
            raise UcumError(f"unknown unit {token!r}")
    out: Dims = {}
    _multiply(out, dict(dims), exponent)
    return factor**exponent, out


class _Parser:
    """UCUM expression syntax (https://ucum.org/ucum#section-Syntax-Rules): `.` and `/` left to
    right, parentheses, `{annotations}`, integer factors, exponents after a unit."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def term(self) -> tuple[float, Dims]:
        factor = 1.0
        dims: Dims = {}
        op = "."
        if self.text.startswith("/", self.pos):
            op = "/"
            self.pos += 1
        while True:
            f, d = self.component()
            power = 1 if op == "." else -1
            factor *= f**power
            _multiply(dims, d, power)
            if self.pos < len(self.text) and self.text[self.pos] in "./":
                op = self.text[self.pos]
                self.pos += 1
                continue
            return factor, dims

    def component(self) -> tuple[float, Dims]:
        text = self.text
        if self.pos >= len(text):
            raise UcumError(f"unit expression ends early: {text!r}")
        if text[self.pos] == "(":
            self.pos += 1
            result = self.term()
            if not text.startswith(")", self.pos):
                raise UcumError(f"unbalanced parentheses in {text!r}")
            self.pos += 1
            self.annotation()  # `(10.g){feces}`: found in UCUM's own table of examples
            return result
        start = self.pos
        while self.pos < len(text) and text[self.pos] not in "./(){}":
            if text[self.pos] == "[":
                end = text.find("]", self.pos)
                if end < 0:
                    raise UcumError(f"unbalanced brackets in {text!r}")
                self.pos = end
            self.pos += 1
        token = text[start : self.pos]
        unit: tuple[float, Dims] = (1.0, {}) if not token else _simple_unit(token)
        if not self.annotation() and not token:
            raise UcumError(f"empty unit in {text!r}")
        return unit

    def annotation(self) -> bool:
        """Skip a `{...}` annotation (it has no effect on the unit); True when there was one."""
        if not self.text.startswith("{", self.pos):
            return False
        end = self.text.find("}", self.pos)
        if end < 0:
            raise UcumError(f"unbalanced braces in {self.text!r}")
        self.pos = end + 1
        return True


@functools.cache
def _parse_cached(text: str) -> tuple[float, tuple[tuple[str, int], ...]]:
    parser = _Parser(text)
    factor, dims = parser.term()
    if parser.pos != len(text):
        raise UcumError(f"unexpected {text[parser.pos :]!r} in {text!r}")
    return factor, tuple(sorted(dims.items()))


def _parse(text: str) -> tuple[float, Dims]:
    factor, dims = _parse_cached(text)
    return factor, dict(dims)


def _code(dims: tuple[tuple[str, int], ...]) -> str:
    if not dims:
        return "1"
    return ".".join(name if exp == 1 else f"{name}{exp}" for name, exp in dims)


@functools.lru_cache(maxsize=8192)
def canonical(unit: str) -> Canonical | None:
    """The canonical form of a UCUM unit code, or None when it is not valid convertible UCUM."""
    if not unit or unit != unit.strip() or " " in unit:
        return None
    essence = _essence()
    special = essence.units.get(unit)
    if special is not None and special.special is not None:
        affine = _AFFINE_TO_K.get(special.special)
        if affine is None:
            return None
        return Canonical("K", _round(affine[0]), _round(affine[1]))
    try:
        factor, dims = _parse_cached(unit)
    except (ValueError, RecursionError, OverflowError, ZeroDivisionError):
        return None
    if not math.isfinite(factor) or factor == 0:
        return None
    return Canonical(_code(dims), _round(factor))


def to_canonical(value: float, unit: str) -> tuple[float, str] | None:
    """(value in canonical units, canonical code), or None when the unit is not convertible UCUM."""
    form = canonical(unit)
    if form is None:
        return None
    return form.convert(value), form.code
