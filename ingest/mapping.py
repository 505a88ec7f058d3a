"""Measure -> LOINC code, UCUM unit, category and vital-signs profile (https://hl7.org/fhir/R4/observation-vitalsigns.html)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from ingest import units

LOINC_SYSTEM = "http://loinc.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
VITAL_SIGNS_PROFILE = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
_SD = "http://hl7.org/fhir/StructureDefinition/"

CATEGORY_DISPLAY: Mapping[str, str] = MappingProxyType(
    {
        "vital-signs": "Vital Signs",
        "activity": "Activity",
        "laboratory": "Laboratory",
        "imaging": "Imaging",
        "survey": "Survey",
        "exam": "Exam",
    }
)

_EMPTY: Mapping[str, str] = MappingProxyType({})


class UnknownMeasure(KeyError):
    """A metric name that is neither a measure key nor one of its aliases."""

    def __str__(self) -> str:
        return f"unknown metric {self.args[0]!r}"


@dataclass(frozen=True, slots=True)
class Measure:
    """One kind of observation: what it is coded as and which units it takes.

    ``units`` are the UCUM codes kept as given (the first one is canonical); a value in any other
    unit of the same dimension is converted to ``units[0]``. ``unit_variants`` sends a value in a
    given unit to another measure (glucose in mmol/L is LOINC 15074-8, in mg/dL 2339-0).
    ``components`` (blood pressure) are keys of the measures that make up a panel; a panel has no
    value of its own.
    """

    key: str
    code: str
    display: str
    units: tuple[str, ...]
    category: str
    profile: str | None = None
    extra_codes: tuple[tuple[str, str], ...] = ()
    components: tuple[str, ...] = ()
    unit_aliases: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    unit_variants: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def __hash__(self) -> int:
        return hash((self.key, self.code))

    @property
    def unit(self) -> str:
        """The canonical UCUM unit."""
        return self.units[0]

    @property
    def is_vital_sign(self) -> bool:
        return self.category == "vital-signs"

    @property
    def profiles(self) -> list[str]:
        """``meta.profile`` values: the specific vital-signs profile (if any) and the base one."""
        if not self.is_vital_sign:
            return []
        return (
            [self.profile] if self.profile and self.profile != VITAL_SIGNS_PROFILE else [VITAL_SIGNS_PROFILE]
        )

    def codeable_concept(self) -> dict[str, Any]:
        codings = [{"system": LOINC_SYSTEM, "code": self.code, "display": self.display}]
        codings += [{"system": LOINC_SYSTEM, "code": c, "display": d} for c, d in self.extra_codes]
        return {"coding": codings, "text": self.display}

    def category_concept(self) -> dict[str, Any]:
        return {
            "coding": [
                {
                    "system": CATEGORY_SYSTEM,
                    "code": self.category,
                    "display": CATEGORY_DISPLAY.get(self.category, self.category),
                }
            ]
        }


def _m(
    key: str,
    code: str,
    display: str,
    units_: tuple[str, ...],
    category: str,
    profile: str | None = None,
    **kw: object,
) -> Measure:
    return Measure(key, code, display, units_, category, profile, **kw)  # type: ignore[arg-type]


_VS = "vital-signs"
MEASURES: dict[str, Measure] = {
    m.key: m
    for m in (
        _m("heart_rate", "8867-4", "Heart rate", ("/min",), _VS, _SD + "heartrate"),
        _m(
            "resting_heart_rate",
            "40443-4",
            "Heart rate --resting",
            ("/min",),
            _VS,
            _SD + "heartrate",
            extra_codes=(("8867-4", "Heart rate"),),
        ),
        _m("respiratory_rate", "9279-1", "Respiratory rate", ("/min",), _VS, _SD + "resprate"),
        _m(
            "oxygen_saturation",
            "2708-6",
            "Oxygen saturation in Arterial blood",
            ("%",),
            _VS,
            _SD + "oxygensat",
            extra_codes=(("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),),
        ),
        _m("body_temperature", "8310-5", "Body temperature", ("Cel", "[degF]"), _VS, _SD + "bodytemp"),
        _m("body_height", "8302-2", "Body height", ("cm", "[in_i]"), _VS, _SD + "bodyheight"),
        _m("body_weight", "29463-7", "Body weight", ("kg", "g", "[lb_av]"), _VS, _SD + "bodyweight"),
        _m(
            "bmi",
            "39156-5",
            "Body mass index (BMI) [Ratio]",
            ("kg/m2",),
            _VS,
            _SD + "bmi",
            unit_aliases=MappingProxyType({"count": "kg/m2", "1": "kg/m2", "": "kg/m2"}),
        ),
        _m(
            "blood_pressure",
            "85354-9",
            "Blood pressure panel with all children optional",
            ("mm[Hg]",),
            _VS,
            _SD + "bp",
            components=("systolic_bp", "diastolic_bp"),
        ),
        _m("systolic_bp", "8480-6", "Systolic blood pressure", ("mm[Hg]",), _VS, VITAL_SIGNS_PROFILE),
        _m("diastolic_bp", "8462-4", "Diastolic blood pressure", ("mm[Hg]",), _VS, VITAL_SIGNS_PROFILE),
        _m(
            "steps",
            "41950-7",
            "Number of steps in 24 hour Measured",
            ("{steps}",),
            "activity",
            unit_aliases=MappingProxyType({"count": "{steps}", "1": "{steps}", "": "{steps}"}),
        ),
        _m(
            "steps_interval",
            "55423-8",
            "Number of steps in unspecified time Pedometer",
            ("{steps}",),
            "activity",
            unit_aliases=MappingProxyType({"count": "{steps}", "1": "{steps}", "": "{steps}"}),
        ),
        _m(
            "blood_glucose",
            "2339-0",
            "Glucose [Mass/volume] in Blood",
            ("mg/dL",),
            "laboratory",
            unit_variants=MappingProxyType({"mmol/L": "blood_glucose_molar"}),
        ),
        _m(
            "blood_glucose_molar",
            "15074-8",
            "Glucose [Moles/volume] in Blood",
            ("mmol/L",),
            "laboratory",
            unit_variants=MappingProxyType({"mg/dL": "blood_glucose"}),
        ),
        _m("hba1c", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", ("%",), "laboratory"),
        _m("sleep_duration", "93832-4", "Sleep duration", ("min", "h"), "activity"),
        _m("sleep_deep", "93831-6", "Deep sleep duration", ("min", "h"), "activity"),
        _m("sleep_light", "93830-8", "Light sleep duration", ("min", "h"), "activity"),
        _m("sleep_rem", "93829-0", "REM sleep duration", ("min", "h"), "activity"),
    )
}

METRIC_ALIASES: dict[str, str] = {
    "hr": "heart_rate",
    "pulse": "heart_rate",
    "heartrate": "heart_rate",
    "heart rate": "heart_rate",
    "resp_rate": "respiratory_rate",
    "breathing_rate": "respiratory_rate",
    "spo2": "oxygen_saturation",
    "oxygen saturation": "oxygen_saturation",
    "temperature": "body_temperature",
    "temp": "body_temperature",
    "height": "body_height",
    "weight": "body_weight",
    "body_mass_index": "bmi",
    "bp": "blood_pressure",
    "systolic": "systolic_bp",
    "diastolic": "diastolic_bp",
    "step_count": "steps",
    "glucose": "blood_glucose",
    "a1c": "hba1c",
    "hemoglobin_a1c": "hba1c",
    "sleep": "sleep_duration",
}

_BY_CODE: dict[str, Measure] = {m.code: m for m in MEASURES.values()}
_BY_CODE["8867-4"] = MEASURES["heart_rate"]


def register(measure: Measure, *aliases: str) -> None:
    """Add (or replace) a measure and its metric aliases; e.g. more lab tests for the lab-report adapter."""
    MEASURES[measure.key] = measure
    _BY_CODE[measure.code] = measure
    _resolve.cache_clear()
    for alias in aliases:
        METRIC_ALIASES[alias.casefold()] = measure.key


def measure(metric: str) -> Measure:
    """The measure for a key or alias (case-insensitive); raise :class:`UnknownMeasure`."""
    name = metric.strip()
    hit = MEASURES.get(name)
    if hit is not None:
        return hit
    folded = name.casefold().replace("-", "_")
    key = METRIC_ALIASES.get(folded, folded)
    hit = MEASURES.get(key) or MEASURES.get(METRIC_ALIASES.get(name.casefold(), ""))
    if hit is None:
        raise UnknownMeasure(metric)
    return hit


def measure_for_code(code: str) -> Measure | None:
    """The measure coded with this LOINC code (primary or extra), if any."""
    hit = _BY_CODE.get(code)
    if hit is not None:
        return hit
    for m in MEASURES.values():
        if any(c == code for c, _ in m.extra_codes):
            return m
    return None


def resolve(metric: str, unit_text: str | None) -> tuple[Measure, str]:
    """The measure and UCUM unit for a metric name and a unit as written.

    An empty/None unit means the measure's canonical unit. The unit may switch the measure
    (glucose mmol/L -> 15074-8). Raises :class:`UnknownMeasure` or :class:`units.UnitError`.
    Results are cached (the registry is expected to be complete before ingest starts;
    :func:`register` clears the cache).
    """
    return _resolve(metric, unit_text)


@lru_cache(maxsize=8192)
def _resolve(metric: str, unit_text: str | None) -> tuple[Measure, str]:
    m = measure(metric)
    if unit_text is None or (not unit_text.strip() and "" not in m.unit_aliases):
        return m, m.unit
    code = units.canonical_unit(unit_text, m.unit_aliases or None)
    variant = m.unit_variants.get(code)
    if variant is not None:
        m = MEASURES[variant]
    return m, code
