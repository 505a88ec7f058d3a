"""Sample -> FHIR Observation with a deterministic identifier, as a conditional create (https://hl7.org/fhir/R4/observation.html)."""

from __future__ import annotations

import hashlib
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


def fhir_datetime(text: str, default_tz: tzinfo | None = None) -> str:
    """``text`` as a FHIR dateTime, keeping its time zone; raise :class:`SampleError`.

    Text already in FHIR form is returned unchanged (precision and offset preserved). Other ISO
    8601 forms (space separator, ``+0100`` offsets, no seconds) are normalised. A time without a
    zone takes ``default_tz`` or is rejected: FHIR requires a zone whenever a time is given.
    """
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


def resolve(sample: Sample, default_tz: tzinfo | None = None) -> Resolved:
    """Code a sample and normalise its unit, value and times; raise :class:`SampleError`."""
    m, unit = _measure(sample.metric, sample.unit)
    start = fhir_datetime(sample.start, default_tz)
    end = fhir_datetime(sample.end, default_tz) if sample.end else None
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
        return Resolved(m, start, end, None, unit, tuple(parts))
    if sample.value is None or (isinstance(sample.value, str) and not sample.value.strip()):
        raise SampleError(f"missing value for {m.key!r}")
    value, unit = _value(m, unit, sample.value)
    return Resolved(m, start, end, value, unit)


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
        except units.UnitError as exc:
            raise SampleError(f"unit {unit!r} does not fit {m.key!r} (wants {m.unit!r})") from exc
        unit = m.unit
    if value < 0:
        raise SampleError(f"negative value {raw!r} for {m.key!r}")
    return units.json_number(value), unit


def identifier_value(resolved: Resolved, *, source: str, device_key: str, patient: str) -> str:
    """Stable hash of (source, device, patient, LOINC code, time, value, unit)."""
    parts = (
        source,
        device_key,
        patient,
        resolved.measure.code,
        resolved.start,
        resolved.end or "",
        resolved.value_text(),
        resolved.unit if not resolved.components else ",".join(u for _, _, u in resolved.components),
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


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
    m = resolved.measure
    obs: dict[str, Any] = {"resourceType": "Observation"}
    if m.profiles:
        obs["meta"] = {"profile": m.profiles}
    obs["identifier"] = [{"system": INGEST_SYSTEM, "value": identifier}]
    obs["status"] = status
    obs["category"] = [m.category_concept()]
    obs["code"] = m.codeable_concept()
    obs["subject"] = {"reference": patient_ref}
    if resolved.end is None:
        obs["effectiveDateTime"] = resolved.start
    else:
        obs["effectivePeriod"] = {"start": resolved.start, "end": resolved.end}
    if device_ref is not None:
        obs["device"] = {"reference": device_ref}
    if resolved.components:
        obs["component"] = [
            {"code": cm.codeable_concept(), "valueQuantity": _quantity_dict(v, u)}
            for cm, v, u in resolved.components
        ]
    elif resolved.value is not None:
        obs["valueQuantity"] = _quantity_dict(resolved.value, resolved.unit)
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
    resolved = resolve(sample, default_tz)
    patient = sample.patient or patient_ref
    device = sample.device
    ident = identifier_value(
        resolved, source=source, device_key=device.key if device else "", patient=patient
    )
    if device_ref is None and device is not None:
        device_ref = device.full_url
    resource = build(resolved, patient_ref=patient, identifier=ident, device_ref=device_ref)
    return conditional_create(resource, INGEST_SYSTEM, ident)
