"""Observation/$lastn and Observation/$stats (with its series form) against a plain-Python oracle: issue 12, acceptance 2.

https://hl7.org/fhir/R4/observation-operations.html. Hypothesis makes Observations of one new patient
per example: heart rates, weights in mixed units (kg, g, [lb_av]: computed in UCUM canonical units),
blood pressure panels (statistics per component) and entered-in-error ones (left out of $stats),
at instants clustered around the DST changes of Europe/Berlin and America/New_York. The oracle
buckets with zoneinfo; the server in SQL, on SQLite and PostgreSQL (the `client` fixture).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from fhir_server.operations import calendar_buckets
from fhir_server.search import ucum
from fhir_server.search.observation_stats import HOUR
from fhir_server.store import observation_rollup
from tests import factories

LOINC = "http://loinc.org"
HEART, WEIGHT, PANEL, SYSTOLIC, DIASTOLIC = "8867-4", "29463-7", "85354-9", "8480-6", "8462-4"
# DST changes: Berlin 2024-03-31 and 2024-10-27, New York 2024-03-10 and 2024-11-03
ZONES = ["Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata"]
STATS = [
    "average",
    "maximum",
    "minimum",
    "count",
    "sum",
    "median",
    "std-dev",
    "variance",
    "20-percent",
    "80-percent",
]
# without a variance or a percentile the server takes its plain GROUP BY path (merging mixed units itself)
PLAIN = ["average", "maximum", "minimum", "count", "sum"]


DST_DAYS = [date(2024, 3, 31), date(2024, 10, 27), date(2024, 3, 10), date(2024, 11, 3)]


@st.composite
def instants(draw: st.DrawFn, zone: str = "Europe/Berlin") -> datetime:
    """Local times of `zone` within days of a DST change, mostly near midnight or the change itself
    (where buckets go wrong), either side of a repeated hour (fold)."""
    day = draw(st.sampled_from(DST_DAYS)) + timedelta(days=draw(st.integers(-2, 2)))
    hour = draw(st.sampled_from([0, 23, 1, 2, 3]) | st.integers(0, 23))
    local = datetime(day.year, day.month, day.day, hour, draw(st.integers(0, 59)), draw(st.integers(0, 59)))
    at = local.replace(tzinfo=ZoneInfo(zone), fold=draw(st.integers(0, 1)))
    return at.astimezone(UTC)


@st.composite
def observations(draw: st.DrawFn, zone: str = "Europe/Berlin") -> dict[str, Any]:
    kind = draw(st.sampled_from(["heart", "weight", "panel"]))
    value = st.integers(1, 400).map(float) | st.floats(0.5, 400, allow_nan=False).map(lambda v: round(v, 3))
    at = draw(instants(zone))
    obs = factories.observation(None, code=HEART, value=draw(value))
    obs["effectiveDateTime"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    obs["status"] = draw(st.sampled_from(["final", "final", "final", "entered-in-error"]))
    if kind == "weight":
        unit = draw(st.sampled_from(["kg", "g", "[lb_av]"]))
        obs["code"] = {"coding": [{"system": LOINC, "code": WEIGHT}]}
        obs["valueQuantity"] = {"value": draw(value), "system": "http://unitsofmeasure.org", "code": unit}
    elif kind == "panel":
        obs["code"] = {"coding": [{"system": LOINC, "code": PANEL}]}
        del obs["valueQuantity"]
        obs["component"] = [
            {
                "code": {"coding": [{"system": LOINC, "code": part}]},
                "valueQuantity": {
                    "value": draw(value),
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            }
            for part in (SYSTOLIC, DIASTOLIC)
        ]
    return obs


def _load(client: TestClient, obs: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """A new patient with these Observations; the Observations as stored (with ids)."""
    pid = client.post("/Patient", json=factories.patient()).json()["id"]
    for o in obs:
        o["subject"] = {"reference": f"Patient/{pid}"}
    if not obs:
        return pid, []
    done = client.post("/", json=factories.transaction(*[factories.post_entry(o) for o in obs]))
    assert done.status_code == 200, done.text[:400]
    ids = [e["response"]["location"].split("/")[1] for e in done.json()["entry"]]
    return pid, [o | {"id": i} for o, i in zip(obs, ids, strict=True)]


def _at(o: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(o["effectiveDateTime"].replace("Z", "+00:00"))


def _values(obs: list[dict[str, Any]]) -> list[tuple[str, str, float, datetime]]:
    """(code, unit, value, instant) of every quantity $stats uses, for the codes heart/weight/panel."""
    out = []
    for o in obs:
        if o["status"] == "entered-in-error":
            continue
        if "valueQuantity" in o:
            q = o["valueQuantity"]
            out.append((o["code"]["coding"][0]["code"], q["code"], q["value"], _at(o)))
        for c in o.get("component", []):
            q = c["valueQuantity"]
            out.append((c["code"]["coding"][0]["code"], q["code"], q["value"], _at(o)))
    return out


def _percentile(values: list[float], a: int, b: int) -> float:
    ordered = sorted(values)
    h = (len(ordered) - 1) * a / b
    low = math.floor(h)
    nxt = ordered[min(low + 1, len(ordered) - 1)]
    return ordered[low] + (h - low) * (nxt - ordered[low])


def _oracle_stats(values: list[float]) -> dict[str, float | None]:
    n = len(values)
    return {
        "average": statistics.fmean(values),
        "maximum": max(values),
        "minimum": min(values),
        "count": n,
        "sum": math.fsum(values),
        "median": _percentile(values, 1, 2),
        "variance": statistics.variance(values) if n > 1 else None,
        "std-dev": statistics.stdev(values) if n > 1 else None,
        "20-percent": _percentile(values, 1, 5),
        "80-percent": _percentile(values, 4, 5),
    }


def _groups(
    values: list[tuple[str, str, float, datetime]],
) -> dict[tuple[str, str], list[tuple[float, datetime]]]:
    """Per (code, unit): one unit as given, several units in UCUM canonical units."""
    units: dict[str, set[str]] = defaultdict(set)
    for code, unit, _, _ in values:
        units[code].add(unit)
    out: dict[tuple[str, str], list[tuple[float, datetime]]] = defaultdict(list)
    for code, unit, value, at in values:
        if len(units[code]) > 1:
            canon = ucum.to_canonical(value, unit)
            assert canon is not None
            out[(code, canon[1])].append((canon[0], at))
        else:
            out[(code, unit)].append((value, at))
    return out


def _bucket(at: datetime, interval: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    local = at.astimezone(tz)
    if interval == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)  # aware arithmetic in UTC below
    day = local.date()
    if interval == "week":
        day -= timedelta(days=day.weekday())
        after = day + timedelta(days=7)
    elif interval == "month":
        day = day.replace(day=1)
        after = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    else:
        after = day + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=tz), datetime(
        after.year, after.month, after.day, tzinfo=tz
    )


def _text(dt: datetime) -> str:
    """A bucket start as the server writes it: local time with its offset (Z for UTC)."""
    text = dt.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _served(answer: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, float]]:
    """(code, unit[, start, end]) -> statistic -> value, from the Parameters answer."""
    out: dict[tuple[Any, ...], dict[str, float]] = {}
    for p in answer.get("parameter", []):
        assert p["name"] == "statistics"
        obs = p["resource"]
        comps = {c["code"]["coding"][0]["code"]: c for c in obs["component"]}
        unit = next(
            (
                c["valueQuantity"]["code"]
                for c in comps.values()
                if "valueQuantity" in c and c["code"]["coding"][0]["code"] == "average"
            ),
            None,
        )
        key: tuple[Any, ...] = (obs["code"]["coding"][0]["code"], unit)
        if "effectivePeriod" in obs and "interval" in answer.get("_asked", {}):
            key += (obs["effectivePeriod"]["start"], _instant(obs["effectivePeriod"]["end"]))
        values = {}
        for name, c in comps.items():
            values[name] = c["valueInteger"] if "valueInteger" in c else c["valueQuantity"]["value"]
        assert key not in out
        out[key] = values
    return out


def _close(got: dict[str, float], want: dict[str, float | None], asked: list[str] = STATS) -> None:
    assert set(got) <= set(asked)
    for name, value in want.items():
        if name not in asked:
            continue
        if value is None:
            assert name not in got, name
        else:
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-6), name


def _ask(client: TestClient, pid: str, asked: list[str] = STATS, **more: str) -> dict[str, Any]:
    params = {
        "subject": f"Patient/{pid}",
        "code": f"{HEART},{WEIGHT},{PANEL}",
        "system": LOINC,
        "statistic": ",".join(asked),
        **more,
    }
    response = client.get("/Observation/$stats", params=params)
    assert response.status_code == 200, response.text[:500]
    return response.json() | {"_asked": more}


@settings(max_examples=25)
@given(obs=st.lists(observations(), max_size=14), asked=st.sampled_from([STATS, PLAIN]))
def test_stats_equal_the_oracle(client: TestClient, obs: list[dict[str, Any]], asked: list[str]) -> None:
    pid, stored = _load(client, obs)
    want = {
        (code, unit): _oracle_stats([v for v, _ in vs])
        for (code, unit), vs in _groups(_values(stored)).items()
    }
    got = _served(_ask(client, pid, asked))
    assert {k[:2] for k in got} == set(want)
    assert {k[0] for k in got} <= {HEART, WEIGHT, SYSTOLIC, DIASTOLIC}  # a panel gives its components
    for key, values in want.items():
        _close(got[key], values, asked)


@st.composite
def series_cases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], str, str, list[str]]:
    zone = draw(st.sampled_from(ZONES))
    local = zone if zone in ("Europe/Berlin", "America/New_York") else "Europe/Berlin"
    obs = draw(st.lists(observations(local), max_size=14))
    return (
        obs,
        draw(st.sampled_from(["hour", "day", "week", "month"])),
        zone,
        draw(st.sampled_from([STATS, PLAIN])),
    )


@settings(max_examples=40)
@given(case=series_cases())
def test_series_equal_the_oracle_across_dst(
    client: TestClient, case: tuple[list[dict[str, Any]], str, str, list[str]]
) -> None:
    obs, interval, zone, asked = case
    pid, stored = _load(client, obs)
    tz = ZoneInfo(zone)
    buckets: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for (code, unit), vs in _groups(_values(stored)).items():
        for value, at in vs:
            start, end = _bucket(at, interval, tz)
            if interval == "hour":
                end = start.astimezone(UTC) + timedelta(hours=1)
            buckets[(code, unit, _text(start), end.astimezone(UTC))].append(value)
    got = _served(_ask(client, pid, asked, interval=interval, timezone=zone))
    assert set(got) == set(buckets)
    for key, values in buckets.items():
        _close(got[key], _oracle_stats(values), asked)


def test_fall_back_hour_is_two_buckets_and_spring_forward_day_is_23_hours(client: TestClient) -> None:
    """Berlin 2024-10-27: 02:00-03:00 local happens twice (00:30Z and 01:30Z); 2024-03-31 has 23 hours."""
    made = []
    for stamp in (
        "2024-10-27T00:30:00Z",
        "2024-10-27T01:30:00Z",
        "2024-03-30T23:30:00Z",
        "2024-03-31T21:30:00Z",
    ):
        made.append(factories.observation(None, value=60, effectiveDateTime=stamp))
    pid, _ = _load(client, made)
    hours = _ask(client, pid, ["count"], interval="hour", timezone="Europe/Berlin")
    starts = [p["resource"]["effectivePeriod"]["start"] for p in hours["parameter"]]
    assert "2024-10-27T02:00:00+02:00" in starts and "2024-10-27T02:00:00+01:00" in starts
    days = _ask(client, pid, ["count"], interval="day", timezone="Europe/Berlin")
    periods = {p["resource"]["effectivePeriod"]["start"]: p["resource"] for p in days["parameter"]}
    spring = periods["2024-03-31T00:00:00+01:00"]
    assert spring["effectivePeriod"]["end"] == "2024-04-01T00:00:00+02:00"
    assert spring["component"][0]["valueInteger"] == 2  # 23:30Z on the 30th is 00:30 local on the 31st


def test_values_follow_updates_deletes_and_panels_found_twice(client: TestClient) -> None:
    """The value rows are index rows: an update to entered-in-error or a delete takes a value out; a
    panel found by two of its codings gives each component once."""
    panel = factories.observation(None, code=PANEL)
    panel["code"]["coding"].append({"system": "http://snomed.info/sct", "code": "75367002"})
    del panel["valueQuantity"]
    panel["component"] = [
        {
            "code": {"coding": [{"system": LOINC, "code": part}]},
            "valueQuantity": {"value": v, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        }
        for part, v in ((SYSTOLIC, 120), (DIASTOLIC, 80))
    ]
    made = [factories.observation(None, value=v) for v in (50, 60, 70)] + [panel]
    pid, stored = _load(client, made)
    assert client.put(
        f"/Observation/{stored[0]['id']}", json=stored[0] | {"status": "entered-in-error"}
    ).status_code in (200, 201)
    assert client.delete(f"/Observation/{stored[1]['id']}").status_code in (200, 204)
    params = {
        "subject": f"Patient/{pid}",
        "coding": [f"{LOINC}|{HEART}", f"{LOINC}|{PANEL}", "http://snomed.info/sct|75367002"],
        "statistic": "average,count",
    }
    got = _served(client.get("/Observation/$stats", params=params).json())
    assert got == {
        (HEART, "/min"): {"average": 70, "count": 1},
        (SYSTOLIC, "mm[Hg]"): {"average": 120, "count": 1},
        (DIASTOLIC, "mm[Hg]"): {"average": 80, "count": 1},
    }


def test_empty_results(client: TestClient) -> None:
    pid, _ = _load(client, [])
    assert _ask(client, pid) == {"resourceType": "Parameters", "parameter": [], "_asked": {}}
    assert _ask(client, pid, interval="day")["parameter"] == []
    response = client.get("/Observation/$lastn", params={"patient": pid})
    assert response.status_code == 200
    assert response.json().get("entry", []) == []
    assert response.json()["total"] == 0


def test_stats_inputs_and_sources(client: TestClient) -> None:
    made = [
        factories.observation(None, value=v, effectiveDateTime=f"2024-01-0{n + 1}T08:00:00Z")
        for n, v in enumerate((50, 60, 70))
    ]
    pid, stored = _load(client, made)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueUri": f"Patient/{pid}"},
            {"name": "coding", "valueCoding": {"system": LOINC, "code": HEART}},
            {"name": "statistic", "valueCode": "average"},
            {"name": "period", "valuePeriod": {"start": "2024-01-02", "end": "2024-01-03"}},
            {"name": "include", "valueBoolean": True},
            {"name": "limit", "valuePositiveInt": 1},
        ],
    }
    answer = client.post("/Observation/$stats", json=body).json()
    stats_ = [p for p in answer["parameter"] if p["name"] == "statistics"]
    sources = [p for p in answer["parameter"] if p["name"] == "source"]
    assert stats_[0]["resource"]["component"][0]["valueQuantity"]["value"] == 65
    assert stats_[0]["resource"]["effectivePeriod"]["start"].startswith("2024-01-02")
    assert len(sources) == 1 and sources[0]["resource"]["id"] in {o["id"] for o in stored}
    for bad in (
        {"code": HEART, "statistic": "average"},  # no subject
        {"subject": f"Patient/{pid}", "statistic": "average"},  # no code
        {"subject": f"Patient/{pid}", "code": HEART},  # no statistic
        {"subject": f"Patient/{pid}", "code": HEART, "statistic": "kurtosis"},
        {"subject": f"Patient/{pid}", "code": HEART, "statistic": "count", "interval": "fortnight"},
        {"subject": f"Patient/{pid}", "code": HEART, "statistic": "count", "timezone": "Mars/Olympus"},
        {"subject": f"Patient/{pid}", "code": HEART, "statistic": "count", "duration": "-1"},
        {"subject": f"Patient/{pid}", "code": HEART, "statistic": "count", "start": "2024-13"},
        {"subject": "http://elsewhere.example/Patient/1", "code": HEART, "statistic": "count"},
    ):
        response = client.get("/Observation/$stats", params=bad)
        assert response.status_code == 400, bad
        assert response.json()["resourceType"] == "OperationOutcome"


@settings(max_examples=25)
@given(
    obs=st.lists(observations(), max_size=12, unique_by=lambda o: o["effectiveDateTime"]),
    most=st.integers(1, 3),
)
def test_lastn_equals_the_oracle(client: TestClient, obs: list[dict[str, Any]], most: int) -> None:
    pid, stored = _load(client, obs)
    by_code: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in stored:
        by_code[o["code"]["coding"][0]["code"]].append(o)
    want = []
    for code in sorted(by_code):
        want += [o["id"] for o in sorted(by_code[code], key=_at, reverse=True)[:most]]
    response = client.get("/Observation/$lastn", params={"patient": pid, "max": str(most)})
    assert response.status_code == 200, response.text[:400]
    got = [e["resource"]["id"] for e in response.json().get("entry", [])]
    assert got == want


def test_lastn_ranks_per_subject_when_several_match(client: TestClient) -> None:
    """With two patients (a list, or a bare id that names a Patient and a Group), the latest per patient."""
    first, a = _load(client, [factories.observation(None, effectiveDateTime="2024-01-01T00:00:00Z")])
    second, b = _load(client, [factories.observation(None, effectiveDateTime="2023-01-01T00:00:00Z")])
    got = client.get("/Observation/$lastn", params={"patient": f"{first},{second}"}).json()
    assert {e["resource"]["id"] for e in got["entry"]} == {a[0]["id"], b[0]["id"]}
    got = client.get("/Observation/$lastn", params={"subject": f"Patient/{first}"}).json()
    assert [e["resource"]["id"] for e in got["entry"]] == [a[0]["id"]]


def test_lastn_filters_and_needs_a_patient(client: TestClient) -> None:
    pid, stored = _load(
        client,
        [
            factories.observation(None, code=HEART, effectiveDateTime="2024-01-01T00:00:00Z"),
            factories.observation(None, code=HEART, effectiveDateTime="2024-02-01T00:00:00Z"),
            factories.observation(None, code=WEIGHT, effectiveDateTime="2024-01-15T00:00:00Z"),
        ],
    )
    _load(client, [factories.observation(None, code=HEART, effectiveDateTime="2025-01-01T00:00:00Z")])
    got = client.get("/Observation/$lastn", params={"patient": pid, "code": f"{LOINC}|{HEART}"}).json()
    assert [e["resource"]["id"] for e in got["entry"]] == [stored[1]["id"]]
    got = client.get(
        "/Observation/$lastn", params={"subject": f"Patient/{pid}", "date": "lt2024-01-20"}
    ).json()
    assert {e["resource"]["id"] for e in got["entry"]} == {stored[0]["id"], stored[2]["id"]}
    assert client.get("/Observation/$lastn", params={"code": HEART}).status_code == 400
    assert client.get("/Observation/$lastn", params={"patient": pid, "max": "0"}).status_code == 400
    assert (
        client.get("/Observation/$lastn", params={"patient": pid, "max": "1" + "0" * 30}).status_code == 400
    )
    assert client.get("/Observation/$lastn", params={"patient": pid, "bogus": "1"}).status_code == 400


def test_zone_offsets_are_exact_and_give_the_widest_granule() -> None:
    """The series sums values per granule first: no offset change nor bucket boundary may fall inside one."""
    year = (1_704_067_200_000_000, 1_735_689_599_000_000)  # 2024 in µs
    berlin = calendar_buckets.offsets(ZoneInfo("Europe/Berlin"), *year)
    assert berlin.changes == (1_711_846_800_000_000, 1_729_990_800_000_000)  # 01:00Z exactly
    assert berlin.granule() == HOUR
    assert calendar_buckets.offsets(ZoneInfo("Asia/Kolkata"), *year).granule() == HOUR // 2
    assert calendar_buckets.offsets(ZoneInfo("Asia/Kathmandu"), *year).granule() == HOUR // 4


@st.composite
def edited_series(draw: st.DrawFn) -> dict[str, Any]:
    """Observations, then per Observation an edit (none, a new value, a new instant, another unit,
    entered-in-error, a delete), then a series of ONE code (the slots of observation_value_rollup)
    over an optional period whose ends fall inside 15-minute slots."""
    zone = draw(st.sampled_from([*ZONES, "Asia/Kathmandu"]))
    local = zone if zone in ("Europe/Berlin", "America/New_York") else "Europe/Berlin"
    obs = draw(st.lists(observations(local), min_size=1, max_size=10))
    edits = draw(
        st.lists(
            st.sampled_from(["keep", "value", "instant", "unit", "error", "delete"]),
            min_size=len(obs),
            max_size=len(obs),
        )
    )
    period: dict[str, str] = {}
    if draw(st.booleans()):
        low, high = sorted([draw(instants(local)), draw(instants(local))])
        period = {"start": low.strftime("%Y-%m-%dT%H:%M:%SZ"), "end": high.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {
        "obs": obs,
        "edits": edits,
        "values": draw(st.lists(st.integers(1, 400).map(float), min_size=len(obs), max_size=len(obs))),
        "moves": draw(st.lists(instants(local), min_size=len(obs), max_size=len(obs))),
        "code": draw(st.sampled_from([HEART, WEIGHT, PANEL, SYSTOLIC])),
        "interval": draw(st.sampled_from(["hour", "day", "week", "month"])),
        "zone": zone,
        "period": period,
    }


def _edit(
    client: TestClient, o: dict[str, Any], edit: str, value: float, moved: datetime
) -> dict[str, Any] | None:
    """Apply one edit through the REST API; the Observation as it now is (None: deleted)."""
    if edit == "keep":
        return o
    if edit == "delete":
        assert client.delete(f"/Observation/{o['id']}").status_code in (200, 204)
        return None
    new = {k: v for k, v in o.items() if k != "meta"}
    quantities = (
        [new["valueQuantity"]] if "valueQuantity" in new else [c["valueQuantity"] for c in new["component"]]
    )
    if edit == "value":
        for q in quantities:
            q["value"] = value
    elif edit == "instant":
        new["effectiveDateTime"] = moved.strftime("%Y-%m-%dT%H:%M:%SZ")
    elif edit == "unit":
        for q in quantities:
            q["code"] = {"kg": "g", "g": "[lb_av]", "[lb_av]": "kg"}.get(q["code"], q["code"])
    else:
        new["status"] = "entered-in-error"
    done = client.put(f"/Observation/{o['id']}", json=new)
    assert done.status_code == 200, done.text[:400]
    return new


def _rollup_equals_a_rebuild(store: Any) -> None:
    """Every slot of observation_value_rollup (count > 0) equals one GROUP BY of the value rows now."""
    keys = ", ".join(observation_rollup.KEYS)
    measures = ", ".join(observation_rollup.MEASURES)
    with store.engine.connect() as conn:
        kept = conn.execute(
            text(f"SELECT {keys}, {measures} FROM observation_value_rollup WHERE count > 0")
        ).all()
        rebuilt = conn.execute(text(observation_rollup.GROUPED)).all()

    def norm(rows: Any) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        return {tuple(r[:9]): tuple(round(v, 6) if isinstance(v, float) else v for v in r[9:]) for r in rows}

    assert norm(kept) == norm(rebuilt)


@settings(max_examples=30, deadline=None)
@given(case=edited_series())
def test_series_of_one_code_follow_updates_and_deletes(
    client: TestClient, store: Any, case: dict[str, Any]
) -> None:
    """Issue 12, acceptance 5: the series of one code is summed from the 15-minute slots kept on write;
    after creates, updates (value, instant, unit, entered-in-error) and deletes it equals the oracle
    over what is stored now, on both databases, in every zone (Kathmandu: +5:45), with periods
    whose ends cut slots."""
    pid, stored = _load(client, case["obs"])
    now = []
    for o, edit, value, moved in zip(stored, case["edits"], case["values"], case["moves"], strict=True):
        kept = _edit(client, o, edit, value, moved)
        if kept is not None:
            now.append(kept)
    _rollup_equals_a_rebuild(store)
    code, period = case["code"], case["period"]
    wanted = {SYSTOLIC, DIASTOLIC} if code == PANEL else {code}
    low = _instant(period["start"]) if period else None
    high = _instant(period["end"]) + timedelta(seconds=1) if period else None
    values = [
        v
        for v in _values(now)
        if v[0] in wanted and (low is None or low <= v[3]) and (high is None or v[3] < high)
    ]
    tz = ZoneInfo(case["zone"])
    buckets: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for (c, unit), vs in _groups(values).items():
        for value, at in vs:
            start, end = _bucket(at, case["interval"], tz)
            if case["interval"] == "hour":
                end = start.astimezone(UTC) + timedelta(hours=1)
            buckets[(c, unit, _text(start), end.astimezone(UTC))].append(value)
    params = {
        "subject": f"Patient/{pid}",
        "coding": f"{LOINC}|{code}",
        "statistic": ",".join(PLAIN),
        "interval": case["interval"],
        "timezone": case["zone"],
        **period,
    }
    response = client.get("/Observation/$stats", params=params)
    assert response.status_code == 200, response.text[:500]
    got = _served(response.json() | {"_asked": {"interval": case["interval"]}})
    assert set(got) == set(buckets)
    for key, vs in buckets.items():
        _close(got[key], _oracle_stats(vs), PLAIN)
