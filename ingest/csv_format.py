"""CSV measurements (long, wide, or a declared column mapping) <-> FHIR Observations (https://www.rfc-editor.org/rfc/rfc4180)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Literal

import jsonschema

from ingest import mapping, units
from ingest.device import DeviceInfo
from ingest.observation import Component, Sample
from ingest.pipeline import ReadContext

Layout = Literal["long", "wide"]

LONG_COLUMNS = ("date", "metric", "value", "unit")
_HEADER_UNIT = re.compile(r"^(?P<metric>.*?)\s*\((?P<unit>[^()]*(\([^()]*\))?[^()]*)\)\s*$")

# The declared column mapping (``options={"mapping": {...}}`` or ``{"mapping_file": path}``).
MAPPING_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "CSV column mapping for fhir-server ingest",
    "type": "object",
    "required": ["layout"],
    "additionalProperties": False,
    "properties": {
        "layout": {"enum": ["long", "wide"]},
        "delimiter": {"type": "string", "minLength": 1, "maxLength": 1},
        "timezone": {"type": "string", "pattern": r"^(Z|[+-](0\d|1[0-4]):[0-5]\d)$"},
        "date_format": {"type": "string", "minLength": 1},
        "date_column": {"type": "string", "minLength": 1},
        "end_column": {"type": "string", "minLength": 1},
        "patient_column": {"type": "string", "minLength": 1},
        "metric_column": {"type": "string", "minLength": 1},
        "value_column": {"type": "string", "minLength": 1},
        "unit_column": {"type": "string", "minLength": 1},
        "device": {"type": "string", "minLength": 1},
        "metrics": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
        "columns": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["metric"],
                "additionalProperties": False,
                "properties": {
                    "metric": {"type": "string", "minLength": 1},
                    "unit": {"type": "string"},
                },
            },
        },
    },
    "allOf": [
        {"if": {"properties": {"layout": {"const": "wide"}}}, "then": {"required": ["columns"]}},
        {
            "if": {"properties": {"layout": {"const": "long"}}},
            "then": {"not": {"required": ["columns"]}},
        },
    ],
}


class _Plan:
    """Where each field is in the header, after mapping and header parsing."""

    def __init__(self, layout: Layout) -> None:
        self.layout: Layout = layout
        self.date = -1
        self.end = -1
        self.patient = -1
        self.metric = -1
        self.value = -1
        self.unit = -1
        self.metric_names: dict[str, str] = {}
        self.columns: list[tuple[int, str, str | None, str]] = []  # index, metric, unit, header
        self.date_format: str | None = None
        self.tz: tzinfo | None = None
        self.device: DeviceInfo | None = None


class CsvAdapter:
    """Reads long (``date,metric,value,unit[,patient]``), wide (``date[,patient],<metric>[ (unit)]...``) CSV."""

    name = "csv"

    def read(self, path: Path, ctx: ReadContext) -> Iterator[Sample]:
        decl = _declared_mapping(ctx)
        if decl is False:
            return
        delimiter = (decl or {}).get("delimiter") or ("\t" if path.suffix.lower() == ".tsv" else ",")
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            yield from read_csv(fh, ctx, decl or None, delimiter)


def _declared_mapping(ctx: ReadContext) -> dict[str, Any] | Literal[False] | None:
    """The mapping from the options, validated; False (and a problem) when it is invalid."""
    decl = ctx.options.get("mapping")
    source = "mapping"
    if decl is None and ctx.options.get("mapping_file"):
        source = str(ctx.options["mapping_file"])
        try:
            decl = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            ctx.problem(source, f"cannot read the column mapping: {exc}", "fatal")
            return False
    if decl is None:
        return None
    errors = sorted(
        jsonschema.Draft202012Validator(MAPPING_SCHEMA).iter_errors(decl), key=lambda e: list(e.path)
    )
    if errors:
        for err in errors:
            where = "/".join(str(p) for p in err.absolute_path)
            ctx.problem(f"{source}:/{where}", f"invalid column mapping: {err.message}", "fatal")
        return False
    assert isinstance(decl, dict)
    return decl


def _offset(text: str) -> tzinfo:
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


def _plan(header: Sequence[str], decl: Mapping[str, Any] | None, ctx: ReadContext) -> _Plan | None:
    names = [h.strip() for h in header]
    folded = [h.casefold() for h in names]

    def find(col: str | None, default: str) -> int:
        want = (col or default).casefold()
        return folded.index(want) if want in folded else -1

    d = decl or {}
    layout: Layout
    if d:
        layout = d["layout"]
    elif "metric" in folded and "value" in folded:
        layout = "long"
    else:
        layout = "wide"
    plan = _Plan(layout)
    plan.date = find(d.get("date_column"), "date")
    plan.end = find(d.get("end_column"), "end")
    plan.patient = find(d.get("patient_column"), "patient")
    plan.date_format = d.get("date_format")
    if d.get("timezone"):
        plan.tz = _offset(d["timezone"])
    if d.get("device"):
        plan.device = DeviceInfo(source="csv", name=d["device"])
    if plan.date < 0:
        ctx.problem(
            1,
            f"not a measurement CSV: no {d.get('date_column', 'date')!r} column "
            "(expected long 'date,metric,value,unit[,patient]' or wide 'date,<metric>...')",
            "fatal",
        )
        return None
    if layout == "long":
        plan.metric = find(d.get("metric_column"), "metric")
        plan.value = find(d.get("value_column"), "value")
        plan.unit = find(d.get("unit_column"), "unit")
        plan.metric_names = {k.casefold(): v for k, v in d.get("metrics", {}).items()}
        if plan.metric < 0 or plan.value < 0:
            ctx.problem(1, "long CSV needs 'metric' and 'value' columns", "fatal")
            return None
        return plan
    used = {plan.date, plan.end, plan.patient}
    declared = {k.casefold(): v for k, v in d.get("columns", {}).items()}
    for i, h in enumerate(names):
        if i in used or not h:
            continue
        if d:
            spec = declared.get(h.casefold())
            if spec is None:
                ctx.problem(1, f"column {h!r} is not in the column mapping; ignored", "warning")
                continue
            metric, unit = spec["metric"], spec.get("unit")
        else:
            m = _HEADER_UNIT.match(h)
            metric, unit = (m.group("metric"), m.group("unit")) if m else (h, None)
        try:
            mapping.measure(metric)
        except mapping.UnknownMeasure:
            ctx.problem(1, f"column {h!r}: unknown metric {metric!r}; column ignored")
            continue
        plan.columns.append((i, metric, unit, h))
    for missing in set(declared) - set(folded):
        ctx.problem(1, f"mapped column {missing!r} is not in the header", "warning")
    if not plan.columns:
        ctx.problem(1, "wide CSV has no measure columns", "fatal")
        return None
    return plan


def read_csv(
    fh: Iterable[str], ctx: ReadContext, decl: Mapping[str, Any] | None = None, delimiter: str = ","
) -> Iterator[Sample]:
    """Samples from CSV text lines (any iterable of lines); problems go to ``ctx``."""
    reader = csv.reader(fh, delimiter=delimiter)
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as exc:
        ctx.problem(1, f"not a CSV text file: {exc}", "fatal")
        return
    if header is None:
        ctx.problem(1, "empty file", "fatal")
        return
    plan = _plan(header, decl, ctx)
    if plan is None:
        return
    if plan.tz is not None:
        ctx.default_tz = plan.tz
    width = len(header)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            ctx.problem(reader.line_num + 1, f"unreadable CSV: {exc}", "fatal")
            return
        line = reader.line_num
        if not any(c.strip() for c in row):
            continue
        ctx.counts["records"] += 1
        if len(row) > width:
            ctx.problem(line, f"{len(row)} cells but the header has {width}")
            ctx.counts["rejected"] += 1
            continue
        row = row + [""] * (width - len(row))
        try:
            start, end = _times(row[plan.date], row[plan.end] if plan.end >= 0 else "", plan)
        except ValueError as exc:
            ctx.problem(line, str(exc))
            ctx.counts["rejected"] += 1
            continue
        patient = _patient(row[plan.patient]) if plan.patient >= 0 else None
        if plan.layout == "long":
            metric = row[plan.metric].strip()
            metric = plan.metric_names.get(metric.casefold(), metric)
            unit = row[plan.unit].strip() if plan.unit >= 0 else ""
            yield _sample(metric, row[plan.value], unit or None, start, end, patient, line, plan.device)
        else:
            for i, col_metric, col_unit, _h in plan.columns:
                cell = row[i]
                if cell.strip():
                    yield _sample(col_metric, cell, col_unit, start, end, patient, line, plan.device)


def _times(cell: str, end_cell: str, plan: _Plan) -> tuple[str, str | None]:
    text = cell.strip()
    if not text:
        raise ValueError("missing date")
    start, _, end = text.partition("/") if "/" in text and plan.date_format is None else (text, "", "")
    end = end or end_cell.strip()
    if plan.date_format:
        start = _strptime(start, plan)
        end = _strptime(end, plan) if end else ""
    return start, end or None


def _strptime(text: str, plan: _Plan) -> str:
    assert plan.date_format is not None
    try:
        dt = datetime.strptime(text.strip(), plan.date_format)
    except ValueError as exc:
        raise ValueError(f"invalid date {text!r} for format {plan.date_format!r}") from exc
    if dt.tzinfo is None and plan.tz is not None:
        dt = dt.replace(tzinfo=plan.tz)
    return dt.isoformat()


def _patient(cell: str) -> str | None:
    text = cell.strip()
    if not text:
        return None
    return text if "/" in text else f"Patient/{text}"


def _sample(
    metric: str,
    value: str,
    unit: str | None,
    start: str,
    end: str | None,
    patient: str | None,
    line: int,
    device: DeviceInfo | None,
) -> Sample:
    try:
        m = mapping.measure(metric)
    except mapping.UnknownMeasure:
        m = None
    parts = [p.strip() for p in value.split("/")]
    if m is not None and m.components and len(parts) == len(m.components):
        comps = tuple(Component(key, v, unit) for key, v in zip(m.components, parts, strict=True))
        return Sample(metric, start, None, unit, end, comps, device, patient, line)
    return Sample(metric, start, value, unit, end, (), device, patient, line)


# --- export ---------------------------------------------------------------------------------


def _effective(obs: Mapping[str, Any]) -> str:
    if "effectiveDateTime" in obs:
        return str(obs["effectiveDateTime"])
    period = obs.get("effectivePeriod") or {}
    start, end = period.get("start", ""), period.get("end", "")
    return f"{start}/{end}" if end else str(start)


def _patient_cell(obs: Mapping[str, Any]) -> str:
    ref = str((obs.get("subject") or {}).get("reference", ""))
    return ref.removeprefix("Patient/")


def _row_of(obs: Mapping[str, Any]) -> tuple[str, str, str, str] | None:
    """(date, metric, value, unit) for an Observation this module can express, else None."""
    codings = (obs.get("code") or {}).get("coding") or []
    m = next(
        (hit for c in codings if (hit := mapping.measure_for_code(str(c.get("code", "")))) is not None), None
    )
    if m is None:
        return None
    if m.components:
        by_code = {}
        for comp in obs.get("component") or []:
            cm = next(
                (
                    h
                    for c in comp["code"].get("coding", [])
                    if (h := mapping.measure_for_code(c.get("code", "")))
                ),
                None,
            )
            if cm is not None and "valueQuantity" in comp:
                by_code[cm.key] = comp["valueQuantity"]
        qs = [by_code.get(k) for k in m.components]
        if any(q is None for q in qs):
            return None
        value = "/".join(units.format_number(q["value"]) for q in qs if q is not None)
        unit = str(qs[0]["code"]) if qs[0] is not None else m.unit
        return _effective(obs), m.key, value, unit
    q = obs.get("valueQuantity")
    if not q or "value" not in q:
        return None
    return _effective(obs), m.key, units.format_number(q["value"]), str(q.get("code", m.unit))


def export_csv(
    observations: Iterable[Mapping[str, Any]],
    layout: Layout = "long",
    *,
    include_patient: bool | None = None,
    delimiter: str = ",",
) -> str:
    """Observations back to CSV text in the layout the adapter reads (CSV -> FHIR -> CSV is lossless).

    Values are written as the shortest text that reads back as the same number, units as UCUM
    codes, metrics as measure keys, periods as ``start/end``; Observations whose code no measure
    knows are left out. ``include_patient=None`` adds the ``patient`` column only when the
    Observations have more than one subject.
    """
    rows: list[tuple[str, str, str, str, str]] = []
    for obs in observations:
        r = _row_of(obs)
        if r is not None:
            rows.append((*r, _patient_cell(obs)))
    with_patient = include_patient if include_patient is not None else len({r[4] for r in rows}) > 1
    out = io.StringIO()
    w = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    if layout == "long":
        w.writerow([*LONG_COLUMNS, *(["patient"] if with_patient else [])])
        for date, metric, value, unit, patient in rows:
            w.writerow([date, metric, value, unit, *([patient] if with_patient else [])])
        return out.getvalue()
    columns: dict[tuple[str, str], str] = {}
    table: dict[tuple[str, str], dict[str, str]] = {}
    for date, metric, value, unit, patient in rows:
        canonical = mapping.measure(metric).unit
        header = metric if unit == canonical else f"{metric} ({unit})"
        columns.setdefault((metric, unit), header)
        table.setdefault((date, patient if with_patient else ""), {})[header] = value
    w.writerow(["date", *(["patient"] if with_patient else []), *columns.values()])
    for (date, patient), cells in table.items():
        w.writerow(
            [date, *([patient] if with_patient else []), *(cells.get(h, "") for h in columns.values())]
        )
    return out.getvalue()


ADAPTER = CsvAdapter()
