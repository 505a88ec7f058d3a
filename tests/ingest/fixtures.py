"""Synthetic source files for the ingest tests (Apple Health export.xml, HCGateway, Fitbit Web API, Open mHealth, CSV).

Everything here is generated: no real person's data. Each generator returns what the adapter
must make of it, as :class:`Expected` rows, so the tests can check the Observations field by field.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

PATIENT = "Patient/123"
VS = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(frozen=True)
class Expected:
    """One Observation an adapter must produce."""

    code: str
    start: str
    value: int | float | None = None
    unit: str | None = None
    end: str | None = None
    components: tuple[tuple[str, int | float, str], ...] = ()
    category: str = "vital-signs"
    profile: str | None = None


# --- Apple Health ---------------------------------------------------------------------------

WATCH = "<<HKDevice: 0x{ptr:x}>, name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch6,2, software:10.1>"
PHONE_SOURCE = "Test iPhone"
WATCH_SOURCE = "Test Apple Watch"

_APPLE_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary)*)>
<!ATTLIST HealthData locale CDATA #REQUIRED>
<!ELEMENT ExportDate EMPTY>
<!ATTLIST ExportDate value CDATA #REQUIRED>
]>
<HealthData locale="en_US">
 <ExportDate value="2024-03-02 09:00:00 +0100"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="1980-01-01" HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexNotSet"/>
"""
_APPLE_TAIL = "</HealthData>\n"


def hk_record(
    hk_type: str,
    value: str,
    start: str,
    end: str | None = None,
    unit: str | None = None,
    *,
    source: str = WATCH_SOURCE,
    device: str | None = WATCH,
    ptr: int = 0x282D03020,
    children: str = "",
) -> str:
    """One ``<Record>`` element as the Health app writes it."""
    attrs = {"type": hk_type, "sourceName": source, "sourceVersion": "10.1"}
    if device:
        attrs["device"] = device.format(ptr=ptr)
    if unit is not None:
        attrs["unit"] = unit
    attrs |= {"creationDate": end or start, "startDate": start, "endDate": end or start, "value": value}
    text = " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items())
    return f" <Record {text}>{children}</Record>\n" if children else f" <Record {text}/>\n"


def hk_blood_pressure(systolic: str, diastolic: str, when: str, *, nested_only: bool = False) -> str:
    """A blood-pressure correlation, plus the top-level copies of its parts real exports carry."""
    sys_r = hk_record("HKQuantityTypeIdentifierBloodPressureSystolic", systolic, when, unit="mmHg")
    dia_r = hk_record("HKQuantityTypeIdentifierBloodPressureDiastolic", diastolic, when, unit="mmHg")
    attrs = (
        f'type="HKCorrelationTypeIdentifierBloodPressure" sourceName={quoteattr(WATCH_SOURCE)} sourceVersion="10.1" '
        f'creationDate="{when}" startDate="{when}" endDate="{when}"'
    )
    corr = f' <Correlation {attrs}>\n  <MetadataEntry key="HKWasUserEntered" value="0"/>\n {sys_r} {dia_r} </Correlation>\n'
    return corr if nested_only else sys_r + dia_r + corr


def apple_every_measure() -> tuple[str, list[Expected]]:
    """An export.xml text with every mapped measure and unit quirk, and what it must become."""
    hr_meta = '\n  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="1"/>\n '
    body = [
        hk_record(
            "HKQuantityTypeIdentifierHeartRate",
            "72",
            "2024-03-01 08:00:00 +0100",
            unit="count/min",
            children=hr_meta,
        ),
        hk_record(
            "HKQuantityTypeIdentifierRespiratoryRate",
            "16",
            "2024-03-01 08:01:00 +0100",
            unit="count/min",
            ptr=0x1C0FFEE,
        ),
        hk_record("HKQuantityTypeIdentifierOxygenSaturation", "0.97", "2024-03-01 08:02:00 +0100", unit="%"),
        hk_record("HKQuantityTypeIdentifierOxygenSaturation", "0.57", "2024-03-01 08:02:30 +0100", unit="%"),
        hk_record(
            "HKQuantityTypeIdentifierBodyTemperature", "36.8", "2024-03-01 08:03:00 +0100", unit="degC"
        ),
        hk_record(
            "HKQuantityTypeIdentifierBodyTemperature", "98.6", "2024-03-01 08:04:00 -0500", unit="degF"
        ),
        hk_record(
            "HKQuantityTypeIdentifierHeight",
            "175",
            "2024-03-01 08:05:00 +0100",
            unit="cm",
            source=PHONE_SOURCE,
            device=None,
        ),
        hk_record(
            "HKQuantityTypeIdentifierHeight",
            "1.8",
            "2024-03-01 08:05:30 +0100",
            unit="m",
            source=PHONE_SOURCE,
            device=None,
        ),
        hk_record(
            "HKQuantityTypeIdentifierBodyMass",
            "70.5",
            "2024-03-01 08:06:00 +0100",
            unit="kg",
            source=PHONE_SOURCE,
            device=None,
        ),
        hk_record(
            "HKQuantityTypeIdentifierBodyMass",
            "155.4",
            "2024-03-01 08:06:30 +0100",
            unit="lb",
            source=PHONE_SOURCE,
            device=None,
        ),
        hk_record(
            "HKQuantityTypeIdentifierBodyMassIndex",
            "23.1",
            "2024-03-01 08:07:00 +0100",
            unit="count",
            source=PHONE_SOURCE,
            device=None,
        ),
        hk_record(
            "HKQuantityTypeIdentifierStepCount",
            "512",
            "2024-03-01 08:00:00 +0100",
            "2024-03-01 08:10:00 +0100",
            unit="count",
        ),
        hk_record(
            "HKQuantityTypeIdentifierBloodGlucose",
            "99",
            "2024-03-01 08:08:00 +0100",
            unit="mg/dL",
            source=PHONE_SOURCE,
            device=None,
        ),
        hk_record(
            "HKQuantityTypeIdentifierBloodGlucose",
            "5.5",
            "2024-03-01 08:09:00 +0100",
            unit="mmol<180.1558800000541>/L",
            source=PHONE_SOURCE,
            device=None,
        ),
        hk_blood_pressure("120", "80", "2024-03-01 08:10:00 +0100"),
        hk_record(
            "HKCategoryTypeIdentifierSleepAnalysis",
            "HKCategoryValueSleepAnalysisInBed",
            "2024-02-29 23:00:00 +0100",
            "2024-03-01 07:00:00 +0100",
        ),
        hk_record(
            "HKCategoryTypeIdentifierSleepAnalysis",
            "HKCategoryValueSleepAnalysisAsleepCore",
            "2024-02-29 23:10:00 +0100",
            "2024-03-01 00:40:00 +0100",
        ),
        hk_record(
            "HKCategoryTypeIdentifierSleepAnalysis",
            "HKCategoryValueSleepAnalysisAsleepDeep",
            "2024-03-01 00:40:00 +0100",
            "2024-03-01 01:30:00 +0100",
        ),
        hk_record(
            "HKCategoryTypeIdentifierSleepAnalysis",
            "HKCategoryValueSleepAnalysisAsleepREM",
            "2024-03-01 01:30:00 +0100",
            "2024-03-01 02:00:00 +0100",
        ),
        hk_record(
            "HKCategoryTypeIdentifierSleepAnalysis",
            "HKCategoryValueSleepAnalysisAwake",
            "2024-03-01 02:00:00 +0100",
            "2024-03-01 02:05:00 +0100",
        ),
        hk_record(
            "HKCategoryTypeIdentifierSleepAnalysis",
            "HKCategoryValueSleepAnalysisAsleepUnspecified",
            "2024-03-01 02:05:00 +0100",
            "2024-03-01 06:05:00 +0100",
        ),
        hk_record(
            "HKQuantityTypeIdentifierDistanceWalkingRunning",
            "0.5",
            "2024-03-01 08:00:00 +0100",
            "2024-03-01 08:10:00 +0100",
            unit="km",
        ),
        ' <Workout workoutActivityType="HKWorkoutActivityTypeWalking" duration="10" durationUnit="min" sourceName="Test Apple Watch" startDate="2024-03-01 08:00:00 +0100" endDate="2024-03-01 08:10:00 +0100"/>\n',
        ' <ActivitySummary dateComponents="2024-03-01" activeEnergyBurned="300"/>\n',
    ]
    t = "2024-03-01T08:"
    expected = [
        Expected("8867-4", f"{t}00:00+01:00", 72, "/min", profile=VS + "heartrate"),
        Expected("9279-1", f"{t}01:00+01:00", 16, "/min", profile=VS + "resprate"),
        Expected("2708-6", f"{t}02:00+01:00", 97, "%", profile=VS + "oxygensat"),
        Expected("2708-6", f"{t}02:30+01:00", 57, "%", profile=VS + "oxygensat"),
        Expected("8310-5", f"{t}03:00+01:00", 36.8, "Cel", profile=VS + "bodytemp"),
        Expected("8310-5", f"{t}04:00-05:00", 98.6, "[degF]", profile=VS + "bodytemp"),
        Expected("8302-2", f"{t}05:00+01:00", 175, "cm", profile=VS + "bodyheight"),
        Expected("8302-2", f"{t}05:30+01:00", 180, "cm", profile=VS + "bodyheight"),
        Expected("29463-7", f"{t}06:00+01:00", 70.5, "kg", profile=VS + "bodyweight"),
        Expected("29463-7", f"{t}06:30+01:00", 155.4, "[lb_av]", profile=VS + "bodyweight"),
        Expected("39156-5", f"{t}07:00+01:00", 23.1, "kg/m2", profile=VS + "bmi"),
        Expected("55423-8", f"{t}00:00+01:00", 512, "{steps}", end=f"{t}10:00+01:00", category="activity"),
        Expected("2339-0", f"{t}08:00+01:00", 99, "mg/dL", category="laboratory"),
        Expected("15074-8", f"{t}09:00+01:00", 5.5, "mmol/L", category="laboratory"),
        Expected(
            "85354-9",
            f"{t}10:00+01:00",
            components=(("8480-6", 120, "mm[Hg]"), ("8462-4", 80, "mm[Hg]")),
            profile=VS + "bp",
        ),
        Expected(
            "93830-8",
            "2024-02-29T23:10:00+01:00",
            90.0,
            "min",
            end="2024-03-01T00:40:00+01:00",
            category="activity",
        ),
        Expected(
            "93831-6",
            "2024-03-01T00:40:00+01:00",
            50.0,
            "min",
            end="2024-03-01T01:30:00+01:00",
            category="activity",
        ),
        Expected(
            "93829-0",
            "2024-03-01T01:30:00+01:00",
            30.0,
            "min",
            end="2024-03-01T02:00:00+01:00",
            category="activity",
        ),
        Expected(
            "93832-4",
            "2024-03-01T02:05:00+01:00",
            240.0,
            "min",
            end="2024-03-01T06:05:00+01:00",
            category="activity",
        ),
    ]
    return _APPLE_HEAD + "".join(body) + _APPLE_TAIL, expected


def write_apple_zip(path: Path, export_xml: str) -> Path:
    """The export as the Health app shares it: ``apple_health_export/export.xml`` (+ a CDA file)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("apple_health_export/export.xml", export_xml)
        zf.writestr("apple_health_export/export_cda.xml", "<ClinicalDocument/>")
    return path


_BENCH_TYPES = (
    ("HKQuantityTypeIdentifierHeartRate", "count/min", "{hr}"),
    ("HKQuantityTypeIdentifierStepCount", "count", "{steps}"),
    ("HKQuantityTypeIdentifierOxygenSaturation", "%", "0.9{d}"),
    ("HKQuantityTypeIdentifierRespiratoryRate", "count/min", "1{d}"),
    ("HKQuantityTypeIdentifierHeartRate", "count/min", "{hr}"),
    ("HKQuantityTypeIdentifierBodyMass", "kg", "7{d}.{d}"),
    ("HKQuantityTypeIdentifierBloodGlucose", "mmol<180.1558800000541>/L", "5.{d}"),
    ("HKQuantityTypeIdentifierBodyTemperature", "degC", "36.{d}"),
)


def apple_records(n: int) -> Iterator[str]:
    """``n`` realistic ``<Record>`` lines (heart rate, steps, SpO2, ...), each with distinct times."""
    device = WATCH.format(ptr=0x282D03020)
    dev_attr = quoteattr(device)
    for i in range(n):
        hk_type, unit, pattern = _BENCH_TYPES[i % len(_BENCH_TYPES)]
        secs = i * 7
        day, rem = divmod(secs, 86400)
        hh, rem = divmod(rem, 3600)
        mm, ss = divmod(rem, 60)
        date = f"2023-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}"
        start = f"{date} {hh:02d}:{mm:02d}:{ss:02d} +0100"
        end = start if "Step" not in hk_type else f"{date} {hh:02d}:{mm:02d}:{min(ss + 5, 59):02d} +0100"
        value = pattern.format(hr=60 + i % 60, steps=1 + i % 300, d=i % 10)
        yield (
            f' <Record type="{hk_type}" sourceName="Test Apple Watch" sourceVersion="10.1" device={dev_attr} '
            f'unit={quoteattr(unit)} creationDate="{end}" startDate="{start}" endDate="{end}" value="{value}">\n'
            f'  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>\n </Record>\n'
        )


def write_apple_export(path: Path, n_records: int) -> Path:
    """A synthetic export.xml of ``n_records`` records, written streaming (for the benchmark)."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write(_APPLE_HEAD)
        batch: list[str] = []
        for line in apple_records(n_records):
            batch.append(line)
            if len(batch) >= 10_000:
                fh.write("".join(batch))
                batch.clear()
        fh.write("".join(batch))
        fh.write(_APPLE_TAIL)
    return path


# --- Health Connect (HCGateway /api/v2/fetch/<method> documents) ----------------------------

HC_APP = "com.example.fitness"


def _hc(rec_id: str, start: str, end: str | None, data: dict[str, Any], app: str = HC_APP) -> dict[str, Any]:
    return {"_id": rec_id, "id": rec_id, "app": app, "start": start, "end": end, "data": data}


def health_connect_payload() -> tuple[dict[str, Any], list[Expected]]:
    """HCGateway fetch output for each mapped method, and what it must become."""
    payload = {
        "heartRate": [
            _hc(
                "hr-1",
                "2024-03-01T07:00:00Z",
                "2024-03-01T07:01:00Z",
                {
                    "samples": [
                        {"time": "2024-03-01T07:00:00Z", "beatsPerMinute": 61},
                        {"time": "2024-03-01T07:00:30Z", "beatsPerMinute": 64},
                    ],
                    "startZoneOffset": "+01:00",
                },
            )
        ],
        "steps": [_hc("st-1", "2024-03-01T07:00:00Z", "2024-03-01T08:00:00Z", {"count": 1200})],
        "weight": [
            _hc("w-1", "2024-03-01T06:30:00Z", None, {"weight": {"inKilograms": 70.2, "inPounds": 154.76}})
        ],
        "height": [
            _hc("h-1", "2024-03-01T06:31:00Z", None, {"height": {"inMeters": 1.75, "inInches": 68.9}})
        ],
        "bodyTemperature": [
            _hc(
                "t-1",
                "2024-03-01T06:32:00Z",
                None,
                {"temperature": {"inCelsius": 36.6}, "measurementLocation": 0},
            )
        ],
        "oxygenSaturation": [_hc("o-1", "2024-03-01T06:33:00Z", None, {"percentage": 98})],
        "respiratoryRate": [_hc("r-1", "2024-03-01T06:34:00Z", None, {"rate": 15})],
        "bloodGlucose": [
            _hc(
                "g-1",
                "2024-03-01T06:35:00Z",
                None,
                {"level": {"inMillimolesPerLiter": 5.4, "inMilligramsPerDeciliter": 97.3}},
            )
        ],
        "bloodPressure": [
            _hc(
                "bp-1",
                "2024-03-01T06:36:00Z",
                None,
                {"systolic": {"inMillimetersOfMercury": 118}, "diastolic": {"inMillimetersOfMercury": 76}},
            )
        ],
        "sleepSession": [
            _hc(
                "sl-1",
                "2024-02-29T22:00:00Z",
                "2024-03-01T05:00:00Z",
                {
                    "stages": [
                        {"startTime": "2024-02-29T22:00:00Z", "endTime": "2024-02-29T23:00:00Z", "stage": 4},
                        {"startTime": "2024-02-29T23:00:00Z", "endTime": "2024-02-29T23:45:00Z", "stage": 5},
                        {"startTime": "2024-02-29T23:45:00Z", "endTime": "2024-03-01T00:15:00Z", "stage": 6},
                        {"startTime": "2024-03-01T00:15:00Z", "endTime": "2024-03-01T00:20:00Z", "stage": 1},
                    ]
                },
            )
        ],
        "distance": [
            _hc("d-1", "2024-03-01T07:00:00Z", "2024-03-01T08:00:00Z", {"distance": {"inMeters": 900}})
        ],
    }
    expected = [
        Expected("8867-4", "2024-03-01T08:00:00+01:00", 61, "/min", profile=VS + "heartrate"),
        Expected("8867-4", "2024-03-01T08:00:30+01:00", 64, "/min", profile=VS + "heartrate"),
        Expected(
            "55423-8",
            "2024-03-01T07:00:00Z",
            1200,
            "{steps}",
            end="2024-03-01T08:00:00Z",
            category="activity",
        ),
        Expected("29463-7", "2024-03-01T06:30:00Z", 70.2, "kg", profile=VS + "bodyweight"),
        Expected("8302-2", "2024-03-01T06:31:00Z", 175, "cm", profile=VS + "bodyheight"),
        Expected("8310-5", "2024-03-01T06:32:00Z", 36.6, "Cel", profile=VS + "bodytemp"),
        Expected("2708-6", "2024-03-01T06:33:00Z", 98, "%", profile=VS + "oxygensat"),
        Expected("9279-1", "2024-03-01T06:34:00Z", 15, "/min", profile=VS + "resprate"),
        Expected("15074-8", "2024-03-01T06:35:00Z", 5.4, "mmol/L", category="laboratory"),
        Expected(
            "85354-9",
            "2024-03-01T06:36:00Z",
            components=(("8480-6", 118, "mm[Hg]"), ("8462-4", 76, "mm[Hg]")),
            profile=VS + "bp",
        ),
        Expected(
            "93830-8", "2024-02-29T22:00:00Z", 60.0, "min", end="2024-02-29T23:00:00Z", category="activity"
        ),
        Expected(
            "93831-6", "2024-02-29T23:00:00Z", 45.0, "min", end="2024-02-29T23:45:00Z", category="activity"
        ),
        Expected(
            "93829-0", "2024-02-29T23:45:00Z", 30.0, "min", end="2024-03-01T00:15:00Z", category="activity"
        ),
    ]
    return payload, expected


# --- Fitbit Web API ---------------------------------------------------------------------------


def fitbit_payload() -> tuple[dict[str, Any], list[Expected]]:
    """Fitbit responses side by side (times local, zone +01:00 given to the adapter)."""
    payload = {
        "devices": [{"deviceVersion": "Charge 6", "type": "TRACKER", "id": "0000000"}],
        "activities-heart": [
            {
                "dateTime": "2024-03-01",
                "value": {"customHeartRateZones": [], "heartRateZones": [], "restingHeartRate": 58},
            }
        ],
        "activities-heart-intraday": {
            "dataset": [{"time": "08:00:00", "value": 70}, {"time": "08:01:00", "value": 74}],
            "datasetInterval": 1,
            "datasetType": "minute",
        },
        "activities-steps": [{"dateTime": "2024-03-01", "value": "8123"}],
        "weight": [
            {
                "bmi": 22.9,
                "date": "2024-03-01",
                "logId": 1,
                "source": "API",
                "time": "07:30:00",
                "weight": 71.3,
            }
        ],
        "sleep": [
            {
                "dateOfSleep": "2024-03-01",
                "startTime": "2024-02-29T23:00:00.000",
                "endTime": "2024-03-01T06:00:00.000",
                "duration": 25200000,
                "minutesAsleep": 390,
                "isMainSleep": True,
                "type": "stages",
                "levels": {
                    "data": [
                        {"dateTime": "2024-02-29T23:00:00.000", "level": "light", "seconds": 1800},
                        {"dateTime": "2024-02-29T23:30:00.000", "level": "deep", "seconds": 3600},
                        {"dateTime": "2024-03-01T00:30:00.000", "level": "rem", "seconds": 1200},
                        {"dateTime": "2024-03-01T00:50:00.000", "level": "wake", "seconds": 300},
                    ]
                },
            }
        ],
        "spo2": [
            {"dateTime": "2024-03-01", "value": {"avg": 96.5, "min": 94.0, "max": 99.0}},
            {"dateTime": "2024-03-01", "minutes": [{"value": 95.7, "minute": "2024-03-01T04:18:00"}]},
        ],
        "br": [{"value": {"breathingRate": 14.8}, "dateTime": "2024-03-01"}],
    }
    expected = [
        Expected("40443-4", "2024-03-01", 58, "/min", profile=VS + "heartrate"),
        Expected("8867-4", "2024-03-01T08:00:00+01:00", 70, "/min", profile=VS + "heartrate"),
        Expected("8867-4", "2024-03-01T08:01:00+01:00", 74, "/min", profile=VS + "heartrate"),
        Expected("41950-7", "2024-03-01", 8123, "{steps}", category="activity"),
        Expected("29463-7", "2024-03-01T07:30:00+01:00", 71.3, "kg", profile=VS + "bodyweight"),
        Expected("39156-5", "2024-03-01T07:30:00+01:00", 22.9, "kg/m2", profile=VS + "bmi"),
        Expected(
            "93832-4",
            "2024-02-29T23:00:00+01:00",
            390,
            "min",
            end="2024-03-01T06:00:00+01:00",
            category="activity",
        ),
        Expected(
            "93830-8",
            "2024-02-29T23:00:00+01:00",
            30.0,
            "min",
            end="2024-02-29T23:30:00+01:00",
            category="activity",
        ),
        Expected(
            "93831-6",
            "2024-02-29T23:30:00+01:00",
            60.0,
            "min",
            end="2024-03-01T00:30:00+01:00",
            category="activity",
        ),
        Expected(
            "93829-0",
            "2024-03-01T00:30:00+01:00",
            20.0,
            "min",
            end="2024-03-01T00:50:00+01:00",
            category="activity",
        ),
        Expected("2708-6", "2024-03-01", 96.5, "%", profile=VS + "oxygensat"),
        Expected("2708-6", "2024-03-01T04:18:00+01:00", 95.7, "%", profile=VS + "oxygensat"),
        Expected("9279-1", "2024-03-01", 14.8, "/min", profile=VS + "resprate"),
    ]
    return payload, expected


# --- Open mHealth -----------------------------------------------------------------------------


def _omh(n: int, name: str, version: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "header": {
            "id": f"00000000-0000-4000-8000-{n:012d}",
            "creation_date_time": "2024-03-01T09:00:00Z",
            "schema_id": {"namespace": "omh", "name": name, "version": version},
            "acquisition_provenance": {"source_name": "Test Tracker", "modality": "sensed"},
            "user_id": "synthetic-user",
        },
        "body": body,
    }


def open_mhealth_points() -> tuple[list[dict[str, Any]], list[Expected]]:
    """One data point per mapped schema (and one unmapped), and what they must become."""
    at = {"date_time": "2024-03-01T08:00:00-08:00"}
    points = [
        _omh(
            1,
            "heart-rate",
            "1.1",
            {"heart_rate": {"value": 66, "unit": "beats/min"}, "effective_time_frame": at},
        ),
        _omh(
            2,
            "respiratory-rate",
            "1.0",
            {"respiratory_rate": {"value": 14, "unit": "breaths/min"}, "effective_time_frame": at},
        ),
        _omh(
            3,
            "oxygen-saturation",
            "1.0",
            {"oxygen_saturation": {"value": 97, "unit": "%"}, "effective_time_frame": at},
        ),
        _omh(
            4,
            "body-temperature",
            "2.0",
            {"body_temperature": {"value": 37.1, "unit": "C"}, "effective_time_frame": at},
        ),
        _omh(
            5, "body-height", "1.0", {"body_height": {"value": 1.7, "unit": "m"}, "effective_time_frame": at}
        ),
        _omh(
            6, "body-weight", "1.0", {"body_weight": {"value": 150, "unit": "lb"}, "effective_time_frame": at}
        ),
        _omh(
            7,
            "body-mass-index",
            "1.0",
            {"body_mass_index": {"value": 21.5, "unit": "kg/m^2"}, "effective_time_frame": at},
        ),
        _omh(
            8,
            "blood-pressure",
            "1.0",
            {
                "systolic_blood_pressure": {"value": 125, "unit": "mmHg"},
                "diastolic_blood_pressure": {"value": 82, "unit": "mmHg"},
                "effective_time_frame": at,
            },
        ),
        _omh(
            9,
            "step-count",
            "2.0",
            {
                "step_count": {"value": 2500, "unit": "steps"},
                "effective_time_frame": {
                    "time_interval": {
                        "start_date_time": "2024-03-01T08:00:00-08:00",
                        "duration": {"value": 1, "unit": "h"},
                    }
                },
            },
        ),
        _omh(
            10,
            "step-count",
            "1.0",
            {
                "step_count": 300,
                "effective_time_frame": {
                    "time_interval": {
                        "start_date_time": "2024-03-01T10:00:00-08:00",
                        "end_date_time": "2024-03-01T10:15:00-08:00",
                    }
                },
            },
        ),
        _omh(
            11,
            "blood-glucose",
            "1.0",
            {"blood_glucose": {"value": 104, "unit": "mg/dL"}, "effective_time_frame": at},
        ),
        _omh(
            12,
            "sleep-duration",
            "1.0",
            {
                "sleep_duration": {"value": 7.5, "unit": "h"},
                "effective_time_frame": {
                    "time_interval": {
                        "start_date_time": "2024-02-29T23:00:00-08:00",
                        "end_date_time": "2024-03-01T06:30:00-08:00",
                    }
                },
            },
        ),
        _omh(13, "physical-activity", "1.2", {"activity_name": "walking", "effective_time_frame": at}),
    ]
    t = "2024-03-01T08:00:00-08:00"
    expected = [
        Expected("8867-4", t, 66, "/min", profile=VS + "heartrate"),
        Expected("9279-1", t, 14, "/min", profile=VS + "resprate"),
        Expected("2708-6", t, 97, "%", profile=VS + "oxygensat"),
        Expected("8310-5", t, 37.1, "Cel", profile=VS + "bodytemp"),
        Expected("8302-2", t, 170, "cm", profile=VS + "bodyheight"),
        Expected("29463-7", t, 150, "[lb_av]", profile=VS + "bodyweight"),
        Expected("39156-5", t, 21.5, "kg/m2", profile=VS + "bmi"),
        Expected(
            "85354-9", t, components=(("8480-6", 125, "mm[Hg]"), ("8462-4", 82, "mm[Hg]")), profile=VS + "bp"
        ),
        Expected("55423-8", t, 2500, "{steps}", end="2024-03-01T09:00:00-08:00", category="activity"),
        Expected(
            "55423-8",
            "2024-03-01T10:00:00-08:00",
            300,
            "{steps}",
            end="2024-03-01T10:15:00-08:00",
            category="activity",
        ),
        Expected("2339-0", t, 104, "mg/dL", category="laboratory"),
        Expected(
            "93832-4",
            "2024-02-29T23:00:00-08:00",
            7.5,
            "h",
            end="2024-03-01T06:30:00-08:00",
            category="activity",
        ),
    ]
    return points, expected


# --- CSV ----------------------------------------------------------------------------------------


def long_csv() -> tuple[str, list[Expected]]:
    """A long CSV (one row per measurement) covering every measure, and what it must become."""
    text = (
        "date,metric,value,unit\n"
        "2024-03-01T08:00:00+01:00,heart_rate,72,/min\n"
        "2024-03-01T08:00:00+01:00,respiratory_rate,16,/min\n"
        "2024-03-01T08:00:00+01:00,oxygen_saturation,97,%\n"
        "2024-03-01T08:00:00+01:00,body_temperature,36.9,Cel\n"
        "2024-03-01T08:00:00+01:00,body_height,180,cm\n"
        "2024-03-01T08:00:00+01:00,body_weight,80.2,kg\n"
        "2024-03-01T08:00:00+01:00,bmi,24.8,kg/m2\n"
        "2024-03-01T08:00:00+01:00,blood_pressure,121/79,mm[Hg]\n"
        "2024-03-01,steps,9001,{steps}\n"
        "2024-03-01T08:00:00+01:00/2024-03-01T09:00:00+01:00,steps_interval,700,{steps}\n"
        "2024-03-01T08:00:00+01:00,blood_glucose,101,mg/dL\n"
        "2024-03-01T08:00:00+01:00,blood_glucose_molar,5.6,mmol/L\n"
        "2024-03-01,hba1c,5.4,%\n"
        "2024-02-29T23:00:00+01:00/2024-03-01T06:00:00+01:00,sleep_duration,7,h\n"
    )
    t = "2024-03-01T08:00:00+01:00"
    expected = [
        Expected("8867-4", t, 72, "/min", profile=VS + "heartrate"),
        Expected("9279-1", t, 16, "/min", profile=VS + "resprate"),
        Expected("2708-6", t, 97, "%", profile=VS + "oxygensat"),
        Expected("8310-5", t, 36.9, "Cel", profile=VS + "bodytemp"),
        Expected("8302-2", t, 180, "cm", profile=VS + "bodyheight"),
        Expected("29463-7", t, 80.2, "kg", profile=VS + "bodyweight"),
        Expected("39156-5", t, 24.8, "kg/m2", profile=VS + "bmi"),
        Expected(
            "85354-9", t, components=(("8480-6", 121, "mm[Hg]"), ("8462-4", 79, "mm[Hg]")), profile=VS + "bp"
        ),
        Expected("41950-7", "2024-03-01", 9001, "{steps}", category="activity"),
        Expected("55423-8", t, 700, "{steps}", end="2024-03-01T09:00:00+01:00", category="activity"),
        Expected("2339-0", t, 101, "mg/dL", category="laboratory"),
        Expected("15074-8", t, 5.6, "mmol/L", category="laboratory"),
        Expected("4548-4", "2024-03-01", 5.4, "%", category="laboratory"),
        Expected(
            "93832-4",
            "2024-02-29T23:00:00+01:00",
            7,
            "h",
            end="2024-03-01T06:00:00+01:00",
            category="activity",
        ),
    ]
    return text, expected


def wide_csv() -> tuple[str, list[Expected]]:
    """A wide CSV (one column per measure, units in headers), and what it must become."""
    text = (
        "date,heart_rate,body_weight (lb),body_temperature ([degF]),blood_pressure\n"
        "2024-03-01T08:00:00-05:00,70,160.5,98.2,118/77\n"
        "2024-03-02T08:00:00-05:00,,161,,\n"
    )
    t1, t2 = "2024-03-01T08:00:00-05:00", "2024-03-02T08:00:00-05:00"
    expected = [
        Expected("8867-4", t1, 70, "/min", profile=VS + "heartrate"),
        Expected("29463-7", t1, 160.5, "[lb_av]", profile=VS + "bodyweight"),
        Expected("8310-5", t1, 98.2, "[degF]", profile=VS + "bodytemp"),
        Expected(
            "85354-9", t1, components=(("8480-6", 118, "mm[Hg]"), ("8462-4", 77, "mm[Hg]")), profile=VS + "bp"
        ),
        Expected("29463-7", t2, 161, "[lb_av]", profile=VS + "bodyweight"),
    ]
    return text, expected


def bad_long_csv() -> tuple[str, dict[int, str]]:
    """A long CSV with good rows and one bad row per kind; returns {line: word in the problem}."""
    text = (
        "date,metric,value,unit\n"
        "2024-03-01T08:00:00Z,heart_rate,72,/min\n"  # line 2 good
        "2024-13-45T08:00:00Z,heart_rate,73,/min\n"  # line 3 bad date
        "2024-03-01T08:01:00Z,heart_rate,74,/min\n"  # line 4 good
        "2024-03-01T08:02:00Z,blood_unicorns,75,/min\n"  # line 5 unknown metric
        "2024-03-01T08:03:00Z,heart_rate,seventy,/min\n"  # line 6 non-numeric
        "2024-03-01T08:04:00Z,heart_rate,76,parsecs\n"  # line 7 unknown unit
        "2024-03-01T08:05:00Z,body_weight,70,/min\n"  # line 8 unit of the wrong kind
        "2024-03-01T08:06:00,heart_rate,77,/min\n"  # line 9 time without zone
        "2024-03-01T08:07:00Z,body_weight,70.1,kg\n"  # line 10 good
    )
    return text, {3: "date", 5: "metric", 6: "non-numeric", 7: "unit", 8: "unit", 9: "zone"}


def write(path: Path, content: str | bytes | Any) -> Path:
    """Write text, bytes, or JSON (anything else) to ``path``."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content, indent=1), encoding="utf-8")
    return path


def zip_bytes(members: dict[str, str]) -> bytes:
    """A zip archive in memory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buf.getvalue()
