"""Search results equal a plain Python evaluation of the query over the stored JSON (https://hl7.org/fhir/R4/search.html).

Hypothesis builds a small world of Patients, Practitioners, Observations, Encounters,
MedicationStatements, DocumentReferences, Goals and RiskAssessments (some deleted), stores them
with the real indexer (`index.index_rows`), and draws queries over every parameter type, every
prefix, the modifiers, chains, `_has`, `_sort` and paging. The SQL from `plan.build` must return
exactly the resources, in exactly the order, that the oracle below computes from the JSON alone.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, delete, insert

from fhir_server.search import index, plan, ucum
from fhir_server.search.query import Chain, Criterion, Filter, Has, MissingValue, SearchQuery, SortKey, parse
from fhir_server.search.types.composite import CompositeValue
from fhir_server.search.types.date import DateValue, search_range
from fhir_server.search.types.number import NumberValue
from fhir_server.search.types.quantity import QuantityValue
from fhir_server.search.types.reference import ReferenceValue
from fhir_server.search.types.string import StringValue, normalize
from fhir_server.search.types.token import OfTypeValue, TextValue, TokenValue
from fhir_server.search.types.uri import UriValue
from fhir_server.store import tables
from tests.search.test_plan import BACKENDS, make_engine

NOW = search_range("2024-01-01", "now")[0]
UCUM = ucum.UCUM_SYSTEM
MIN, MAX = -(2**62), 2**62
ORACLE = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture(scope="module", params=BACKENDS)
def db(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield from make_engine(request.param)


# ======================================================================== the world

FAMILY = ["Smith", "smith", "Smíth", "Smithson", "Jones", "Ng", "Zoë", "O'Brien"]
GIVEN = ["Ann", "Anne", "Bob", "Émile", "Zoe"]
SYSTEMS = ["http://loinc.org", "http://acme.org/codes"]
CODES = ["1234-5", "8480-6", "2345-7"]
DISPLAYS = ["Hemoglobin", "Hb A1c", "Glucose", "glucose fasting"]
TEXTS = ["Blood glucose", "hemo stuff", "glucose"]  # "glucose": a coding's display too
QVALUES = [5.4, 5.35, 5.45, 5.5, 0.0054, 100.0, 99.5, 100.5, 1000.0, 1.0, 2.5]
UNITS: list[tuple[str | None, str | None, str | None]] = [
    (UCUM, "mg", "mg"),
    (UCUM, "g", "g"),
    (UCUM, "kg", "kg"),
    (None, None, "mg"),
    ("http://other", "mg", "mg"),
]
PROBS = [0.1, 0.15, 0.2, 0.25, 0.5, 0.8, 0.85, 1.0]
PROFILES = [
    "http://p.org/fhir/StructureDefinition/a",
    "http://p.org/fhir/StructureDefinition/a/b",
    "http://p.org/fhir",
    "urn:oid:1.2.3",
]
TAGS = [("http://t", "x"), ("http://t", "y"), ("http://u", "x")]
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
STATUS = {
    "Observation": ["final", "preliminary", "amended"],
    "Encounter": ["planned", "in-progress", "finished"],
    "MedicationStatement": ["active", "completed"],
    "DocumentReference": ["current", "superseded"],
    "Goal": ["proposed", "active", "completed"],
}
N_PATIENTS, N_PRACTITIONERS, N_ENCOUNTERS = 4, 2, 3
LAST_UPDATED = [search_range(f"202{i}-06-01", "t")[0] for i in range(4)]


Choose = Callable[[Sequence[Any]], Any]


def make_date(choose: Choose, kind: str = "dateTime") -> str:
    """A date/dateTime/instant value clustered around a few instants, so searches hit and miss."""
    y, m, d = choose([2012, 2013, 2014]), choose([1, 3, 12]), choose([1, 14, 15, 28])
    p = choose({"date": "YMD", "dateTime": "YMDsf", "instant": "sf", "search": "YMDmsfu"}[kind])
    if p == "Y":
        return f"{y}"
    if p == "M":
        return f"{y}-{m:02d}"
    if p == "D":
        return f"{y}-{m:02d}-{d:02d}"
    h, mi, s, tz = choose([0, 10, 23]), choose([0, 30]), choose([0, 59]), choose(["Z", "+02:00", "-05:00"])
    if p == "m":
        return f"{y}-{m:02d}-{d:02d}T{h:02d}:{mi:02d}{tz}"
    if p == "u":  # no zone: UTC
        return f"{y}-{m:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}"
    frac = "" if p == "s" else choose([".5", ".123456", ".000"])
    return f"{y}-{m:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{tz}"


def resource_range(text: str) -> tuple[int, int]:
    """Index semantics for a resource's own date: a fraction of a second pins one microsecond."""
    low, high = search_range(text, "resource")
    return (low, low) if "." in text else (low, high)


class Maker:
    """Random resource content; the Random comes from Hypothesis, so a failure replays."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.choose: Choose = rnd.choice

    def maybe(self, value: Callable[[], Any], p: float = 0.75) -> Any:
        return value() if self.rnd.random() < p else None

    def some(self, value: Callable[[], Any], low: int, high: int) -> list[Any]:
        return [value() for _ in range(self.rnd.randint(low, high))]

    def date(self, kind: str = "dateTime") -> str:
        return make_date(self.choose, kind)

    def period(self) -> dict[str, str]:
        start, end = self.maybe(self.date), self.maybe(self.date)
        if start and end and resource_range(start)[0] > resource_range(end)[1]:
            start, end = end, start
        return {k: v for k, v in (("start", start), ("end", end)) if v}

    def coding(self) -> dict[str, str]:
        pairs = (
            ("system", self.maybe(lambda: self.choose(SYSTEMS))),
            ("code", self.choose(CODES)),
            ("display", self.maybe(lambda: self.choose(DISPLAYS), 0.5)),
        )
        return {k: v for k, v in pairs if v}

    def concept(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        put_opt(out, "coding", self.some(self.coding, 0, 2))
        put_opt(out, "text", self.maybe(lambda: self.choose(TEXTS), 0.4))
        return out or {"text": "x"}

    def quantity(self) -> dict[str, Any]:
        system, code, unit = self.choose(UNITS)
        out: dict[str, Any] = {"value": self.choose(QVALUES)}
        for key, value in (("system", system), ("code", code), ("unit", unit)):
            put_opt(out, key, value)
        return out

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        tags = {self.choose(TAGS) for _ in range(self.rnd.randint(0, 2))}
        put_opt(out, "tag", [{"system": s, "code": c} for s, c in sorted(tags)])
        put_opt(out, "profile", sorted({self.choose(PROFILES) for _ in range(self.rnd.randint(0, 2))}))
        return out

    def patient_ref(self, allow_group: bool = True) -> dict[str, Any] | None:
        kind = self.choose(["ref"] * 6 + ["identifier", "none"])
        if kind == "ref":
            choices = [f"Patient/p{i}" for i in range(N_PATIENTS)] + (["Group/g1"] if allow_group else [])
            return {"reference": self.choose(choices)}
        if kind == "identifier":
            return {"identifier": {"system": "http://mrn", "value": self.choose(["42", "43"])}}
        return None

    def patient(self, i: int) -> dict[str, Any]:
        r: dict[str, Any] = {"resourceType": "Patient", "id": f"p{i}"}

        def name() -> dict[str, Any]:
            out: dict[str, Any] = {"family": self.choose(FAMILY)}
            put_opt(out, "given", self.some(lambda: self.choose(GIVEN), 0, 2))
            return out

        put_opt(r, "name", self.some(name, 0, 2))
        put_opt(r, "gender", self.maybe(lambda: self.choose(["male", "female", "other"])))
        put_opt(r, "active", self.maybe(lambda: self.choose([True, False])))
        put_opt(r, "birthDate", self.maybe(lambda: self.date("date")))
        if self.rnd.random() < 0.7:
            ident: dict[str, Any] = {"system": "http://mrn", "value": self.choose(["42", "43", "44"])}
            if self.rnd.random() < 0.6:
                ident["type"] = {"coding": [{"system": V2, "code": self.choose(["MR", "DL"])}]}
                put_opt(ident["type"], "text", self.maybe(lambda: self.choose(["Medical record", "Licence"])))
            r["identifier"] = [ident]
        gp = self.maybe(lambda: self.choose([f"Practitioner/dr{j}" for j in range(N_PRACTITIONERS)]))
        if gp:
            r["generalPractitioner"] = [{"reference": gp}]
        put_opt(r, "meta", self.meta())
        return r

    def observation(self, i: int) -> dict[str, Any]:
        r: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"o{i}",
            "status": self.choose(STATUS["Observation"]),
        }
        r["code"] = self.concept()
        put_opt(r, "subject", self.patient_ref())
        enc = self.maybe(lambda: self.choose([f"Encounter/e{j}" for j in range(N_ENCOUNTERS)]))
        if enc:
            r["encounter"] = {"reference": enc}
        effective = self.choose(["dateTime", "period", "instant", "none"])
        if effective == "dateTime":
            r["effectiveDateTime"] = self.date()
        elif effective == "instant":
            r["effectiveInstant"] = self.date("instant")
        elif effective == "period":
            put_opt(r, "effectivePeriod", self.period())
        put_opt(r, "valueQuantity", self.maybe(self.quantity))
        put_opt(
            r,
            "component",
            self.some(lambda: {"code": self.concept(), "valueQuantity": self.quantity()}, 0, 2),
        )
        put_opt(r, "meta", self.meta())
        return r

    def world(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(N_PRACTITIONERS):
            out.append(
                {"resourceType": "Practitioner", "id": f"dr{i}", "name": [{"family": self.choose(FAMILY)}]}
            )
        out.extend(self.patient(i) for i in range(N_PATIENTS))
        for i in range(N_ENCOUNTERS):
            r: dict[str, Any] = {
                "resourceType": "Encounter",
                "id": f"e{i}",
                "status": self.choose(STATUS["Encounter"]),
            }
            r["class"] = {"system": "http://v3", "code": self.choose(["AMB", "IMP"])}
            put_opt(r, "subject", self.patient_ref())
            put_opt(r, "period", self.period())
            out.append(r)
        out.extend(self.observation(i) for i in range(self.rnd.randint(3, 7)))
        patients = [f"Patient/p{j}" for j in range(N_PATIENTS)]
        for i in range(self.rnd.randint(1, 3)):
            r = {
                "resourceType": "MedicationStatement",
                "id": f"m{i}",
                "status": self.choose(STATUS["MedicationStatement"]),
            }
            r["medicationCodeableConcept"] = self.concept()
            r["subject"] = {"reference": self.choose(patients)}
            if self.rnd.random() < 0.5:
                r["effectiveDateTime"] = self.date()
            else:
                put_opt(r, "effectivePeriod", self.period())
            out.append(r)
        for i in range(self.rnd.randint(1, 3)):
            r = {
                "resourceType": "DocumentReference",
                "id": f"d{i}",
                "status": self.choose(STATUS["DocumentReference"]),
            }
            r["content"] = [{"attachment": {"contentType": "text/plain"}}]
            put_opt(r, "type", self.maybe(self.concept))
            put_opt(r, "date", self.maybe(lambda: self.date("instant")))
            put_opt(
                r,
                "description",
                self.maybe(lambda: self.choose(["Discharge summary", "discharge note", "Référé"])),
            )
            put_opt(r, "subject", self.patient_ref(allow_group=False))
            out.append(r)
        for i in range(self.rnd.randint(1, 3)):
            r = {"resourceType": "Goal", "id": f"g{i}", "lifecycleStatus": self.choose(STATUS["Goal"])}
            r["description"] = {"text": "walk"}
            r["subject"] = {"reference": self.choose(patients)}
            put_opt(r, "startDate", self.maybe(lambda: self.date("date")))
            due = self.maybe(lambda: self.date("date"))
            if due:
                r["target"] = [{"dueDate": due}]
            out.append(r)
        for i in range(self.rnd.randint(1, 3)):
            r = {"resourceType": "RiskAssessment", "id": f"r{i}", "status": "final"}
            r["subject"] = {"reference": self.choose(patients)}
            r["prediction"] = self.some(lambda: {"probabilityDecimal": self.choose(PROBS)}, 1, 2)
            out.append(r)
        return out


def put_opt(target: dict[str, Any], key: str, value: Any) -> None:
    if value not in (None, {}, []):
        target[key] = value


@st.composite
def world(draw: st.DrawFn) -> list[dict[str, Any]]:
    return Maker(draw(st.randoms(use_true_random=True))).world()


@dataclass
class Stored:
    """The world as stored: current resources by (type, id), their pk and lastUpdated."""

    current: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pk: dict[tuple[str, str], int] = field(default_factory=dict)
    last_updated: dict[tuple[str, str], int] = field(default_factory=dict)

    def name(self, pk: int) -> tuple[str, str]:
        return next(k for k, v in self.pk.items() if v == pk)


def store(conn: Connection, resources: list[dict[str, Any]], deleted: set[int], lu: list[int]) -> Stored:
    for table in reversed(tables.metadata.sorted_tables):
        conn.execute(delete(table))
    out = Stored()
    for n, res in enumerate(resources):
        key = (res["resourceType"], res["id"])
        gone = n in deleted
        last = lu[n % len(lu)]
        row = dict(res_type=key[0], res_id=key[1], version=1, last_updated=last, deleted=gone)
        content = b"" if gone else json.dumps(res).encode()
        inserted = conn.execute(insert(tables.resource).values(**row, content=content)).inserted_primary_key
        assert inserted is not None
        pk = inserted[0]
        out.pk[key] = int(pk)
        if gone:
            continue
        out.current[key] = res
        out.last_updated[key] = last
        for kind, rows in index.index_rows(res).items():
            if rows:
                conn.execute(insert(tables.INDEX_TABLES[kind]), [dict(r, resource_pk=pk) for r in rows])
    return out


# ======================================================================== the oracle: values from JSON

Token = tuple[str | None, str | None, str | None]  # system, code, lower-cased display/text


def coding_tokens(c: dict[str, Any]) -> list[Token]:
    return [(c.get("system"), c.get("code"), c["display"].lower() if c.get("display") else None)]


def concept_tokens(cc: dict[str, Any] | None) -> list[Token]:
    if not cc:
        return []
    out = [t for c in cc.get("coding", []) for t in coding_tokens(c)]
    if cc.get("text"):
        out.append((None, None, cc["text"].lower()))
    return out


def identifier_tokens(idents: list[dict[str, Any]]) -> list[Token]:
    out: list[Token] = []
    for i in idents:
        text = i.get("type", {}).get("text")
        out.append((i.get("system"), i.get("value"), text.lower() if text else None))
    return out


def name_strings(
    names: list[dict[str, Any]], parts: tuple[str, ...] = ("family", "given", "text")
) -> list[str]:
    out: list[str] = []
    for n in names:
        for part in parts:
            v = n.get(part)
            out.extend(v if isinstance(v, list) else [v] if v else [])
    return out


def local_refs(*refs: Any, only: str | None = None) -> list[tuple[str, str]]:
    out = []
    for r in refs:
        if isinstance(r, dict) and "reference" in r:
            t, _, i = r["reference"].partition("/")
            if only is None or t == only:
                out.append((t, i))
    return out


def ref_identifiers(*refs: Any) -> list[Token]:
    return [
        (r["identifier"].get("system"), r["identifier"].get("value"), None)
        for r in refs
        if r and "identifier" in r
    ]


def dates_of(*values: Any) -> list[tuple[int, int]]:
    out = []
    for v in values:
        if isinstance(v, str):
            out.append(resource_range(v))
        elif isinstance(v, dict) and v:
            low = resource_range(v["start"])[0] if "start" in v else MIN
            high = resource_range(v["end"])[1] if "end" in v else MAX
            out.append((low, high))
    return out


def quantities(*qs: Any) -> list[dict[str, Any]]:
    return [q for q in qs if isinstance(q, dict) and "value" in q]


def tags(r: dict[str, Any]) -> list[Token]:
    return [t for c in r.get("meta", {}).get("tag", []) for t in coding_tokens(c)]


def status(r: dict[str, Any]) -> list[Token]:
    key = "lifecycleStatus" if r["resourceType"] == "Goal" else "status"
    return [(None, r[key], None)] if key in r else []


def subject_refs(r: dict[str, Any], only: str | None = None) -> list[tuple[str, str]]:
    return local_refs(r.get("subject"), only=only)


# (type, code) -> (kind, values of the resource)
EXTRACT: dict[tuple[str, str], tuple[str, Callable[[dict[str, Any]], list[Any]]]] = {
    ("Patient", "name"): ("string", lambda r: name_strings(r.get("name", []))),
    ("Patient", "family"): ("string", lambda r: name_strings(r.get("name", []), ("family",))),
    ("Patient", "given"): ("string", lambda r: name_strings(r.get("name", []), ("given",))),
    ("Patient", "gender"): ("token", lambda r: [(None, r["gender"], None)] if "gender" in r else []),
    ("Patient", "active"): (
        "token",
        lambda r: [(None, str(r["active"]).lower(), None)] if "active" in r else [],
    ),
    ("Patient", "birthdate"): ("date", lambda r: dates_of(r.get("birthDate"))),
    ("Patient", "identifier"): ("token", lambda r: identifier_tokens(r.get("identifier", []))),
    ("Patient", "general-practitioner"): (
        "reference",
        lambda r: local_refs(*r.get("generalPractitioner", [])),
    ),
    ("Practitioner", "name"): ("string", lambda r: name_strings(r.get("name", []))),
    ("Practitioner", "family"): ("string", lambda r: name_strings(r.get("name", []), ("family",))),
    ("Observation", "code"): ("token", lambda r: concept_tokens(r.get("code"))),
    ("Observation", "status"): ("token", status),
    ("Observation", "subject"): ("reference", subject_refs),
    ("Observation", "patient"): ("reference", lambda r: subject_refs(r, "Patient")),
    ("Observation", "encounter"): ("reference", lambda r: local_refs(r.get("encounter"))),
    ("Observation", "date"): (
        "date",
        lambda r: dates_of(r.get("effectiveDateTime"), r.get("effectiveInstant"), r.get("effectivePeriod")),
    ),
    ("Observation", "value-quantity"): ("quantity", lambda r: quantities(r.get("valueQuantity"))),
    # `combo-` parameters are searched over their parts' rows (SearchParam.parts): the oracle reads the JSON
    ("Observation", "combo-code"): (
        "token",
        lambda r: [
            t
            for cc in [r.get("code"), *(c.get("code") for c in r.get("component", []))]
            for t in concept_tokens(cc)
        ],
    ),
    ("Observation", "combo-value-quantity"): (
        "quantity",
        lambda r: [
            q
            for v in [r.get("valueQuantity"), *(c.get("valueQuantity") for c in r.get("component", []))]
            for q in quantities(v)
        ],
    ),
    ("Encounter", "status"): ("token", status),
    ("Encounter", "class"): ("token", lambda r: coding_tokens(r["class"])),
    ("Encounter", "date"): ("date", lambda r: dates_of(r.get("period"))),
    ("Encounter", "subject"): ("reference", subject_refs),
    ("Encounter", "patient"): ("reference", lambda r: subject_refs(r, "Patient")),
    ("MedicationStatement", "status"): ("token", status),
    ("MedicationStatement", "code"): ("token", lambda r: concept_tokens(r.get("medicationCodeableConcept"))),
    ("MedicationStatement", "effective"): (
        "date",
        lambda r: dates_of(r.get("effectiveDateTime"), r.get("effectivePeriod")),
    ),
    ("MedicationStatement", "patient"): ("reference", lambda r: subject_refs(r, "Patient")),
    ("DocumentReference", "status"): ("token", status),
    ("DocumentReference", "type"): ("token", lambda r: concept_tokens(r.get("type"))),
    ("DocumentReference", "date"): ("date", lambda r: dates_of(r.get("date"))),
    ("DocumentReference", "description"): (
        "string",
        lambda r: [r["description"]] if "description" in r else [],
    ),
    ("DocumentReference", "patient"): ("reference", lambda r: subject_refs(r, "Patient")),
    ("Goal", "lifecycle-status"): ("token", status),
    ("Goal", "patient"): ("reference", lambda r: subject_refs(r, "Patient")),
    ("Goal", "start-date"): ("date", lambda r: dates_of(r.get("startDate"))),
    ("Goal", "target-date"): ("date", lambda r: dates_of(*(t.get("dueDate") for t in r.get("target", [])))),
    ("RiskAssessment", "probability"): (
        "number",
        lambda r: [p["probabilityDecimal"] for p in r.get("prediction", []) if "probabilityDecimal" in p],
    ),
    ("RiskAssessment", "subject"): ("reference", subject_refs),
}
for _t in ("Patient", "Observation"):
    EXTRACT[(_t, "_tag")] = ("token", tags)
    EXTRACT[(_t, "_profile")] = ("uri", lambda r: r.get("meta", {}).get("profile", []))

# pseudo-parameters of modifiers
OF_TYPE = {
    ("Patient", "identifier"): lambda r: [
        (c.get("system"), c.get("code"), i.get("value"))
        for i in r.get("identifier", [])
        for c in i.get("type", {}).get("coding", [])
    ]
}
REF_IDENTIFIER = {("Observation", "subject"): lambda r: ref_identifiers(r.get("subject"))}
# composites: (type, code) -> per element: (tokens, quantities)
COMPOSITE = {
    ("Observation", "code-value-quantity"): lambda r: [
        (concept_tokens(r.get("code")), quantities(r.get("valueQuantity")))
    ],
    ("Observation", "component-code-value-quantity"): lambda r: [
        (concept_tokens(c.get("code")), quantities(c.get("valueQuantity"))) for c in r.get("component", [])
    ],
    ("Observation", "combo-code-value-quantity"): lambda r: [
        (concept_tokens(e.get("code")), quantities(e.get("valueQuantity")))
        for e in [r, *r.get("component", [])]
    ],
}


# ======================================================================== the oracle: matching


def number_matches(x: float, v: NumberValue) -> bool:
    if v.prefix == "eq":
        return float(v.low) <= x < float(v.high)
    if v.prefix == "ne":
        return not float(v.low) <= x < float(v.high)
    if v.prefix in ("gt", "sa"):
        return x > float(v.value)
    if v.prefix in ("lt", "eb"):
        return x < float(v.value)
    if v.prefix == "ge":
        return x >= float(v.value)
    if v.prefix == "le":
        return x <= float(v.value)
    return float(v.ap_low) <= x <= float(v.ap_high)


def date_matches(low: int, high: int, v: DateValue) -> bool:
    contained = v.low <= low and high <= v.high
    above, below = high > v.high, low < v.low
    return {
        "eq": contained,
        "ne": not contained,
        "gt": above,
        "lt": below,
        "ge": above or contained,
        "le": below or contained,
        "sa": low > v.high,
        "eb": high < v.low,
        "ap": low <= v.ap_high and high >= v.ap_low,
    }[v.prefix]


def token_matches(t: Token, v: Any) -> bool:
    system, code, display = t
    if isinstance(v, TextValue):
        return display is not None and display.startswith(v.text.lower())
    assert isinstance(v, TokenValue)
    if v.code is not None and code != v.code:
        return False
    return not v.system_given or system == v.system


def canonical(q: dict[str, Any]) -> tuple[float, str] | None:
    system, code, unit = q.get("system"), q.get("code"), q.get("unit")
    if system == UCUM:
        return ucum.to_canonical(float(q["value"]), code or unit or "")
    if system is None:
        for candidate in (code, unit):
            if candidate and (got := ucum.to_canonical(float(q["value"]), candidate)) is not None:
                return got
    return None


def quantity_matches(q: dict[str, Any], v: QuantityValue) -> bool:
    value = float(q["value"])
    if v.code is None:
        return number_matches(value, v.number)
    if v.system is None:
        return v.code in (q.get("code"), q.get("unit")) and number_matches(value, v.number)
    if q.get("system") == v.system and q.get("code") == v.code and number_matches(value, v.number):
        return True
    if v.system != UCUM:
        return False
    mine = canonical(q)
    n = v.number
    bounds = [ucum.to_canonical(float(x), v.code) for x in (n.value, n.low, n.high, n.ap_low, n.ap_high)]
    if mine is None or any(b is None for b in bounds) or len({b[1] for b in bounds if b}) != 1:
        return False
    from decimal import Decimal

    converted = NumberValue(n.prefix, *(Decimal(repr(b[0])) for b in bounds if b))
    return mine[1] == bounds[0][1] and number_matches(mine[0], converted)  # type: ignore[index]


def uri_matches(u: str, v: UriValue, modifier: str | None) -> bool:
    if modifier == "below" and "://" in v.uri:
        return u == v.uri or u.startswith(v.uri.rstrip("/") + "/")
    if modifier == "above" and "://" in v.uri:
        return u == v.uri or v.uri.startswith(u.rstrip("/") + "/") or u == v.uri.rstrip("/")
    return u == v.uri


class Oracle:
    def __init__(self, stored: Stored) -> None:
        self.stored = stored

    def values(self, r: dict[str, Any], code: str) -> tuple[str, list[Any]]:
        kind, fn = EXTRACT[(r["resourceType"], code)]
        return kind, fn(r)

    def value_matches(self, r: dict[str, Any], f: Filter, v: Any) -> bool:
        rtype, code = r["resourceType"], f.param.code
        if f.modifier == "of-type":
            assert isinstance(v, OfTypeValue)
            return (v.type_system, v.type_code, v.value) in OF_TYPE[(rtype, code)](r)
        if f.modifier == "identifier":
            return any(token_matches(t, v) for t in REF_IDENTIFIER[(rtype, code)](r))
        if f.param.type == "composite":
            assert isinstance(v, CompositeValue)
            tok, qty = v.parts
            return any(
                any(token_matches(t, tok) for t in toks) and any(quantity_matches(q, qty) for q in qs)
                for toks, qs in COMPOSITE[(rtype, code)](r)
            )
        kind, vals = self.values(r, code)
        if kind == "string":
            assert isinstance(v, StringValue)
            if f.modifier == "exact":
                return v.text in vals
            if f.modifier == "contains":
                return any(v.norm in normalize(s) for s in vals)
            return any(normalize(s).startswith(v.norm) for s in vals)
        if kind == "token":
            return any(token_matches(t, v) for t in vals)
        if kind == "reference":
            assert isinstance(v, ReferenceValue)
            return any(i == v.id and (v.type is None or t == v.type) for t, i in vals)
        if kind == "date":
            assert isinstance(v, DateValue)
            return any(date_matches(lo, hi, v) for lo, hi in vals)
        if kind == "number":
            assert isinstance(v, NumberValue)
            return any(number_matches(float(x), v) for x in vals)
        if kind == "quantity":
            assert isinstance(v, QuantityValue)
            return any(quantity_matches(q, v) for q in vals)
        assert isinstance(v, UriValue)
        return any(uri_matches(u, v, f.modifier) for u in vals)

    def present(self, r: dict[str, Any], f: Filter) -> bool:
        if f.param.type == "composite":
            return any(all(parts) for parts in COMPOSITE[(r["resourceType"], f.param.code)](r))
        return bool(self.values(r, f.param.code)[1])

    def matches(self, r: dict[str, Any], c: Criterion) -> bool:
        key = (r["resourceType"], r["id"])
        if isinstance(c, Chain):
            return any(
                t in c.target_types
                and (t, i) in self.stored.current
                and self.matches(self.stored.current[(t, i)], c.criterion)
                for t, i in self.values(r, c.param.code)[1]
            )
        if isinstance(c, Has):
            return any(
                src["resourceType"] == c.source_type
                and key in self.values(src, c.param.code)[1]
                and self.matches(src, c.criterion)
                for src in self.stored.current.values()
            )
        if f_is_missing(c):
            return any(v.missing != self.present(r, c) for v in c.values if isinstance(v, MissingValue))
        if c.param.type == "id":
            found = any(isinstance(v, TokenValue) and v.code == r["id"] for v in c.values)
            return not found if c.modifier == "not" else found
        if c.param.type == "lastUpdated":
            lu = self.stored.last_updated[key]
            return any(isinstance(v, DateValue) and date_matches(lu, lu, v) for v in c.values)
        found = any(self.value_matches(r, c, v) for v in c.values)
        return not found if c.modifier == "not" else found

    def sort_value(self, r: dict[str, Any], k: SortKey) -> Any:
        key = (r["resourceType"], r["id"])
        if k.param.type == "id":
            return r["id"]
        if k.param.type == "lastUpdated":
            return self.stored.last_updated[key]
        kind, vals = self.values(r, k.param.code)
        keys: list[Any]
        if kind == "string":
            keys = [normalize(s) for s in vals]
        elif kind == "token":
            keys = [t[1] for t in vals if t[1] is not None]
        elif kind == "reference":
            keys = [f"{t}/{i}" for t, i in vals]
        elif kind == "date":
            keys = [hi if k.descending else lo for lo, hi in vals]
        elif kind == "quantity":
            keys = [float(q["value"]) for q in vals]
        else:
            keys = [float(x) for x in vals]
        if not keys:
            return None
        return max(keys) if k.descending else min(keys)

    def search(self, query: SearchQuery) -> list[tuple[str, str]]:
        hits = [
            r
            for key, r in self.stored.current.items()
            if key[0] in query.types and all(self.matches(r, c) for c in query.criteria)
        ]
        hits.sort(key=lambda r: self.stored.pk[(r["resourceType"], r["id"])])
        for k in reversed(query.sort):
            with_value = [r for r in hits if self.sort_value(r, k) is not None]
            without = [r for r in hits if self.sort_value(r, k) is None]
            with_value.sort(key=lambda r, k=k: self.sort_value(r, k), reverse=k.descending)  # type: ignore[misc]
            hits = with_value + without
        return [(r["resourceType"], r["id"]) for r in hits]


def f_is_missing(c: Criterion) -> bool:
    return isinstance(c, Filter) and c.modifier == "missing"


# ======================================================================== queries


def prefixed(draw: st.DrawFn, text: str) -> str:
    return draw(st.sampled_from(["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"])) + text


@st.composite
def string_value(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(FAMILY + GIVEN + ["Discharge", "refere", "zz"]))
    word = word[: draw(st.integers(1, len(word)))]
    return draw(st.sampled_from([word, word.upper(), word.lower()]))


@st.composite
def code_value(draw: st.DrawFn) -> str:
    code = draw(st.sampled_from(CODES))
    system = draw(st.sampled_from(SYSTEMS))
    return draw(st.sampled_from([code, f"{system}|{code}", f"|{code}", f"{system}|"]))


@st.composite
def date_value(draw: st.DrawFn) -> str:
    return prefixed(draw, make_date(lambda seq: draw(st.sampled_from(seq)), "search"))


@st.composite
def quantity_value(draw: st.DrawFn) -> str:
    number = draw(
        st.sampled_from(["5.4", "5.40", "5", "100", "1e2", "1.00e2", "0.0054", "1000", "1", "5.4e-3", "2.5"])
    )
    unit = draw(st.sampled_from(["", "||mg", f"|{UCUM}|mg", f"|{UCUM}|g", f"|{UCUM}|kg", "|http://other|mg"]))
    return prefixed(draw, number) + unit


def one_of_values(draw: st.DrawFn, values: st.SearchStrategy[str]) -> str:
    return ",".join(draw(st.lists(values, min_size=1, max_size=2)))


def patient_id(draw: st.DrawFn) -> str:
    return draw(st.sampled_from([f"p{i}" for i in range(N_PATIENTS)]))


def criterion_for(draw: st.DrawFn, rtype: str) -> tuple[str, str]:
    status_values = st.sampled_from(STATUS.get(rtype, ["final"]))
    choices: dict[str, list[Callable[[], tuple[str, str]]]] = {
        "Patient": [
            lambda: (
                draw(st.sampled_from(["name", "family", "given"]))
                + draw(st.sampled_from(["", ":exact", ":contains"])),
                one_of_values(draw, string_value()),
            ),
            lambda: (
                "gender" + draw(st.sampled_from(["", ":not"])),
                one_of_values(draw, st.sampled_from(["male", "female", "other"])),
            ),
            lambda: ("active", draw(st.sampled_from(["true", "false"]))),
            lambda: ("birthdate", one_of_values(draw, date_value())),
            lambda: ("identifier", draw(st.sampled_from(["42", "http://mrn|43", "|44", "http://mrn|"]))),
            lambda: (
                "identifier:of-type",
                f"{V2}|{draw(st.sampled_from(['MR', 'DL']))}|{draw(st.sampled_from(['42', '43']))}",
            ),
            lambda: ("identifier:text", draw(st.sampled_from(["medical", "Lic", "record"]))),
            lambda: (
                "general-practitioner" + draw(st.sampled_from(["", ":Practitioner"])),
                draw(st.sampled_from(["dr0", "dr1"])),
            ),
            lambda: ("general-practitioner", draw(st.sampled_from(["Practitioner/dr0", "Practitioner/dr1"]))),
            lambda: ("general-practitioner.name", one_of_values(draw, string_value())),
            lambda: ("_id", one_of_values(draw, st.sampled_from([f"p{i}" for i in range(N_PATIENTS)]))),
            lambda: (
                "_lastUpdated",
                prefixed(draw, draw(st.sampled_from(["2021", "2022-06-01", "2020-06-01T00:00:00Z"]))),
            ),
            lambda: ("_tag", draw(st.sampled_from(["x", "http://t|x", "http://t|", "|x"]))),
            lambda: (
                "_profile" + draw(st.sampled_from(["", ":below", ":above"])),
                draw(st.sampled_from(PROFILES)),
            ),
            lambda: (
                draw(st.sampled_from(["birthdate", "gender", "name", "general-practitioner", "_tag"]))
                + ":missing",
                draw(st.sampled_from(["true", "false"])),
            ),
            lambda: ("_has:Observation:patient:code", one_of_values(draw, code_value())),
            lambda: ("_has:Encounter:subject:status", draw(st.sampled_from(STATUS["Encounter"]))),
            lambda: ("_has:Observation:subject:encounter.status", draw(st.sampled_from(STATUS["Encounter"]))),
            lambda: (
                "_has:Encounter:patient:_has:Observation:encounter:status",
                draw(st.sampled_from(STATUS["Observation"])),
            ),
        ],
        "Observation": [
            lambda: ("code" + draw(st.sampled_from(["", ":not"])), one_of_values(draw, code_value())),
            lambda: ("code:text", draw(st.sampled_from(["hemo", "Glucose", "blood", "hb a"]))),
            lambda: ("status", one_of_values(draw, status_values)),
            lambda: ("subject", draw(st.sampled_from(["Patient/p0", "p1", "Group/g1", "g1", "Patient/p3"]))),
            lambda: ("subject:Patient", patient_id(draw)),
            lambda: ("subject:identifier", draw(st.sampled_from(["http://mrn|42", "43"]))),
            lambda: ("patient", patient_id(draw)),
            lambda: ("encounter", draw(st.sampled_from(["e0", "Encounter/e1"]))),
            lambda: ("date", one_of_values(draw, date_value())),
            lambda: ("value-quantity", one_of_values(draw, quantity_value())),
            lambda: ("code-value-quantity", f"{draw(code_value())}${draw(quantity_value())}"),
            lambda: ("component-code-value-quantity", f"{draw(code_value())}${draw(quantity_value())}"),
            lambda: ("combo-code-value-quantity", f"{draw(code_value())}${draw(quantity_value())}"),
            lambda: ("combo-code" + draw(st.sampled_from(["", ":not"])), one_of_values(draw, code_value())),
            lambda: ("combo-code:text", draw(st.sampled_from(["hemo", "Glucose", "blood", "hb a"]))),
            lambda: ("combo-value-quantity", one_of_values(draw, quantity_value())),
            lambda: ("subject:Patient.name", one_of_values(draw, string_value())),
            lambda: ("patient.gender", draw(st.sampled_from(["male", "female"]))),
            lambda: ("patient.general-practitioner.family", one_of_values(draw, string_value())),
            lambda: ("encounter.status", draw(st.sampled_from(STATUS["Encounter"]))),
            lambda: ("patient._id", patient_id(draw)),
            lambda: (
                draw(
                    st.sampled_from(
                        [
                            "date",
                            "value-quantity",
                            "subject",
                            "encounter",
                            "code-value-quantity",
                            "combo-code",
                            "combo-code-value-quantity",
                        ]
                    )
                )
                + ":missing",
                draw(st.sampled_from(["true", "false"])),
            ),
            lambda: ("_tag", draw(st.sampled_from(["y", "http://u|x"]))),
        ],
        "Encounter": [
            lambda: ("status", one_of_values(draw, status_values)),
            lambda: ("class", draw(st.sampled_from(["AMB", "http://v3|IMP"]))),
            lambda: ("date", one_of_values(draw, date_value())),
            lambda: ("patient", patient_id(draw)),
            lambda: ("subject", draw(st.sampled_from(["Group/g1", "Patient/p2"]))),
            lambda: ("patient.name", one_of_values(draw, string_value())),
        ],
        "MedicationStatement": [
            lambda: ("status", one_of_values(draw, status_values)),
            lambda: ("effective", one_of_values(draw, date_value())),
            lambda: ("code", one_of_values(draw, code_value())),
            lambda: ("patient", patient_id(draw)),
        ],
        "DocumentReference": [
            lambda: ("status", one_of_values(draw, status_values)),
            lambda: ("date", one_of_values(draw, date_value())),
            lambda: ("type:text", draw(st.sampled_from(["gluc", "hemo"]))),
            lambda: (
                "description" + draw(st.sampled_from(["", ":contains", ":exact"])),
                draw(st.sampled_from(["disch", "Discharge summary", "refere", "NOTE"])),
            ),
            lambda: ("patient", patient_id(draw)),
        ],
        "Goal": [
            lambda: ("lifecycle-status", one_of_values(draw, status_values)),
            lambda: ("start-date", one_of_values(draw, date_value())),
            lambda: ("target-date", one_of_values(draw, date_value())),
            lambda: ("patient.birthdate", draw(date_value())),
        ],
        "RiskAssessment": [
            lambda: (
                "probability",
                one_of_values(
                    draw,
                    st.builds(
                        lambda n: prefixed(draw, n),
                        st.sampled_from(["0.8", "0.80", "8e-1", "1", "0.2", "0.25", ".5"]),
                    ),
                ),
            ),
            lambda: ("subject", patient_id(draw)),
            lambda: ("probability:missing", draw(st.sampled_from(["true", "false"]))),
        ],
    }
    options = choices[rtype]
    return options[draw(st.integers(0, len(options) - 1))]()


SORTS = {
    "Patient": [
        "name",
        "family",
        "birthdate",
        "gender",
        "_id",
        "_lastUpdated",
        "general-practitioner",
        "identifier",
    ],
    "Observation": ["date", "code", "combo-code", "value-quantity", "status", "subject", "_lastUpdated"],
    "Encounter": ["date", "status", "patient"],
    "MedicationStatement": ["effective", "status"],
    "DocumentReference": ["date", "description"],
    "Goal": ["start-date", "target-date"],
    "RiskAssessment": ["probability", "_id"],
}


@st.composite
def search(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    rtype = draw(st.sampled_from(sorted(SORTS)))
    pairs = [criterion_for(draw, rtype) for _ in range(draw(st.integers(0, 2)))]
    keys = draw(st.lists(st.sampled_from(SORTS[rtype]), max_size=2, unique=True))
    if keys:
        pairs.append(("_sort", ",".join(draw(st.sampled_from(["", "-"])) + k for k in keys)))
    return rtype, pairs


def execute(conn: Connection, stored: Stored, query: SearchQuery) -> list[tuple[str, str]]:
    return [stored.name(r.pk) for r in conn.execute(plan.build(query))]


def walk(
    conn: Connection, stored: Stored, rtype: str, pairs: list[tuple[str, str]], size: int
) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    extra: list[tuple[str, str]] = []
    for _ in range(100):
        query = parse(rtype, [*pairs, ("_count", str(size)), *extra], lenient=False, now_us=NOW)
        rows = conn.execute(plan.build(query)).all()
        seen.extend(stored.name(r.pk) for r in rows[:size])
        if len(rows) <= size:
            break
        extra = [("_cursor", plan.next_cursor(query, rows[size - 1]))]
    return seen


@ORACLE
@given(
    resources=world(),
    deleted=st.sets(st.integers(0, 30), max_size=3),
    lu=st.lists(st.sampled_from(LAST_UPDATED), min_size=1, max_size=4),
    searches=st.lists(search(), min_size=8, max_size=14),
    page=st.integers(1, 4),
)
def test_sql_results_equal_the_oracle(
    db: Engine,
    resources: list[dict[str, Any]],
    deleted: set[int],
    lu: list[int],
    searches: list[tuple[str, list[tuple[str, str]]]],
    page: int,
) -> None:
    with db.begin() as conn:
        stored = store(conn, resources, deleted, lu)
        oracle = Oracle(stored)
        for rtype, pairs in searches:
            query = parse(rtype, [*pairs, ("_count", "1000")], lenient=False, now_us=NOW)
            expected = oracle.search(query)
            got = execute(conn, stored, query)
            assert got == expected, (rtype, pairs)
            assert conn.execute(plan.count(query)).scalar_one() == len(expected)
        for rtype, pairs in searches[:3]:
            walked = walk(conn, stored, rtype, pairs, page)
            assert walked == oracle.search(
                parse(rtype, [*pairs, ("_count", "1000")], lenient=False, now_us=NOW)
            )
            assert len(walked) == len(set(walked))
        conn.rollback()


PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
SEARCH_DATES = [
    "2013",
    "2013-03",
    "2013-03-14",
    "2013-03-14T10:00Z",
    "2013-03-14T10:30:59+02:00",
    "2012-12-28T23:30:59.5Z",
    "2014-01-01T00:00:00",
]
DATE_PARAMS = [
    ("Observation", "date"),
    ("Encounter", "date"),
    ("Patient", "birthdate"),
    ("DocumentReference", "date"),
    ("MedicationStatement", "effective"),
    ("Goal", "target-date"),
]
SEARCH_NUMBERS = ["0.8", "0.80", "8e-1", "0.25", "1", "1.0", ".5", "0.15"]
SEARCH_QUANTITIES = [
    "5.4",
    "5.45",
    "5.4||mg",
    f"5.4|{UCUM}|mg",
    f"0.0054|{UCUM}|g",
    f"1|{UCUM}|g",
    "1e2",
    "100.5",
]


@settings(ORACLE, max_examples=6)
@given(resources=world())
def test_every_prefix_equals_the_oracle(db: Engine, resources: list[dict[str, Any]]) -> None:
    cases = [(t, code, d) for t, code in DATE_PARAMS for d in SEARCH_DATES]
    cases += [("RiskAssessment", "probability", n) for n in SEARCH_NUMBERS]
    cases += [("Observation", "value-quantity", q) for q in SEARCH_QUANTITIES]
    cases += [("Patient", "_lastUpdated", d) for d in ("2021", "2022-06-01T00:00:00Z")]
    with db.begin() as conn:
        stored = store(conn, resources, set(), LAST_UPDATED)
        oracle = Oracle(stored)
        for rtype, code, value in cases:
            for prefix in PREFIXES:
                query = parse(rtype, [(code, prefix + value), ("_count", "1000")], lenient=False, now_us=NOW)
                assert execute(conn, stored, query) == oracle.search(query), (rtype, code, prefix + value)
        conn.rollback()


@ORACLE
@given(resources=world(), deleted=st.sets(st.integers(0, 30), max_size=3))
def test_includes_equal_the_oracle(db: Engine, resources: list[dict[str, Any]], deleted: set[int]) -> None:
    with db.begin() as conn:
        stored = store(conn, resources, deleted, LAST_UPDATED)
        pairs = [
            ("_include", "Encounter:patient"),
            ("_include:iterate", "Patient:general-practitioner"),
            ("_revinclude", "Observation:encounter"),
        ]
        query = parse("Encounter", pairs, lenient=False)
        page = conn.execute(plan.build(query)).all()
        got = sorted(stored.name(r.pk) for r in plan.includes(conn.execute, query, [r.pk for r in page]))
        matches = {stored.name(r.pk) for r in page}
        cur = stored.current
        patients = {t for k in matches for t in local_refs(cur[k].get("subject"), only="Patient") if t in cur}
        doctors = {
            t for p in patients for t in local_refs(*cur[p].get("generalPractitioner", [])) if t in cur
        }
        observations = {
            k
            for k, r in cur.items()
            if k[0] == "Observation" and set(local_refs(r.get("encounter"))) & matches
        }
        assert got == sorted((patients | doctors | observations) - matches)
        conn.rollback()


MODIFIER_CASES: list[tuple[str, str, str]] = [
    ("Patient", "name", "smi"),
    ("Patient", "name:exact", "Smith"),
    ("Patient", "name:contains", "TH"),
    ("Patient", "given", "emile"),
    ("Patient", "family:exact", "Zoë"),
    ("Patient", "gender:not", "male"),
    ("Patient", "gender:missing", "true"),
    ("Patient", "identifier", "http://mrn|42"),
    ("Patient", "identifier:of-type", f"{V2}|MR|42"),
    ("Patient", "identifier:text", "medical"),
    ("Patient", "general-practitioner:Practitioner", "dr0"),
    ("Patient", "general-practitioner:missing", "false"),
    ("Patient", "_profile", "http://p.org/fhir"),
    ("Patient", "_profile:below", "http://p.org/fhir"),
    ("Patient", "_profile:above", "http://p.org/fhir/StructureDefinition/a/b"),
    ("Patient", "_tag", "http://t|"),
    ("Patient", "_tag:not", "x"),
    ("Patient", "_id:not", "p0"),
    ("Patient", "_has:Observation:patient:code", "1234-5"),
    ("Patient", "_has:Observation:subject:status", "final"),
    ("Patient", "_has:Encounter:patient:_has:Observation:encounter:code:text", "glucose"),
    ("Patient", "general-practitioner.family", "smith"),
    ("Observation", "code:text", "glucose"),
    ("Observation", "code:text", "hb"),
    ("Observation", "code:not", "http://loinc.org|1234-5"),
    ("Observation", "code", "|8480-6"),
    ("Observation", "subject:identifier", "http://mrn|42"),
    ("Observation", "subject", "Group/g1"),
    ("Observation", "subject:Patient.gender", "female"),
    ("Observation", "patient.general-practitioner.name", "jones"),
    ("Observation", "encounter.patient.name", "ng"),
    ("Observation", "encounter:missing", "true"),
    ("Observation", "value-quantity:missing", "false"),
    ("Observation", "code-value-quantity", "1234-5$gt5"),
    ("Observation", "code-value-quantity:missing", "true"),
    ("Observation", "component-code-value-quantity", f"http://loinc.org|8480-6$5.4|{UCUM}|mg"),
    ("DocumentReference", "description:contains", "arg"),
    ("DocumentReference", "description", "refere"),
    ("DocumentReference", "type:text", "hemo"),
    ("Goal", "patient.birthdate", "ge2013"),
    ("MedicationStatement", "code:not", "2345-7"),
    ("RiskAssessment", "subject.gender:missing", "true"),
]


@settings(ORACLE, max_examples=12)
@given(resources=world(), deleted=st.sets(st.integers(0, 30), max_size=3))
def test_every_modifier_equals_the_oracle(
    db: Engine, resources: list[dict[str, Any]], deleted: set[int]
) -> None:
    with db.begin() as conn:
        stored = store(conn, resources, deleted, LAST_UPDATED)
        oracle = Oracle(stored)
        for rtype, name, value in MODIFIER_CASES:
            query = parse(rtype, [(name, value), ("_count", "1000")], lenient=False, now_us=NOW)
            assert execute(conn, stored, query) == oracle.search(query), (rtype, name, value)
        conn.rollback()
