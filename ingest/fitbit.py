"""Fitbit Web API JSON (heart rate intraday, steps, weight, sleep, SpO2, breathing rate) (https://dev.fitbit.com/build/reference/web-api/)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

from ingest.device import DeviceInfo
from ingest.observation import Sample
from ingest.pipeline import ReadContext

SOURCE = "fitbit"
SLEEP_LEVELS: dict[str, str | None] = {
    "deep": "sleep_deep",
    "light": "sleep_light",
    "rem": "sleep_rem",
    "asleep": "sleep_duration",
    "restless": "sleep_duration",
    "wake": None,
    "awake": None,
}


class FitbitAdapter:
    """Reads one JSON document holding Fitbit Web API responses side by side.

    Recognised keys (each the endpoint's own response body): ``activities-heart`` and
    ``activities-heart-intraday`` (heart rate, 1min/1sec dataset); ``activities-steps`` and
    ``activities-steps-intraday``; ``weight`` (body weight log, with BMI); ``sleep`` (sleep log
    v1.2: whole sleep and stage levels); ``spo2`` (the SpO2 summary or intraday response, one
    object or a list); ``br`` (breathing rate summary); ``devices`` (``/devices.json``, names the
    Device). A list of such documents is read in turn. Fitbit times are local: the zone comes from
    ``options["timezone"]`` (``+01:00``) or the run's ``default_tz``; timed data without a zone is
    reported and dropped, daily values are kept. ``options["weight_unit"]`` is the unit of weight
    logs (default ``kg``; ``lb`` for en_US responses).
    """

    name = SOURCE

    def read(self, path: Path, ctx: ReadContext) -> Iterator[Sample]:
        try:
            doc = json.loads(path.read_bytes())
        except UnicodeDecodeError as exc:
            ctx.problem("", f"not JSON text: {exc}", "fatal")
            return
        except json.JSONDecodeError as exc:
            ctx.problem(exc.lineno, f"not JSON: {exc.msg} at column {exc.colno}", "fatal")
            return
        docs = doc if isinstance(doc, list) else [doc]
        tz = _tz(ctx)
        known = False
        for k, d in enumerate(docs):
            prefix = f"$[{k}]" if isinstance(doc, list) else "$"
            if not isinstance(d, dict):
                ctx.problem(prefix, "not a Fitbit response object")
                continue
            reader = _Reader(d, prefix, ctx, tz)
            if not any(key in d for key in _KEYS):
                ctx.problem(prefix, "no Fitbit Web API data (activities-heart, sleep, weight...) found", "fatal")
                continue
            known = True
            yield from reader.samples()
        if known and ctx.counts["needs_timezone"]:
            ctx.problem(
                "$",
                f"{ctx.counts['needs_timezone']} timed values dropped: Fitbit times are local; "
                "give a time zone (options['timezone'] or default_tz)",
            )


_KEYS = (
    "activities-heart",
    "activities-heart-intraday",
    "activities-steps",
    "activities-steps-intraday",
    "weight",
    "sleep",
    "spo2",
    "br",
)


def _tz(ctx: ReadContext) -> tzinfo | None:
    text = ctx.options.get("timezone")
    if isinstance(text, str) and text:
        if text == "Z":
            return timezone.utc
        sign = -1 if text.startswith("-") else 1
        hh, _, mm = text.lstrip("+-").partition(":")
        return timezone(sign * timedelta(hours=int(hh), minutes=int(mm or 0)))
    return ctx.default_tz


class _Reader:
    def __init__(self, doc: Mapping[str, Any], prefix: str, ctx: ReadContext, tz: tzinfo | None) -> None:
        self.doc, self.prefix, self.ctx, self.tz = doc, prefix, ctx, tz
        self.device = _device(doc.get("devices"))

    def local(self, text: str) -> str | None:
        """Local ``2024-01-01T08:00:00(.000)`` -> zoned ISO text, or None (counted) without a zone."""
        if self.tz is None:
            self.ctx.counts["needs_timezone"] += 1
            return None
        dt = datetime.fromisoformat(text)
        return dt.replace(tzinfo=self.tz, microsecond=0).isoformat() if dt.microsecond == 0 or True else ""

    def sample(self, metric: str, start: str, value: Any, unit: str | None, where: str, end: str | None = None) -> Sample:
        return Sample(metric, start, value, unit, end, (), self.device, None, where)

    def samples(self) -> Iterator[Sample]:
        for key, method in (
            ("activities-heart", self._heart_daily),
            ("activities-heart-intraday", self._heart_intraday),
            ("activities-steps", self._steps_daily),
            ("activities-steps-intraday", self._steps_intraday),
            ("weight", self._weight),
            ("sleep", self._sleep),
            ("spo2", self._spo2),
            ("br", self._br),
        ):
            if key in self.doc:
                try:
                    yield from method(self.doc[key], f"{self.prefix}['{key}']")
                except (AttributeError, KeyError, TypeError, ValueError) as exc:
                    self.ctx.problem(f"{self.prefix}['{key}']", f"malformed {key}: {exc!r}")
                    self.ctx.counts["rejected"] += 1

    def _count(self) -> None:
        self.ctx.counts["records"] += 1

    def _day(self) -> str | None:
        days = self.doc.get("activities-heart") or self.doc.get("activities-steps") or []
        return str(days[0]["dateTime"]) if days else None

    def _heart_daily(self, days: list[Any], where: str) -> Iterator[Sample]:
        for i, day in enumerate(days):
            resting = (day.get("value") or {}).get("restingHeartRate") if isinstance(day.get("value"), dict) else None
            self._count()
            if resting is not None:
                yield self.sample("resting_heart_rate", str(day["dateTime"]), resting, "/min", f"{where}[{i}]")

    def _heart_intraday(self, block: Mapping[str, Any], where: str) -> Iterator[Sample]:
        day = self._day()
        if day is None:
            raise ValueError("intraday data without the 'activities-heart' day it belongs to")
        for i, point in enumerate(block.get("dataset") or []):
            self._count()
            start = self.local(f"{day}T{point['time']}")
            if start is not None:
                yield self.sample("heart_rate", start, point["value"], "/min", f"{where}.dataset[{i}]")

    def _steps_daily(self, days: list[Any], where: str) -> Iterator[Sample]:
        for i, day in enumerate(days):
            self._count()
            yield self.sample("steps", str(day["dateTime"]), day["value"], "{steps}", f"{where}[{i}]")

    def _steps_intraday(self, block: Mapping[str, Any], where: str) -> Iterator[Sample]:
        day = self._day()
        if day is None:
            raise ValueError("intraday data without the 'activities-steps' day it belongs to")
        interval = timedelta(minutes=int(block.get("datasetInterval") or 1))
        if str(block.get("datasetType", "minute")).startswith("second"):
            interval = timedelta(seconds=int(block.get("datasetInterval") or 1))
        for i, point in enumerate(block.get("dataset") or []):
            self._count()
            if point["value"] in (0, "0"):
                self.ctx.skip("steps-intraday-zero")
                continue
            start = self.local(f"{day}T{point['time']}")
            if start is not None:
                end = (datetime.fromisoformat(start) + interval).isoformat()
                yield self.sample("steps_interval", start, point["value"], "{steps}", f"{where}.dataset[{i}]", end)

    def _weight(self, logs: list[Any], where: str) -> Iterator[Sample]:
        unit = str(self.ctx.options.get("weight_unit") or "kg")
        for i, log in enumerate(logs):
            self._count()
            when = self.local(f"{log['date']}T{log.get('time', '00:00:00')}") if "time" in log else str(log["date"])
            if when is None:
                continue
            if log.get("weight") is not None:
                yield self.sample("body_weight", when, log["weight"], unit, f"{where}[{i}].weight")
            if log.get("bmi") is not None:
                yield self.sample("bmi", when, log["bmi"], "kg/m2", f"{where}[{i}].bmi")

    def _sleep(self, logs: list[Any], where: str) -> Iterator[Sample]:
        for i, log in enumerate(logs):
            self._count()
            start, end = self.local(str(log["startTime"])), self.local(str(log["endTime"]))
            if start is None or end is None:
                continue
            yield self.sample("sleep_duration", start, log["minutesAsleep"], "min", f"{where}[{i}]", end)
            for j, seg in enumerate((log.get("levels") or {}).get("data") or []):
                metric = SLEEP_LEVELS.get(str(seg.get("level")))
                if metric is None or metric == "sleep_duration":
                    self.ctx.skip(f"sleep-level:{seg.get('level')}")
                    continue
                seg_start = self.local(str(seg["dateTime"]))
                if seg_start is None:
                    continue
                seconds = int(seg["seconds"])
                seg_end = (datetime.fromisoformat(seg_start) + timedelta(seconds=seconds)).isoformat()
                minutes = seconds / 60
                yield self.sample(
                    metric, seg_start, round(minutes, 3), "min", f"{where}[{i}].levels.data[{j}]", seg_end
                )

    def _spo2(self, body: Any, where: str) -> Iterator[Sample]:
        entries = body if isinstance(body, list) else [body]
        for i, entry in enumerate(entries):
            here = f"{where}[{i}]" if isinstance(body, list) else where
            if "minutes" in entry:
                for j, point in enumerate(entry["minutes"]):
                    self._count()
                    start = self.local(str(point["minute"]))
                    if start is not None:
                        yield self.sample("oxygen_saturation", start, point["value"], "%", f"{here}.minutes[{j}]")
            elif isinstance(entry.get("value"), dict) and "avg" in entry["value"]:
                self._count()
                yield self.sample("oxygen_saturation", str(entry["dateTime"]), entry["value"]["avg"], "%", here)

    def _br(self, days: list[Any], where: str) -> Iterator[Sample]:
        for i, day in enumerate(days):
            self._count()
            rate = day["value"]["breathingRate"]
            yield self.sample("respiratory_rate", str(day["dateTime"]), rate, "/min", f"{where}[{i}]")


def _device(devices: Any) -> DeviceInfo:
    if isinstance(devices, list):
        for d in devices:
            if isinstance(d, dict) and d.get("deviceVersion"):
                return DeviceInfo(SOURCE, f"Fitbit {d['deviceVersion']}", manufacturer="Fitbit", model=str(d["deviceVersion"]))
    return DeviceInfo(SOURCE, "Fitbit", manufacturer="Fitbit")


ADAPTER = FitbitAdapter()
