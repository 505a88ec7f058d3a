"""Fitbit Web API JSON (heart rate intraday, steps, weight, sleep, SpO2, breathing rate) (https://dev.fitbit.com/build/reference/web-api/)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
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
                ctx.problem(
                    prefix, "no Fitbit Web API data (activities-heart, sleep, weight...) found", "fatal"
                )
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
            return UTC
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
        return datetime.fromisoformat(text).replace(tzinfo=self.tz).isoformat()

    def sample(
        self, metric: str, start: str, value: Any, unit: str | None, where: str, end: str | None = None
    ) -> Sample:
        return Sample(metric, start, value, unit, end, (), self.device, None, where)

    def samples(self) -> Iterator[Sample]:
        """Every section's samples; a malformed entry is a problem at its path, the rest go on."""
        for key in _KEYS:
            if key not in self.doc:
                continue
            where = f"{self.prefix}['{key}']"
            try:
                items = list(self._items(key, self.doc[key], where))
            except _MALFORMED as exc:
                self.ctx.problem(where, f"malformed {key}: {exc!r}")
                self.ctx.counts["rejected"] += 1
                continue
            for here, produce, item in items:
                self.ctx.counts["records"] += 1
                try:
                    yield from produce(item, here)
                except _MALFORMED as exc:
                    self.ctx.problem(here, f"malformed {key} entry: {exc!r}")
                    self.ctx.counts["rejected"] += 1

    def _items(self, key: str, section: Any, where: str) -> Iterator[tuple[str, _Producer, Any]]:
        if key in ("activities-heart-intraday", "activities-steps-intraday"):
            day = self._day()
            if day is None:
                raise ValueError(f"{key} without the daily series naming its day")
            unit = "seconds" if str(section.get("datasetType", "minute")).startswith("second") else "minutes"
            interval = timedelta(**{unit: int(section.get("datasetInterval") or 1)})
            point_fn: _Producer = (
                self._heart_point if key == "activities-heart-intraday" else self._steps_point
            )
            for i, point in enumerate(section.get("dataset") or []):
                yield f"{where}.dataset[{i}]", point_fn, (day, interval, point)
            return
        if key == "spo2":
            entries = section if isinstance(section, list) else [section]
            for i, entry in enumerate(entries):
                here = f"{where}[{i}]" if isinstance(section, list) else where
                if "minutes" in entry:
                    for j, point in enumerate(entry["minutes"]):
                        yield f"{here}.minutes[{j}]", self._spo2_minute, point
                else:
                    yield here, self._spo2_day, entry
            return
        by_key: dict[str, _Producer] = {
            "activities-heart": self._heart_day,
            "activities-steps": self._steps_day,
            "weight": self._weight,
            "sleep": self._sleep,
            "br": self._br,
        }
        produce = by_key[key]
        for i, item in enumerate(section):
            yield f"{where}[{i}]", produce, item

    def _day(self) -> str | None:
        days = self.doc.get("activities-heart") or self.doc.get("activities-steps") or []
        return str(days[0]["dateTime"]) if days else None

    def _heart_day(self, day: Mapping[str, Any], here: str) -> Iterator[Sample]:
        value = day.get("value")
        resting = value.get("restingHeartRate") if isinstance(value, dict) else None
        if resting is not None:
            yield self.sample("resting_heart_rate", str(day["dateTime"]), resting, "/min", here)

    def _heart_point(self, item: tuple[str, timedelta, Mapping[str, Any]], here: str) -> Iterator[Sample]:
        day, _, point = item
        start = self.local(f"{day}T{point['time']}")
        if start is not None:
            yield self.sample("heart_rate", start, point["value"], "/min", here)

    def _steps_day(self, day: Mapping[str, Any], here: str) -> Iterator[Sample]:
        yield self.sample("steps", str(day["dateTime"]), day["value"], "{steps}", here)

    def _steps_point(self, item: tuple[str, timedelta, Mapping[str, Any]], here: str) -> Iterator[Sample]:
        day, interval, point = item
        if point["value"] in (0, "0"):
            self.ctx.skip("steps-intraday-zero")
            return
        start = self.local(f"{day}T{point['time']}")
        if start is not None:
            end = (datetime.fromisoformat(start) + interval).isoformat()
            yield self.sample("steps_interval", start, point["value"], "{steps}", here, end)

    def _weight(self, log: Mapping[str, Any], here: str) -> Iterator[Sample]:
        unit = str(self.ctx.options.get("weight_unit") or "kg")
        if log.get("weight") is None and log.get("bmi") is None:
            raise ValueError("weight log without weight or bmi")
        when = self.local(f"{log['date']}T{log['time']}") if "time" in log else str(log["date"])
        if when is None:
            return
        if log.get("weight") is not None:
            yield self.sample("body_weight", when, log["weight"], unit, f"{here}.weight")
        if log.get("bmi") is not None:
            yield self.sample("bmi", when, log["bmi"], "kg/m2", f"{here}.bmi")

    def _sleep(self, log: Mapping[str, Any], here: str) -> Iterator[Sample]:
        start, end = self.local(str(log["startTime"])), self.local(str(log["endTime"]))
        if start is None or end is None:
            return
        yield self.sample("sleep_duration", start, log["minutesAsleep"], "min", here, end)
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
            yield self.sample(
                metric, seg_start, round(seconds / 60, 3), "min", f"{here}.levels.data[{j}]", seg_end
            )

    def _spo2_minute(self, point: Mapping[str, Any], here: str) -> Iterator[Sample]:
        start = self.local(str(point["minute"]))
        if start is not None:
            yield self.sample("oxygen_saturation", start, point["value"], "%", here)

    def _spo2_day(self, entry: Mapping[str, Any], here: str) -> Iterator[Sample]:
        yield self.sample("oxygen_saturation", str(entry["dateTime"]), entry["value"]["avg"], "%", here)

    def _br(self, day: Mapping[str, Any], here: str) -> Iterator[Sample]:
        rate = day["value"]["breathingRate"]
        yield self.sample("respiratory_rate", str(day["dateTime"]), rate, "/min", here)


# OverflowError: a time moved past datetime's years, a timedelta or int() of an infinity...
_MALFORMED = (AttributeError, KeyError, TypeError, ValueError, OverflowError)
_Producer = Callable[[Any, str], Iterator[Sample]]


def _device(devices: Any) -> DeviceInfo:
    if isinstance(devices, list):
        for d in devices:
            if isinstance(d, dict) and d.get("deviceVersion"):
                return DeviceInfo(
                    SOURCE,
                    f"Fitbit {d['deviceVersion']}",
                    manufacturer="Fitbit",
                    model=str(d["deviceVersion"]),
                )
    return DeviceInfo(SOURCE, "Fitbit", manufacturer="Fitbit")


ADAPTER = FitbitAdapter()
