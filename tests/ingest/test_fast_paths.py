"""The ingest hot path's shortcuts give exactly what the general code gives (datetimes, values, codes, fullUrls, XML events)."""

from __future__ import annotations

import io
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingest import apple_health, mapping, units
from ingest.apple_health import apple_datetime, read_export
from ingest.bundle import FULL_URL_NAMESPACE, full_url_for
from ingest.device import DeviceInfo
from ingest.observation import (
    _VALUES,
    Sample,
    _codes,
    _fhir_datetime,
    _value,
    _value_and_text,
    fhir_datetime,
)
from ingest.pipeline import _KNOWN_DEVICES, IngestRun, ReadContext, ingest_samples
from tests.ingest.fixtures import _APPLE_HEAD, _APPLE_TAIL, apple_every_measure, hk_blood_pressure, hk_record


def _outcome(f: Any, *args: Any) -> tuple[str, Any]:
    """What a call gives: its result, or the type and message of what it raises."""
    try:
        return "ok", f(*args)
    except Exception as exc:  # SampleError; or whatever else the general code raises, alike
        return type(exc).__name__, str(exc)


# --- datetimes ------------------------------------------------------------------------------

_two = st.integers(min_value=0, max_value=99).map(lambda n: f"{n:02d}")
_digit_text = st.text(alphabet="0123456789", min_size=1, max_size=5)
_years = st.one_of(
    st.integers(min_value=0, max_value=9999).map(lambda n: f"{n:04d}"),
    _digit_text,
    st.sampled_from(["\uff11\uff19\uff19\uff19", "2O24"]),
)
_zones = st.one_of(
    st.sampled_from(
        ["Z", "z", "", "+01:00", "-00:00", "+14:00", "+14:01", "-13:59", "+0100", "+01", "+24:00", " +01:00"]
    ),
    st.builds(lambda sign, h, m: f"{sign}{h}:{m}", st.sampled_from("+-"), _two, _two),
    st.builds(lambda f, z: f".{f}{z}", _digit_text, st.sampled_from(["Z", "+01:00"])),
)


@st.composite
def _datetimes(draw: st.DrawFn) -> str:
    """Texts shaped like FHIR dateTimes, most nearly valid, some broken in one place."""
    text = (
        draw(_years)
        + draw(st.sampled_from(["-", "/"]))
        + draw(_two)
        + "-"
        + draw(_two)
        + draw(st.sampled_from(["T", "T", "T", " ", "t"]))
        + draw(_two)
        + ":"
        + draw(_two)
        + draw(st.sampled_from([":", ":", "."]))
        + draw(_two)
        + draw(_zones)
    )
    if draw(st.booleans()) and text:
        i = draw(st.integers(min_value=0, max_value=len(text) - 1))
        text = text[:i] + draw(st.characters()) + text[i + 1 :]
    return text


_tzs = st.sampled_from([None, UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5, minutes=30))])


@settings(max_examples=3000, deadline=None)
@given(st.one_of(_datetimes(), st.text(max_size=30)), _tzs)
@example("2024-03-01T08:00:00+01:00", None)
@example("2024-02-30T08:00:00+01:00", None)
@example("2023-02-29T08:00:00Z", None)
@example("2024-02-29T08:00:00Z", None)
@example("0000-01-01T00:00:00Z", None)
@example("2024-03-01T23:59:60Z", None)
@example("2024-03-01T24:00:00Z", None)
@example("2024-03-01T08:00:00+14:30", None)
@example("2024-03-01T08:00:00.1234Z", None)
@example("2024-03-01T08:00:00-00:00", None)
def test_fhir_datetime_fast_path_gives_what_the_general_path_gives(text: str, tz: Any) -> None:
    expected = _outcome(_fhir_datetime, text, tz)
    assert _outcome(fhir_datetime, text, tz) == expected
    assert _outcome(fhir_datetime, text, tz) == expected  # again, from the memos


@settings(max_examples=1000, deadline=None)
@given(_datetimes())
def test_apple_dates_take_the_same_way_through_both_paths(text: str) -> None:
    apple = text[:10] + " " + text[11:19] + " " + text[19:].replace(":", "")
    converted = apple_datetime(apple)
    assert _outcome(fhir_datetime, converted, None) == _outcome(_fhir_datetime, converted, None)


# --- values -----------------------------------------------------------------------------------

_measure_units = [
    (m, u) for m in mapping.MEASURES.values() for u in {*m.units, "[lb_av]", "g", "h", "[degF]", "km"}
]
_raw_numbers = st.one_of(
    st.sampled_from(
        ["72", "72.0", "072", " 72 ", "1e2", "1E-7", "-5", "-0", "0", "NaN", "inf", "", "x", "0.97"]
    ),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(alphabet="0123456789.eE+- ", max_size=8),
)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(_measure_units), _raw_numbers)
def test_memoised_values_equal_the_plain_conversion(mu: tuple[mapping.Measure, str], raw: str) -> None:
    m, unit = mu

    def plain() -> tuple[Any, ...]:
        value, canonical = _value(m, unit, raw)
        return value, canonical, units.format_number(value)

    expected = _outcome(plain)
    for _ in range(2):  # computed, then from the memo
        got = _outcome(_value_and_text, m, unit, raw)
        assert got == expected
        if got[0] == "ok":
            assert [type(x) for x in got[1]] == [type(x) for x in expected[1]]


def test_numbers_that_are_equal_but_typed_differently_are_not_confused() -> None:
    m = mapping.MEASURES["heart_rate"]
    _VALUES.clear()
    assert _value_and_text(m, "/min", "72") == (72, "/min", "72")
    assert _value_and_text(m, "/min", 72.0) == (72.0, "/min", "72.0")
    assert _value_and_text(m, "/min", Decimal("72.00")) == (72.0, "/min", "72.0")
    assert type(_value_and_text(m, "/min", 72)[0]) is int


# --- codes, units, fullUrls ------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(mapping.MEASURES))
def test_precomputed_codes_equal_the_measures_own(key: str) -> None:
    m = mapping.MEASURES[key]
    codes = _codes(m)
    assert list(codes.profiles) == m.profiles
    assert codes.category_concept() == m.category_concept()
    assert codes.codeable_concept() == m.codeable_concept()
    assert codes.codeable_concept() is not codes.codeable_concept()  # fresh every time


def test_known_ucum_codes_are_valid_for_the_ucum_grammar() -> None:
    for code in units._KNOWN_UCUM:
        units._parser().parse(code)  # raises for an invalid code


@given(st.text(max_size=40), st.text(max_size=60))
def test_full_url_is_the_uuid5_of_the_identifier(system: str, value: str) -> None:
    assert full_url_for(system, value) == f"urn:uuid:{uuid.uuid5(FULL_URL_NAMESPACE, f'{system}|{value}')}"


def test_observations_share_no_nested_object() -> None:
    watch = DeviceInfo("test", "Watch")
    samples = [
        Sample("heart_rate", "2024-03-01T08:00:00+01:00", str(60 + i), "/min", device=watch) for i in range(2)
    ]
    result = ingest_samples(samples, source="test", patient_ref="Patient/1")
    first, second = (e["resource"] for e in result.bundles[0]["entry"][1:3])
    seen: set[int] = set()

    def walk(o: object) -> None:
        if isinstance(o, dict | list):
            assert id(o) not in seen
            seen.add(id(o))
            for v in o.values() if isinstance(o, dict) else o:
                walk(v)

    walk(first)
    walk(second)


# --- devices of a run -----------------------------------------------------------------------


def test_equal_devices_are_one_entry_and_a_device_without_observation_is_not_counted() -> None:
    def watch() -> DeviceInfo:
        return DeviceInfo("test", "Watch", "Acme")

    good = [Sample("heart_rate", f"2024-03-01T08:00:{i:02d}Z", "70", device=watch()) for i in range(3)]
    bad = [Sample("heart_rate", "2024-03-01T08:00:00Z", "fast", device=DeviceInfo("test", "Ring"))]
    samples = [*bad, *good] + [
        Sample("heart_rate", f"2024-03-01T09:{i // 60:02d}:{i % 60:02d}Z", "70", device=watch())
        for i in range(_KNOWN_DEVICES + 5)
    ]
    ctx = ReadContext(file="x")
    run = IngestRun(lambda _c: samples, source="test", patient_ref="Patient/1", ctx=ctx)
    records = list(run.records())
    assert len({id(dev) for _, dev, _ in records}) == 1
    assert run.counts["devices"] == 1 and run.counts["rejected"] == 1


# --- the XML events ----------------------------------------------------------------------------


def _iterparse_export(fh: io.BytesIO, ctx: ReadContext) -> list[Sample]:
    """The reader as it was, on ElementTree.iterparse and Elements: the oracle for the event order."""
    devices = apple_health._Devices()
    counts = ctx.counts
    ordinal: dict[str, int] = {}
    depth = 0
    root: ET.Element | None = None
    last = "HealthData"
    out: list[Sample] = []
    try:
        for event, elem in ET.iterparse(fh, events=("start", "end")):
            if event == "start":
                depth += 1
                if depth == 1:
                    root = elem
                    if elem.tag != "HealthData":
                        ctx.problem(
                            elem.tag, f"not an Apple Health export: root element <{elem.tag}>", "fatal"
                        )
                        return out
                continue
            depth -= 1
            if depth != 1:
                continue
            tag = elem.tag
            n = ordinal[tag] = ordinal.get(tag, 0) + 1
            last = f"HealthData/{tag}[{n}]"
            sample = None
            if tag == "Record":
                counts["records"] += 1
                sample = apple_health._record(dict(elem.attrib), last, devices, ctx)
            elif tag == "Correlation":
                counts["records"] += 1
                nested = [dict(c.attrib) for c in elem.iter("Record")]
                sample = apple_health._correlation(dict(elem.attrib), nested, last, devices, ctx)
            if sample is not None:
                out.append(sample)
            assert root is not None
            root.clear()
    except ET.ParseError as exc:
        line, column = exc.position
        what = "truncated" if "no element found" in str(exc) else "malformed"
        after = f" after {last}" if ordinal else ""
        ctx.problem(line, f"{what} XML at column {column}{after}: {exc}", "fatal")
    except (LookupError, ValueError) as exc:  # the XML declaration names an unusable encoding
        ctx.problem(1, f"unreadable XML: {apple_health._EncodingError(exc, fh.getvalue())}", "fatal")
    return out


def _export() -> bytes:
    text, _ = apple_every_measure()
    body = text[len(_APPLE_HEAD) : -len(_APPLE_TAIL)]
    odd = (
        hk_record("HKQuantityTypeIdentifierHeartRate", "fast", "2024-03-01 08:01:00 +0100", unit="count/min")
        + hk_record("HKQuantityTypeIdentifierHeartRate", "71", "yesterday", unit="count/min")
        + hk_blood_pressure("120", "80", "2024-03-01 08:04:00 +0100", nested_only=True).replace(
            "HKQuantityTypeIdentifierBloodPressureDiastolic", "HKQuantityTypeIdentifierBodyMass"
        )
        + ' <Correlation type="HKCorrelationTypeIdentifierBloodPressure" startDate="2024-03-01 08:00:00 +0100">'
        + '<MetadataEntry type="HKQuantityTypeIdentifierBloodPressureSystolic" value="9" device="m"/>'
        + '<Other><Record type="HKQuantityTypeIdentifierBloodPressureSystolic" value="1" device="d"/></Other>'
        + '<Record type="HKQuantityTypeIdentifierBloodPressureDiastolic" value="2"><Record type="X"/></Record>'
        + "</Correlation>\n"
    )
    return (_APPLE_HEAD + (body + odd) * 4 + _APPLE_TAIL).encode()  # several 16 KiB chunks


_EXPORT = _export()
_JUNK = ["", "<", ">", "&bogus;", "</Other>", "<x>", '"', "\x00", "<!-- c -->", "<HealthData>", "é"]


def _both(data: bytes) -> None:
    old_ctx, new_ctx = ReadContext(file="x"), ReadContext(file="x")
    expected = _outcome(_iterparse_export, io.BytesIO(data), old_ctx)
    got = _outcome(lambda: list(read_export(io.BytesIO(data), new_ctx)))
    assert got == expected
    assert new_ctx.problems == old_ctx.problems
    assert list(new_ctx.counts.items()) == list(old_ctx.counts.items())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=0, max_value=len(_EXPORT)),
    st.integers(min_value=0, max_value=3),
    st.sampled_from(_JUNK),
)
@example(len(_EXPORT), 0, "")
@example(len(_EXPORT) - 3, 0, "")
@example(32, 1, "")  # encoding="TF-8": one fatal problem (LookupError), from both
def test_events_and_problems_are_those_of_iterparse(cut: int, skip: int, junk: str) -> None:
    _both(_EXPORT[:cut] + junk.encode() + _EXPORT[cut + skip :])


@pytest.mark.parametrize(
    "text",
    [
        '<?xml version="1.0"?>\n<ClinicalDocument><x/></ClinicalDocument>\n',
        '<?xml version="1.0"?>\n<ClinicalDocument><x></ClinicalDocument>\n',
        "",
        "not xml",
        "<HealthData/>",
        "<HealthData><Record/></HealthData><extra/>",
    ],
)
def test_odd_documents_end_as_they_did(text: str) -> None:
    _both(text.encode())
