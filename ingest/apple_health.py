"""Apple Health export (export.xml or the export zip), streamed (https://developer.apple.com/documentation/healthkit/hkquantitytypeidentifier)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import IO

from ingest import units
from ingest.device import DeviceInfo
from ingest.observation import Component, Sample
from ingest.pipeline import ReadContext

SOURCE = "apple-health"

# HKQuantityTypeIdentifier... -> measure key. Values come in the record's own unit.
QUANTITY_TYPES: dict[str, str] = {
    "HKQuantityTypeIdentifierHeartRate": "heart_rate",
    "HKQuantityTypeIdentifierRespiratoryRate": "respiratory_rate",
    "HKQuantityTypeIdentifierOxygenSaturation": "oxygen_saturation",
    "HKQuantityTypeIdentifierBodyTemperature": "body_temperature",
    "HKQuantityTypeIdentifierHeight": "body_height",
    "HKQuantityTypeIdentifierBodyMass": "body_weight",
    "HKQuantityTypeIdentifierBodyMassIndex": "bmi",
    "HKQuantityTypeIdentifierStepCount": "steps_interval",
    "HKQuantityTypeIdentifierBloodGlucose": "blood_glucose",
}
# HealthKit writes percentages as fractions (0.97 with unit "%").
FRACTION_TYPES = frozenset({"HKQuantityTypeIdentifierOxygenSaturation"})
BP_CORRELATION = "HKCorrelationTypeIdentifierBloodPressure"
BP_PARTS: dict[str, str] = {
    "HKQuantityTypeIdentifierBloodPressureSystolic": "systolic_bp",
    "HKQuantityTypeIdentifierBloodPressureDiastolic": "diastolic_bp",
}
SLEEP_TYPE = "HKCategoryTypeIdentifierSleepAnalysis"
# Sleep stages -> measure key; in-bed and awake intervals are not sleep and are skipped.
SLEEP_STAGES: dict[str, str | None] = {
    "HKCategoryValueSleepAnalysisAsleep": "sleep_duration",
    "HKCategoryValueSleepAnalysisAsleepUnspecified": "sleep_duration",
    "HKCategoryValueSleepAnalysisAsleepCore": "sleep_light",
    "HKCategoryValueSleepAnalysisAsleepDeep": "sleep_deep",
    "HKCategoryValueSleepAnalysisAsleepREM": "sleep_rem",
    "HKCategoryValueSleepAnalysisInBed": None,
    "HKCategoryValueSleepAnalysisAwake": None,
}

_DEVICE_FIELD = re.compile(r"(\w+):(.*?)(?=, \w+:|>$)")
_POINTER = re.compile(r"<HKDevice: 0x[0-9a-fA-F]+>")


def apple_datetime(text: str) -> str:
    """``2021-12-11 18:04:47 -0700`` -> ``2021-12-11T18:04:47-07:00`` (other text returned as is)."""
    if len(text) == 25 and text[10] == " " and text[19] == " ":
        return f"{text[:10]}T{text[11:19]}{text[20:23]}:{text[23:25]}"
    return text


class AppleHealthAdapter:
    """Streams ``export.xml`` (or ``apple_health_export/export.xml`` inside the export zip).

    Records are handled as their element ends and then cleared, so memory stays flat whatever
    the export's size.
    """

    name = SOURCE

    def read(self, path: Path, ctx: ReadContext) -> Iterator[Sample]:
        with ExitStack() as stack:
            if zipfile.is_zipfile(path):
                try:
                    zf = stack.enter_context(zipfile.ZipFile(path))
                    member = _export_member(zf)
                except zipfile.BadZipFile as exc:
                    ctx.problem("", f"unreadable zip: {exc}", "fatal")
                    return
                if member is None:
                    ctx.problem("", "zip has no export.xml: not an Apple Health export", "fatal")
                    return
                fh: IO[bytes] = stack.enter_context(zf.open(member))
            else:
                fh = stack.enter_context(path.open("rb"))
            yield from read_export(fh, ctx)


def _export_member(zf: zipfile.ZipFile) -> str | None:
    names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == "export.xml"]
    return min(names, key=len) if names else None


class _Devices:
    """DeviceInfo per (sourceName, sourceVersion, device attribute), cached (pointers stripped)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, str], DeviceInfo] = {}
        self._raw: dict[tuple[str, str, str], DeviceInfo] = {}  # by the attributes as written

    def get(self, source_name: str, source_version: str, device: str) -> DeviceInfo:
        raw = (source_name, source_version, device)
        hit = self._raw.get(raw)
        if hit is None:
            if len(self._raw) > 10_000:
                self._raw.clear()
            hit = self._raw[raw] = self._stripped(source_name, source_version, device)
        return hit

    def _stripped(self, source_name: str, source_version: str, device: str) -> DeviceInfo:
        device = _POINTER.sub("", device) if device else ""
        key = (source_name, source_version, device)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            hit = self._cache[key] = _device_info(source_name, source_version, device)
        return hit


def _device_info(source_name: str, source_version: str, device: str) -> DeviceInfo:
    fields = dict(_DEVICE_FIELD.findall(device)) if device else {}
    if not fields:
        return DeviceInfo(SOURCE, source_name or "Apple Health", software=source_version or None, kind="app")
    return DeviceInfo(
        SOURCE,
        source_name or fields.get("name", "Apple device"),
        manufacturer=fields.get("manufacturer"),
        model=fields.get("model") or fields.get("name"),
        hardware=fields.get("hardware"),
        software=fields.get("software") or source_version or None,
    )


# What the parser hands over: the root's tag as it starts, then each child of the root as it ends
# (its tag, its attributes, and for a Correlation the attributes of the Records inside it).
_Ended = tuple[str, dict[str, str], list[dict[str, str]] | None]
_CHUNK = 16 * 1024  # bytes fed to the parser at a time (as ElementTree.iterparse reads)


class _Target:
    """An ``XMLParser`` target that keeps only attributes: no Element tree is built."""

    __slots__ = ("attrs", "depth", "events", "nested")

    def __init__(self) -> None:
        self.depth = 0
        self.attrs: dict[str, str] = {}
        self.nested: list[dict[str, str]] | None = None
        self.events: list[str | _Ended] = []

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        depth = self.depth = self.depth + 1
        if depth == 2:
            self.attrs = attrib
            self.nested = [] if tag == "Correlation" else None
        elif depth > 2:
            if tag == "Record" and self.nested is not None:
                self.nested.append(attrib)
        else:
            self.events.append(tag)

    def end(self, tag: str) -> None:
        depth = self.depth = self.depth - 1
        if depth == 1:
            self.events.append((tag, self.attrs, self.nested))


_DECLARED_ENCODING = re.compile(rb"""^(?:\xef\xbb\xbf)?<\?xml[^>]*?\sencoding\s*=\s*["']([^"']*)["']""")


class _EncodingError(Exception):
    """The XML declaration names an encoding the parser cannot read."""

    def __init__(self, cause: Exception, head: bytes) -> None:
        m = _DECLARED_ENCODING.match(head)
        what = f"encoding {m.group(1).decode('ascii', 'replace')!r}" if m else "the encoding"
        super().__init__(f"{what} of the XML declaration cannot be read: {type(cause).__name__}: {cause}")


def _events(fh: IO[bytes]) -> Iterator[str | _Ended]:
    """The parse events of the stream, as ``ElementTree.iterparse`` would order them: those before a
    syntax error in a chunk come out first, then the :class:`ET.ParseError` (or, for an unusable
    encoding in the XML declaration, :class:`_EncodingError`) is raised."""
    target = _Target()
    parser = ET.XMLParser(target=target)
    events = target.events
    head = b""  # the start of the document, where the XML declaration is
    while True:
        data = fh.read(_CHUNK)
        if not data:
            break
        if not head:
            head = data
        error: ET.ParseError | _EncodingError | None = None
        try:
            parser.feed(data)
        except ET.ParseError as exc:
            error = exc
        except (LookupError, ValueError) as exc:  # UnicodeError is a ValueError
            # Only the codec of the XML declaration's encoding raises these (expat asks Python for
            # an encoding it does not know itself): unknown, not a text codec, multi-byte...
            error = _EncodingError(exc, head)
        ready = events[:]
        events.clear()
        yield from ready
        if error is not None:
            raise error
    try:
        parser.close()  # raises for a document cut short
    except (LookupError, ValueError) as exc:
        raise _EncodingError(exc, head) from exc
    yield from events


def read_export(fh: IO[bytes], ctx: ReadContext) -> Iterator[Sample]:
    """Samples from an export.xml byte stream; malformed XML ends the stream with a problem."""
    devices = _Devices()
    counts = ctx.counts
    ordinal: dict[str, int] = {}
    last = "HealthData"
    try:
        for event in _events(fh):
            if isinstance(event, str):  # the root starts
                if event != "HealthData":
                    ctx.problem(event, f"not an Apple Health export: root element <{event}>", "fatal")
                    return
                continue
            tag, attrs, nested = event
            n = ordinal[tag] = ordinal.get(tag, 0) + 1
            last = f"HealthData/{tag}[{n}]"
            if tag == "Record":
                counts["records"] += 1
                sample = _record(attrs, last, devices, ctx)
                if sample is not None:
                    yield sample
            elif tag == "Correlation":
                counts["records"] += 1
                sample = _correlation(attrs, nested or [], last, devices, ctx)
                if sample is not None:
                    yield sample
    except _EncodingError as exc:
        ctx.problem(1, f"unreadable XML: {exc}", "fatal")
    except ET.ParseError as exc:
        line, column = exc.position
        what = "truncated" if "no element found" in str(exc) else "malformed"
        after = f" after {last}" if ordinal else ""
        ctx.problem(line, f"{what} XML at column {column}{after}: {exc}", "fatal")


def _record(attrs: dict[str, str], path: str, devices: _Devices, ctx: ReadContext) -> Sample | None:
    get = attrs.get
    hk_type = get("type", "")
    metric = QUANTITY_TYPES.get(hk_type)
    if metric is None:
        if hk_type == SLEEP_TYPE:
            return _sleep(attrs, path, devices, ctx)
        if hk_type in BP_PARTS:
            # Exports repeat each correlation's parts as top-level records: the panel covers them.
            ctx.skip(hk_type)
        else:
            ctx.skip(hk_type or "Record")
        return None
    raw = get("value")
    if raw is None:
        ctx.problem(path, f"{hk_type} record has no value")
        ctx.counts["rejected"] += 1
        return None
    value: str | Decimal = raw
    if hk_type in FRACTION_TYPES:
        try:
            value = units.parse_number(raw) * 100
        except ValueError:
            ctx.problem(path, f"non-numeric value {raw!r} for {hk_type}")
            ctx.counts["rejected"] += 1
            return None
        except ArithmeticError:  # decimal.Overflow: beyond the decimal context's exponents
            ctx.problem(path, f"value {raw!r} for {hk_type} is out of range")
            ctx.counts["rejected"] += 1
            return None
    start_text, end_text = get("startDate", ""), get("endDate", "")
    start = apple_datetime(start_text)
    return Sample(
        metric,
        start,
        value,
        get("unit"),
        (start if end_text == start_text else apple_datetime(end_text)) or None,
        (),
        devices.get(get("sourceName", ""), get("sourceVersion", ""), get("device", "")),
        None,
        path,
    )


def _sleep(attrs: dict[str, str], path: str, devices: _Devices, ctx: ReadContext) -> Sample | None:
    get = attrs.get
    stage = get("value", "")
    if stage not in SLEEP_STAGES:
        ctx.problem(path, f"unknown sleep stage {stage!r}")
        ctx.counts["rejected"] += 1
        return None
    metric = SLEEP_STAGES[stage]
    if metric is None:
        ctx.skip(stage)
        return None
    start, end = apple_datetime(get("startDate", "")), apple_datetime(get("endDate", ""))
    try:
        begins, ends = datetime.fromisoformat(start), datetime.fromisoformat(end)
    except ValueError:
        ctx.problem(path, f"invalid sleep interval {get('startDate')!r} - {get('endDate')!r}")
        ctx.counts["rejected"] += 1
        return None
    if (begins.tzinfo is None) != (ends.tzinfo is None):
        # One end without a zone: it takes the run's default zone (as the Observation's times
        # will), or it is the problem the Observation would have.
        if ctx.default_tz is None:
            naive = get("startDate") if begins.tzinfo is None else get("endDate")
            ctx.problem(path, f"date/time {naive!r} has a time but no time zone (the other end has one)")
            ctx.counts["rejected"] += 1
            return None
        begins, ends = _zoned(begins, ctx.default_tz), _zoned(ends, ctx.default_tz)
    minutes = (ends - begins).total_seconds() / 60
    value = Decimal(repr(round(minutes, 3)))
    device = devices.get(get("sourceName", ""), get("sourceVersion", ""), get("device", ""))
    return Sample(metric, start, value, "min", end, (), device, None, path)


def _zoned(dt: datetime, tz: tzinfo) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=tz)


def _correlation(
    attrs: dict[str, str], records: list[dict[str, str]], path: str, devices: _Devices, ctx: ReadContext
) -> Sample | None:
    """A blood pressure panel from a Correlation's attributes and those of the Records inside it."""
    get = attrs.get
    if get("type") != BP_CORRELATION:
        ctx.skip(get("type") or "Correlation")
        return None
    parts: list[Component] = []
    device = get("device", "")
    for child in records:
        device = device or child.get("device", "")
        key = BP_PARTS.get(child.get("type", ""))
        if key is not None:
            parts.append(Component(key, child.get("value", ""), child.get("unit")))
    if len(parts) != 2:
        ctx.problem(path, f"blood pressure correlation has {len(parts)} of its 2 readings")
        ctx.counts["rejected"] += 1
        return None
    return Sample(
        "blood_pressure",
        apple_datetime(get("startDate", "")),
        None,
        None,
        apple_datetime(get("endDate", "")) or None,
        tuple(parts),
        devices.get(get("sourceName", ""), get("sourceVersion", ""), device),
        None,
        path,
    )


ADAPTER = AppleHealthAdapter()
