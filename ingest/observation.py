"""Sample -> FHIR Observation with a deterministic identifier, as a conditional create (https://hl7.org/fhir/R4/observation.html)."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ingest import mapping, units
from ingest.bundle import Entry, conditional_create
from ingest.mapping import Measure

if TYPE_CHECKING:
    from ingest.device import DeviceInfo

INGEST_SYSTEM = "urn:fhir-server:ingest"

Number = str | int | float | Decimal


class SampleError(ValueError):
    """Why a sample cannot become an Observation (bad metric, unit, value or time)."""


@dataclass(frozen=True, slots=True)
class Component:
    """One part of a panel sample (systolic / diastolic of a blood pressure)."""

    metric: str
    value: Number
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement as an adapter read it, before coding and unit normalisation.

    ``metric`` is a measure key or alias (see :mod:`ingest.mapping`); ``value`` a number or its
    text; ``unit`` as written (alias or UCUM, ``None`` = the measure's canonical unit); ``start``
    and optional ``end`` ISO 8601 times (time zone kept). ``patient`` overrides the run's patient
    reference; ``location`` (line number or element path) is used in problem reports.
    """

    metric: str
    start: str
    value: Number | None = None
    unit: str | None = None
    end: str | None = None
    components: tuple[Component, ...] = ()
    device: DeviceInfo | None = None
    patient: str | None = None
    location: int | str = ""


@dataclass(frozen=True, slots=True)
class Resolved:
    """A sample coded, with its value in a unit the measure accepts and its times FHIR-shaped."""

    measure: Measure
    start: str
    end: str | None
    value: int | float | None
    unit: str
    components: tuple[tuple[Measure, int | float, str], ...] = ()

    def value_text(self) -> str:
        """The value (or ``sys/dia`` for a panel) as stable text."""
        if self.components:
            return "/".join(units.format_number(v) for _, v, _ in self.components)
        return "" if self.value is None else units.format_number(self.value)


# FHIR dateTime: https://hl7.org/fhir/R4/datatypes.html#dateTime
_FHIR_DATETIME = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
    r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
    r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
_COMPACT_OFFSET = re.compile(r"([+-])(\d\d)(\d\d)$")


# The usual full form ``YYYY-MM-DDThh:mm:ss`` + ``Z`` or ``+hh:mm`` is checked piecewise: the clock
# against these sets, the date and the zone against the general path once each (memoised).
_CLOCKS = frozenset(f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60))
_SECONDS = frozenset(f"{s:02d}" for s in range(60))
_DATES: dict[str, bool] = {}  # "YYYY-MM-DDT" -> valid
_ZONES: dict[str, bool] = {}  # "Z", "+01:00" -> valid
_MEMO_LIMIT = 10_000


def fhir_datetime(text: str, default_tz: tzinfo | None = None) -> str:
    """``text`` as a FHIR dateTime, keeping its time zone; raise :class:`SampleError`.

    Text already in FHIR form is returned unchanged (precision and offset preserved). Other ISO
    8601 forms (space separator, ``+0100`` offsets, no seconds) are normalised. A time without a
    zone takes ``default_tz`` or is rejected: FHIR requires a zone whenever a time is given.
    """
    n = len(text)
    if (n == 25 or n == 20) and text[11:17] in _CLOCKS and text[17:19] in _SECONDS:
        # Valid exactly when its date, clock and zone each are (the FHIR pattern and
        # datetime.fromisoformat check them independently): then returned as is, as below.
        date_ok = _DATES.get(text[:11])
        if date_ok is None:
            date_ok = _memo(_DATES, text[:11], _unchanged(text[:11] + "00:00:00Z"))
        if date_ok:
            zone_ok = _ZONES.get(text[19:])
            if zone_ok is None:
                zone_ok = _memo(_ZONES, text[19:], _unchanged("2000-01-01T00:00:00" + text[19:]))
            if zone_ok:
                return text
    return _fhir_datetime(text, default_tz)


def _memo(memo: dict[str, bool], key: str, value: bool) -> bool:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value
    return value


def _unchanged(text: str) -> bool:
    """True when the general path returns ``text`` itself (a valid FHIR dateTime as written)."""
    try:
        return _fhir_datetime(text) == text
    except SampleError:
        return False


def _fhir_datetime(text: str, default_tz: tzinfo | None = None) -> str:
    """:func:`fhir_datetime` without its fast path (the general rules)."""
    s = text.strip()
    if not s:
        raise SampleError("missing date/time")
    if _FHIR_DATETIME.fullmatch(s):
        if len(s) > 10:
            try:
                datetime.fromisoformat(s)
            except ValueError as exc:
                raise SampleError(f"invalid date/time {text!r}") from exc
        elif len(s) == 10:
            try:
                datetime.strptime(s, "%Y-%m-%d")
            except ValueError as exc:
                raise SampleError(f"invalid date {text!r}") from exc
        return s
    candidate = _COMPACT_OFFSET.sub(r"\1\2:\3", s.replace(" ", "T", 1).replace(" ", ""))
    try:
        dt = datetime.fromisoformat(candidate)
    except ValueError as exc:
        raise SampleError(f"invalid date/time {text!r}") from exc
    if dt.tzinfo is None:
        if default_tz is None:
            raise SampleError(f"date/time {text!r} has a time but no time zone")
        dt = dt.replace(tzinfo=default_tz)
    out = dt.isoformat()
    if not _FHIR_DATETIME.fullmatch(out):
        raise SampleError(f"invalid date/time {text!r}")
    return out


def _instant(s: str) -> datetime | None:
    return datetime.fromisoformat(s) if len(s) > 10 else None


# A resolved sample's fields (measure, start, end, value, unit, components) and its value text.
_Parts = tuple[
    Measure, str, str | None, int | float | None, str, tuple[tuple[Measure, int | float, str], ...], str
]


def resolve(sample: Sample, default_tz: tzinfo | None = None) -> Resolved:
    """Code a sample and normalise its unit, value and times; raise :class:`SampleError`."""
    m, start, end, value, unit, components, _ = _resolve(sample, default_tz)
    return Resolved(m, start, end, value, unit, components)


def _resolve(sample: Sample, default_tz: tzinfo | None) -> _Parts:
    m, unit = _measure(sample.metric, sample.unit)
    start = fhir_datetime(sample.start, default_tz)
    # An end written as the start is the same time: no period (fhir_datetime is a pure function).
    end = fhir_datetime(sample.end, default_tz) if sample.end and sample.end != sample.start else None
    if end == start:
        end = None
    if end is not None:
        a, b = _instant(start), _instant(end)
        if a is not None and b is not None and b < a:
            raise SampleError(f"end {end} is before start {start}")
    if m.components:
        if sample.value is not None and not sample.components:
            raise SampleError(f"{m.key} needs its components ({', '.join(m.components)}), not a single value")
        parts: list[tuple[Measure, int | float, str]] = []
        for comp in sample.components:
            cm, cunit = _measure(comp.metric, comp.unit or sample.unit)
            if cm.key not in m.components:
                raise SampleError(f"{cm.key!r} is not a component of {m.key!r}")
            cvalue, cunit = _value(cm, cunit, comp.value)
            parts.append((cm, cvalue, cunit))
        if not parts:
            raise SampleError(f"{m.key} has no components")
        parts.sort(key=lambda p: m.components.index(p[0].key))
        text = "/".join(units.format_number(v) for _, v, _ in parts)
        return m, start, end, None, unit, tuple(parts), text
    if sample.value is None or (isinstance(sample.value, str) and not sample.value.strip()):
        raise SampleError(f"missing value for {m.key!r}")
    value, unit, text = _value_and_text(m, unit, sample.value)
    return m, start, end, value, unit, (), text


def _measure(metric: str, unit_text: str | None) -> tuple[Measure, str]:
    try:
        return mapping.resolve(metric, unit_text)
    except mapping.UnknownMeasure as exc:
        raise SampleError(str(exc)) from exc
    except units.UnitError as exc:
        raise SampleError(f"{exc} for {metric!r}") from exc


def _value(m: Measure, unit: str, raw: Number) -> tuple[int | float, str]:
    try:
        value = units.parse_number(raw)
    except ValueError as exc:
        raise SampleError(f"non-numeric value {raw!r} for {m.key!r}") from exc
    if unit not in m.units:
        try:
            value = units.convert(value, unit, m.unit)
        except units.ValueRangeError as exc:
            raise SampleError(
                f"value {_shown(raw)} for {m.key!r} is out of range (converting {unit!r} to {m.unit!r})"
            ) from exc
        except units.UnitError as exc:
            raise SampleError(f"unit {unit!r} does not fit {m.key!r} (wants {m.unit!r})") from exc
        unit = m.unit
    if value < 0:
        raise SampleError(f"negative value {raw!r} for {m.key!r}")
    number = units.json_number(value)
    if type(number) is float and (math.isinf(number) or (number == 0 and value != 0)):
        # Beyond what a float holds (1e400 would become inf, 1e-400 zero): no number to write.
        raise SampleError(f"value {_shown(raw)} for {m.key!r} is out of range")
    return number, unit


def _shown(raw: Number) -> str:
    """A value for a message, as written: ``'1e400'`` (a Decimal as its text, not its repr)."""
    return repr(str(raw)) if isinstance(raw, Decimal) else repr(raw)


# (text value, unit, measure key, measure units) -> (JSON value, unit, value text): all that
# _value reads, memoised (values repeat: heart rates, step counts). Errors are not memoised.
_VALUES: dict[tuple[str, str, str, tuple[str, ...]], tuple[int | float, str, str]] = {}


def _value_and_text(m: Measure, unit: str, raw: Number) -> tuple[int | float, str, str]:
    """:func:`_value` and :func:`units.format_number` of the value."""
    if type(raw) is not str:  # 72, 72.0 and Decimal("72") are equal keys but different values
        value, unit = _value(m, unit, raw)
        return value, unit, units.format_number(value)
    key = (raw, unit, m.key, m.units)
    hit = _VALUES.get(key)
    if hit is None:
        value, canonical = _value(m, unit, raw)
        hit = (value, canonical, units.format_number(value))
        if len(_VALUES) >= _MEMO_LIMIT:
            _VALUES.clear()
        _VALUES[key] = hit
    return hit


def identifier_value(resolved: Resolved, *, source: str, device_key: str, patient: str) -> str:
    """Stable hash of (source, device, patient, LOINC code, time, value, unit)."""
    return _identifier(
        source,
        device_key,
        patient,
        resolved.measure.code,
        resolved.start,
        resolved.end,
        resolved.value_text(),
        resolved.unit if not resolved.components else ",".join(u for _, _, u in resolved.components),
    )


def _identifier(
    source: str, device_key: str, patient: str, code: str, start: str, end: str | None, value: str, unit: str
) -> str:
    parts = (source, device_key, patient, code, start, end or "", value, unit)
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class _Codes:
    """A measure's ``meta.profile``, category and code as strings, for building fresh dicts fast.

    Equal to ``Measure.profiles``, ``category_concept()`` and ``codeable_concept()`` (a test
    checks every measure).
    """

    __slots__ = ("category", "category_display", "codings", "display", "measure", "profiles")

    def __init__(self, m: Measure) -> None:
        self.measure = m
        self.profiles = tuple(m.profiles)
        self.category = m.category
        self.category_display = mapping.CATEGORY_DISPLAY.get(m.category, m.category)
        self.codings = ((m.code, m.display), *m.extra_codes)
        self.display = m.display

    def category_concept(self) -> dict[str, Any]:
        return {
            "coding": [
                {"system": mapping.CATEGORY_SYSTEM, "code": self.category, "display": self.category_display}
            ]
        }

    def codeable_concept(self) -> dict[str, Any]:
        codings = [{"system": mapping.LOINC_SYSTEM, "code": c, "display": d} for c, d in self.codings]
        return {"coding": codings, "text": self.display}


_CODES: dict[int, _Codes] = {}  # id(measure) -> its codes (holding the measure: the id stays its own)


def _codes(m: Measure) -> _Codes:
    hit = _CODES.get(id(m))
    if hit is None or hit.measure is not m:
        if len(_CODES) >= _MEMO_LIMIT:
            _CODES.clear()
        hit = _CODES[id(m)] = _Codes(m)
    return hit


def _quantity_dict(value: int | float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": units.display(unit), "system": units.UCUM_SYSTEM, "code": unit}


def build(
    resolved: Resolved,
    *,
    patient_ref: str,
    identifier: str,
    device_ref: str | None = None,
    status: str = "final",
) -> dict[str, Any]:
    """The Observation dict for a resolved sample."""
    r = resolved
    return _build(
        r.measure, r.start, r.end, r.value, r.unit, r.components, patient_ref, identifier, device_ref, status
    )


def _build(
    m: Measure,
    start: str,
    end: str | None,
    value: int | float | None,
    unit: str,
    components: tuple[tuple[Measure, int | float, str], ...],
    patient_ref: str,
    identifier: str,
    device_ref: str | None,
    status: str,
) -> dict[str, Any]:
    codes = _codes(m)
    obs: dict[str, Any] = {"resourceType": "Observation"}
    if codes.profiles:
        obs["meta"] = {"profile": list(codes.profiles)}
    obs["identifier"] = [{"system": INGEST_SYSTEM, "value": identifier}]
    obs["status"] = status
    obs["category"] = [codes.category_concept()]
    obs["code"] = codes.codeable_concept()
    obs["subject"] = {"reference": patient_ref}
    if end is None:
        obs["effectiveDateTime"] = start
    else:
        obs["effectivePeriod"] = {"start": start, "end": end}
    if device_ref is not None:
        obs["device"] = {"reference": device_ref}
    if components:
        obs["component"] = [
            {"code": _codes(cm).codeable_concept(), "valueQuantity": _quantity_dict(v, u)}
            for cm, v, u in components
        ]
    elif value is not None:
        obs["valueQuantity"] = _quantity_dict(value, unit)
    return obs


def entry(
    sample: Sample,
    *,
    source: str,
    patient_ref: str,
    device_ref: str | None = None,
    default_tz: tzinfo | None = None,
) -> Entry:
    """Resolve, identify and build a sample into a conditional-create entry; raise :class:`SampleError`.

    ``patient_ref`` is used unless the sample names its own patient; ``device_ref`` defaults to
    the sample's Device fullUrl (the Device entry must then be in the same bundle).
    """
    device = sample.device
    if device is None:
        return entry_with_device(sample, source, patient_ref, "", device_ref, default_tz)
    return entry_with_device(
        sample,
        source,
        patient_ref,
        device.key,
        device.full_url if device_ref is None else device_ref,
        default_tz,
    )


def entry_with_device(
    sample: Sample,
    source: str,
    patient_ref: str,
    device_key: str,
    device_ref: str | None,
    default_tz: tzinfo | None,
) -> Entry:
    """:func:`entry` with the sample's device key and reference already known (``""`` and ``None``
    without a device): a run computes them once per Device, not once per sample."""
    m, start, end, value, unit, components, text = _resolve(sample, default_tz)
    patient = sample.patient or patient_ref
    unit_text = unit if not components else ",".join(u for _, _, u in components)
    ident = _identifier(source, device_key, patient, m.code, start, end, text, unit_text)
    resource = _build(m, start, end, value, unit, components, patient, ident, device_ref, "final")
    return conditional_create(resource, INGEST_SYSTEM, ident)
