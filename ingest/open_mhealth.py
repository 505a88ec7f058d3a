"""Open mHealth data points (header + body) -> samples (https://www.openmhealth.org/documentation/#/schema-docs/schema-library)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ingest.device import DeviceInfo
from ingest.observation import Component, Sample
from ingest.pipeline import ReadContext

SOURCE = "open-mhealth"

# schema name -> (measure key, body property holding the value)
SCHEMAS: dict[str, tuple[str, str]] = {
    "heart-rate": ("heart_rate", "heart_rate"),
    "respiratory-rate": ("respiratory_rate", "respiratory_rate"),
    "oxygen-saturation": ("oxygen_saturation", "oxygen_saturation"),
    "body-temperature": ("body_temperature", "body_temperature"),
    "body-height": ("body_height", "body_height"),
    "body-weight": ("body_weight", "body_weight"),
    "body-mass-index": ("bmi", "body_mass_index"),
    "step-count": ("steps_interval", "step_count"),
    "blood-glucose": ("blood_glucose", "blood_glucose"),
    "sleep-duration": ("sleep_duration", "sleep_duration"),
}
# Open mHealth unit spellings that differ from UCUM (temperature-unit-value: K, F, C; duration units).
OMH_UNITS: dict[str, str] = {
    "C": "Cel",
    "F": "[degF]",
    "K": "K",
    "beats/min": "/min",
    "breaths/min": "/min",
    "kg/m^2": "kg/m2",
    "kg/m2": "kg/m2",
    "steps": "{steps}",
    "sec": "s",
    "d": "d",
    "wk": "wk",
    "Mo": "mo",
    "yr": "a",
}
_DURATION_SECONDS = {
    "ps": 1e-12,
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "sec": 1,
    "s": 1,
    "min": 60,
    "h": 3600,
    "d": 86400,
}


class OpenMHealthAdapter:
    """Reads a JSON array of data points, one data point, ``{"data_points": [...]}``, or NDJSON lines.

    The schema is ``header.schema_id.name`` (``heart-rate``, ``blood-pressure``...); the Device is
    ``header.acquisition_provenance.source_name``.
    """

    name = SOURCE

    def read(self, path: Path, ctx: ReadContext) -> Iterator[Sample]:
        points = _load(path, ctx)
        if points is None:
            return
        if not points:
            ctx.problem("$", "no Open mHealth data points found", "fatal")
            return
        if not any(isinstance(p, dict) and "header" in p and "body" in p for _, p in points):
            ctx.problem("$", "no Open mHealth data points (header + body) found: wrong format?", "fatal")
            return
        for where, point in points:
            ctx.counts["records"] += 1
            if not isinstance(point, dict) or not isinstance(point.get("body"), dict):
                ctx.problem(where, "not an Open mHealth data point (no body)")
                ctx.counts["rejected"] += 1
                continue
            try:
                sample = _sample(point, where, ctx)
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                # OverflowError: a duration beyond datetime's years, or infinite (1e400 in JSON)
                ctx.problem(where, f"malformed data point: {exc!r}")
                ctx.counts["rejected"] += 1
                continue
            if sample is not None:
                yield sample


def _load(path: Path, ctx: ReadContext) -> list[tuple[str, Any]] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        ctx.problem("", f"not JSON text: {exc}", "fatal")
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) > 1 and lines[0].lstrip().startswith("{"):
            out: list[tuple[str, Any]] = []
            for n, ln in enumerate(text.splitlines(), 1):
                if not ln.strip():
                    continue
                try:
                    out.append((f"line {n}", json.loads(ln)))
                except json.JSONDecodeError as e:
                    ctx.problem(n, f"not JSON: {e.msg} at column {e.colno}")
                    ctx.counts["rejected"] += 1
            return out
        ctx.problem(exc.lineno, f"not JSON: {exc.msg} at column {exc.colno}", "fatal")
        return None
    if isinstance(doc, dict) and isinstance(doc.get("data_points"), list):
        return [(f"$.data_points[{i}]", p) for i, p in enumerate(doc["data_points"])]
    if isinstance(doc, list):
        return [(f"$[{i}]", p) for i, p in enumerate(doc)]
    return [("$", doc)]


def _schema_name(point: Mapping[str, Any]) -> str:
    schema = (point.get("header") or {}).get("schema_id") or {}
    return str(schema.get("name", ""))


def _device(point: Mapping[str, Any]) -> DeviceInfo | None:
    prov = (point.get("header") or {}).get("acquisition_provenance") or {}
    name = prov.get("source_name")
    if not name:
        return None
    if prov.get("modality") == "self-reported":
        return DeviceInfo(SOURCE, str(name), kind="app")
    return DeviceInfo(SOURCE, str(name))


def _times(frame: Mapping[str, Any]) -> tuple[str, str | None]:
    if "date_time" in frame:
        return str(frame["date_time"]), None
    interval = frame["time_interval"]
    start, end = interval.get("start_date_time"), interval.get("end_date_time")
    duration = interval.get("duration")
    if start and end:
        return str(start), str(end)
    if duration and (start or end):
        secs = float(duration["value"]) * _DURATION_SECONDS[str(duration["unit"])]
        if start:
            return str(start), (datetime.fromisoformat(str(start)) + timedelta(seconds=secs)).isoformat()
        return (datetime.fromisoformat(str(end)) - timedelta(seconds=secs)).isoformat(), str(end)
    raise ValueError("time_interval needs start and end, or one of them and a duration")


def _unit_value(obj: Any) -> tuple[Any, str | None]:
    if isinstance(obj, dict):
        unit = obj.get("unit")
        return obj["value"], OMH_UNITS.get(str(unit), str(unit)) if unit is not None else None
    return obj, None


def _sample(point: Mapping[str, Any], where: str, ctx: ReadContext) -> Sample | None:
    name = _schema_name(point)
    body = point["body"]
    if name == "blood-pressure":
        start, end = _times(body["effective_time_frame"])
        sv, su = _unit_value(body["systolic_blood_pressure"])
        dv, du = _unit_value(body["diastolic_blood_pressure"])
        comps = (Component("systolic_bp", sv, su), Component("diastolic_bp", dv, du))
        return Sample("blood_pressure", start, None, None, end, comps, _device(point), None, where)
    spec = SCHEMAS.get(name)
    if spec is None:
        ctx.skip(name or "unnamed schema")
        return None
    metric, prop = spec
    value, unit = _unit_value(body[prop])
    if metric == "steps_interval" and unit is None:
        unit = "{steps}"
    start, end = _times(body["effective_time_frame"])
    return Sample(metric, start, value, unit, end, (), _device(point), None, f"{where}.body.{prop}")


ADAPTER = OpenMHealthAdapter()
