"""Health Connect records as HCGateway delivers them (https://developer.android.com/reference/kotlin/androidx/health/connect/client/records/package-summary)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ingest.device import DeviceInfo
from ingest.observation import Component, Sample
from ingest.pipeline import ReadContext

SOURCE = "health-connect"

# SleepSessionRecord.STAGE_TYPE_* -> measure key (None: not sleep, skipped).
SLEEP_STAGES: dict[int, str | None] = {
    0: "sleep_duration",  # unknown
    1: None,  # awake
    2: "sleep_duration",  # sleeping
    3: None,  # out of bed
    4: "sleep_light",
    5: "sleep_deep",
    6: "sleep_rem",
    7: None,  # awake in bed
}


class HealthConnectAdapter:
    """Reads HCGateway ``/api/v2/fetch/<method>`` output.

    Accepted shapes: ``{"<method>": [record, ...], ...}`` (several methods), a bare list of records
    of one method (named by ``options["record_type"]`` or guessed from the data), or a list of
    records that carry ``recordType``. A record is ``{"_id"|"id", "app", "start", "end", "data"}``;
    ``data`` holds the Health Connect record fields (``samples``, ``count``, ``weight``...).
    """

    name = SOURCE

    def read(self, path: Path, ctx: ReadContext) -> Iterator[Sample]:
        doc = _load_json(path, ctx)
        if doc is None:
            return
        if isinstance(doc, dict) and not _looks_like_record(doc):
            groups = [(str(k), v) for k, v in doc.items()]
        elif isinstance(doc, list):
            groups = [(str(ctx.options.get("record_type", "")), doc)]
        else:
            groups = [(str(ctx.options.get("record_type", "")), [doc])]
        found = False
        for method, records in groups:
            if not isinstance(records, list):
                ctx.problem(f"$.{method}", "expected a list of HCGateway records")
                continue
            for i, rec in enumerate(records):
                where = f"$.{method}[{i}]" if isinstance(doc, dict) else f"$[{i}]"
                if not isinstance(rec, dict) or not isinstance(rec.get("data"), dict):
                    ctx.problem(where, "not an HCGateway record (no 'data' object)")
                    ctx.counts["rejected"] += 1
                    continue
                found = True
                ctx.counts["records"] += 1
                kind = _kind(method or str(rec.get("recordType", "")), rec["data"])
                handler = _HANDLERS.get(kind)
                if handler is None:
                    ctx.skip(kind or "unknown")
                    continue
                try:
                    yield from handler(rec, where, ctx)
                except (KeyError, TypeError, ValueError, OverflowError) as exc:
                    # OverflowError: a time moved out of datetime's years, int() of an infinity...
                    ctx.problem(where, f"malformed {kind} record: {exc!r}")
                    ctx.counts["rejected"] += 1
        if not found and not ctx.problems:
            ctx.problem("$", "no HCGateway records found: not a Health Connect payload", "fatal")


def _load_json(path: Path, ctx: ReadContext) -> Any:
    try:
        return json.loads(path.read_bytes())
    except UnicodeDecodeError as exc:
        ctx.problem("", f"not JSON text: {exc}", "fatal")
    except json.JSONDecodeError as exc:
        ctx.problem(exc.lineno, f"not JSON: {exc.msg} at column {exc.colno}", "fatal")
    return None


def _looks_like_record(doc: Mapping[str, Any]) -> bool:
    return "data" in doc and ("start" in doc or "app" in doc)


def _kind(method: str, data: Mapping[str, Any]) -> str:
    m = method.strip()
    if m:
        return m[0].lower() + m[1:]
    if "samples" in data:
        return "heartRate"
    if "stages" in data:
        return "sleepSession"
    if "systolic" in data:
        return "bloodPressure"
    for key, kind in (
        ("count", "steps"),
        ("weight", "weight"),
        ("height", "height"),
        ("percentage", "oxygenSaturation"),
        ("level", "bloodGlucose"),
        ("rate", "respiratoryRate"),
        ("temperature", "bodyTemperature"),
    ):
        if key in data:
            return kind
    return ""


def _device(rec: Mapping[str, Any]) -> DeviceInfo:
    meta_device = (rec.get("data", {}).get("metadata") or {}).get("device") or {}
    app = str(rec.get("app") or "unknown app")
    if meta_device.get("model") or meta_device.get("manufacturer"):
        return DeviceInfo(
            SOURCE,
            str(meta_device.get("model") or app),
            manufacturer=meta_device.get("manufacturer"),
            model=meta_device.get("model"),
        )
    return DeviceInfo(SOURCE, app, kind="app")


def _zoned(instant: str, offset: Any) -> str:
    """An instant shown in the record's zone offset (``+02:00``) when Health Connect gave one."""
    if not offset or not isinstance(offset, str):
        return instant
    try:
        dt = datetime.fromisoformat(instant)
        sign = -1 if offset.startswith("-") else 1
        hh, _, mm = offset.lstrip("+-").partition(":")
        tz = timezone(sign * timedelta(hours=int(hh), minutes=int(mm or 0)))
    except ValueError:
        return instant
    return dt.astimezone(tz).isoformat() if dt.tzinfo else instant


def _times(rec: Mapping[str, Any]) -> tuple[str, str | None]:
    data = rec["data"]
    start = _zoned(
        str(rec.get("start") or data.get("time") or data.get("startTime") or ""),
        data.get("zoneOffset") or data.get("startZoneOffset"),
    )
    end_raw = rec.get("end") or data.get("endTime")
    end = _zoned(str(end_raw), data.get("endZoneOffset") or data.get("zoneOffset")) if end_raw else None
    return start, end


def _first(obj: Mapping[str, Any], *keys: str) -> tuple[Any, str]:
    for k in keys:
        if obj.get(k) is not None:
            return obj[k], k
    raise KeyError(f"none of {', '.join(keys)}")


_UNIT_OF_KEY = {
    "inKilograms": "kg",
    "inGrams": "g",
    "inPounds": "[lb_av]",
    "inMeters": "m",
    "inInches": "[in_i]",
    "inFeet": "[ft_i]",
    "inCelsius": "Cel",
    "inFahrenheit": "[degF]",
    "inMillimetersOfMercury": "mm[Hg]",
    "inMillimolesPerLiter": "mmol/L",
    "inMilligramsPerDeciliter": "mg/dL",
}


def _measured(obj: Mapping[str, Any], *keys: str) -> tuple[Any, str]:
    value, key = _first(obj, *keys)
    return value, _UNIT_OF_KEY[key]


def _point(metric: str, value: Any, unit: str | None, rec: Mapping[str, Any], where: str) -> Sample:
    start, end = _times(rec)
    return Sample(metric, start, value, unit, end, (), _device(rec), None, where)


def _heart_rate(rec: Mapping[str, Any], where: str, ctx: ReadContext) -> Iterator[Sample]:
    device = _device(rec)
    offset = rec["data"].get("startZoneOffset")
    for j, s in enumerate(rec["data"].get("samples") or []):
        yield Sample(
            "heart_rate",
            _zoned(str(s.get("time", "")), offset),
            s.get("beatsPerMinute"),
            "/min",
            None,
            (),
            device,
            None,
            f"{where}.data.samples[{j}]",
        )


def _steps(rec: Mapping[str, Any], where: str, ctx: ReadContext) -> Iterator[Sample]:
    yield _point("steps_interval", rec["data"]["count"], "{steps}", rec, where)


def _weight(rec: Mapping[str, Any], where: str, ctx: ReadContext) -> Iterator[Sample]:
    value, unit = _measured(rec["data"]["weight"], "inKilograms", "inGrams", "inPounds")
    yield _point("body_weight", value, unit, rec, where)


def _height(rec: Mapping[str, Any], where: str, ctx: ReadContext) -> Iterator[Sample]:
    value, unit = _measured(rec["data"]["height"], "inMeters", "inInches", "inFeet")
    yield _point("body_height", value, unit, rec, where)


def _temperature(rec: Mapping[str, Any], where: str, ctx: ReadContext) -> Iterator[Sample]:
    value, unit = _measured(rec["data"]["temperature"], "inCelsius", "inFahrenheit")
    yield _point("body_temperature", value, unit, rec, where)


def _spo2(rec: Mapping[str, Any], where: str, ctx: ReadContext) -> Iterator[Sample]:
    pct = rec["data"]["percentage"]
    value = pct.get("value") if isinstance(pct, dict) else pct
    yield _point("oxygen_saturation", value, "%", rec, where)


def _respiratory_rate(rec: Mapping[str, Any], where: str, ctx: ReadContext) -> Iterator[Sample]:
    yield _point("respiratory_rate", rec["data"]["rate"], "/min", rec, where)


def _glucose(rec: Mapping[str, Any], where: str, ctx: ReadContext) -> Iterator[Sample]:
    value, unit = _measured(rec["data"]["level"], "inMillimolesPerLiter", "inMilligramsPerDeciliter")
    yield _point("blood_glucose", value, unit, rec, where)


def _blood_pressure(rec: Mapping[str, Any], where: str, ctx: ReadContext) -> Iterator[Sample]:
    data = rec["data"]
    sys_v, sys_u = _measured(data["systolic"], "inMillimetersOfMercury")
    dia_v, dia_u = _measured(data["diastolic"], "inMillimetersOfMercury")
    start, end = _times(rec)
    comps = (Component("systolic_bp", sys_v, sys_u), Component("diastolic_bp", dia_v, dia_u))
    yield Sample("blood_pressure", start, None, None, end, comps, _device(rec), None, where)


def _sleep(rec: Mapping[str, Any], where: str, ctx: ReadContext) -> Iterator[Sample]:
    data = rec["data"]
    device = _device(rec)
    start_off, end_off = data.get("startZoneOffset"), data.get("endZoneOffset")
    stages = data.get("stages") or []
    if not stages:
        start, end = _times(rec)
        if end is None:
            raise ValueError("sleep session without an end")
        yield Sample("sleep_duration", start, _minutes(start, end), "min", end, (), device, None, where)
        return
    for j, st in enumerate(stages):
        metric = SLEEP_STAGES.get(int(st.get("stage", 0)))
        if metric is None:
            ctx.skip(f"sleepStage:{st.get('stage')}")
            continue
        start = _zoned(str(st["startTime"]), start_off)
        end = _zoned(str(st["endTime"]), end_off or start_off)
        yield Sample(
            metric, start, _minutes(start, end), "min", end, (), device, None, f"{where}.data.stages[{j}]"
        )


def _minutes(start: str, end: str) -> float:
    begins, ends = datetime.fromisoformat(start), datetime.fromisoformat(end)
    if (begins.tzinfo is None) != (ends.tzinfo is None):
        raise ValueError(f"one of start {start!r} and end {end!r} has a time zone and the other none")
    return round((ends - begins).total_seconds() / 60, 3)


_HANDLERS: dict[str, Callable[[Mapping[str, Any], str, ReadContext], Iterator[Sample]]] = {
    "heartRate": _heart_rate,
    "steps": _steps,
    "weight": _weight,
    "height": _height,
    "bodyTemperature": _temperature,
    "oxygenSaturation": _spo2,
    "respiratoryRate": _respiratory_rate,
    "bloodGlucose": _glucose,
    "bloodPressure": _blood_pressure,
    "sleepSession": _sleep,
}

ADAPTER = HealthConnectAdapter()
