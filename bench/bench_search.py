"""Benchmark of FHIR search (https://hl7.org/fhir/R4/search.html) on PostgreSQL, at 100k and 1M Observations.

One command (from the repository root; see bench/README.md, section "Search benchmark"):

    .venv/bin/python bench/bench_search.py [--scales 100000:1000,1000000:10000] [--queries 200]

Per scale (Observations:Patients) it creates a database `searchbench_<random>`, migrates it
(`store.migrate.upgrade`), generates Patients and Observations (LOINC vital signs and labs, their
categories, effectiveDateTime over 2010-2024, UCUM valueQuantity, subject references), builds the
rows with `store.sql.serialise` + `search.index.index_rows` and writes `resource`,
`resource_version` and the index tables by binary COPY in batches (secondary indexes dropped during
the load and rebuilt after it), then VACUUM ANALYZE. It then times, through the search interaction
(`interactions.search.search`) and over HTTP against a `fhir-server serve` subprocess:

- (a) `Observation?patient=X&code=Y&date=geZ` for random X/Y/Z (p50 <= 10 ms, p95 <= 50 ms);
- (b) `Observation?code=Y&_count=100&_include=Observation:patient` (p50 <= 30 ms);
- (c) page 1 vs page 200 of `Observation?category=vital-signs&_count=100` following the `next`
  cursors, with and without `_sort=-date` (page 200 <= 1.5 x page 1);
- (f) `Observation?code=Y&_sort=-date` (the first 20 of tens of thousands of matches);

prints EXPLAIN ANALYZE of (a), and (d) loads the Synthea bundles (../shared/data/synthea-r4 from the repository root)
through the transaction interaction into a fresh database (>= 1,000 resources/s). Figures go to
bench/results/search-<time>.json. Databases are dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
import psycopg
from sqlalchemy import BigInteger, Boolean, Float, Integer, LargeBinary, String, inspect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fhir_server.interactions import search as search_interaction
from fhir_server.interactions.context import Context
from fhir_server.interactions.transaction import transaction
from fhir_server.search import plan
from fhir_server.search.index import COLUMNS, index_rows
from fhir_server.settings import Settings
from fhir_server.store import observation_rollup, schema, tables
from fhir_server.store.engine import make_engine
from fhir_server.store.migrate import upgrade
from fhir_server.store.sql import Store, serialise

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "synthea-r4"  # ../shared/data
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BASE = "http://bench.invalid/fhir"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
VITAL_PROFILE = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
FIRST = datetime(2010, 1, 1, tzinfo=UTC).timestamp()
LAST = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
TARGETS = {"a": (10.0, 50.0), "b": (30.0, None)}


@dataclass(frozen=True)
class Item:
    """One kind of Observation: LOINC code, UCUM unit, and a normal distribution of values."""

    code: str
    display: str
    unit: str
    mean: float
    sd: float
    decimals: int
    category: str


VITALS = [
    Item("8867-4", "Heart rate", "/min", 75, 12, 0, "vital-signs"),
    Item("9279-1", "Respiratory rate", "/min", 16, 3, 0, "vital-signs"),
    Item("8310-5", "Body temperature", "Cel", 37.0, 0.4, 1, "vital-signs"),
    Item("29463-7", "Body Weight", "kg", 78, 18, 1, "vital-signs"),
    Item("8302-2", "Body Height", "cm", 170, 10, 1, "vital-signs"),
    Item("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 26, 5, 1, "vital-signs"),
    Item("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 97, 2, 0, "vital-signs"),
    Item("85354-9", "Blood pressure panel with all children optional", "mm[Hg]", 122, 15, 0, "vital-signs"),
]
LABS = [
    Item("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 100, 25, 0, "laboratory"),
    Item("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 190, 35, 0, "laboratory"),
    Item("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 5.8, 0.9, 1, "laboratory"),
    Item("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 1.0, 0.25, 2, "laboratory"),
    Item("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 14, 1.5, 1, "laboratory"),
    Item("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 7, 2, 1, "laboratory"),
    Item("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 140, 3, 0, "laboratory"),
    Item("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 4.2, 0.4, 1, "laboratory"),
]
ITEMS = VITALS + LABS
LAB_PANEL_CHANCE = 0.4  # an encounter has a vital-sign set, and this often a lab panel too
GIVEN = ["Ana", "Ben", "Chloe", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Ivan", "Jia", "Kofi", "Lena"]
FAMILY = ["Smith", "Garcia", "Nguyen", "Okafor", "Müller", "Rossi", "Kowalski", "Tanaka", "Silva", "Ahmed"]
CITIES = [("Boston", "MA", "02118"), ("Springfield", "MA", "01103"), ("Worcester", "MA", "01608")]


# ---------------------------------------------------------------- helpers
def loadavg() -> str:
    """The 1/5/15-minute load averages as text."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def summary(times: list[float]) -> dict[str, Any]:
    """n, p50, p95, max of millisecond timings."""
    return {"n": len(times), "p50": pct(times, 50), "p95": pct(times, 95), "max": max(times, default=0.0)}


def psycopg_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as libpq understands it."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def new_database(admin: str) -> str:
    """Create a fresh `searchbench_<random>` database and return its URL."""
    name = f"searchbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin: str, url: str) -> None:
    """Drop a database this benchmark created."""
    name = url.rsplit("/", 1)[1]
    assert name.startswith("searchbench_"), name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_size(url: str) -> int:
    """Bytes on disk of the database."""
    with psycopg.connect(psycopg_url(url)) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def ensure_indexes(url: str) -> list[str]:
    """Create the tables, indexes and statistics declared that the migration does not (yet) have."""
    engine = make_engine(url)
    made = []
    try:
        schema.metadata.create_all(engine)  # tables newer than the generated migration (as the tests do)
        have = inspect(engine)
        for table in tables.metadata.sorted_tables:
            if not have.has_table(table.name):
                continue
            existing = {ix["name"]: ix["column_names"] for ix in have.get_indexes(table.name)}
            for index in table.indexes:
                columns = [c.name for c in index.columns]
                if existing.get(index.name) == columns:
                    continue
                if index.name in existing:  # declared with other columns than the migration made it
                    index.drop(engine)
                index.create(engine)
                made.append(str(index.name))
        with engine.begin() as conn:
            for ddl in getattr(tables, "POSTGRES_STATISTICS", {}).values():
                conn.exec_driver_sql(ddl)
    finally:
        engine.dispose()
    return made


# ---------------------------------------------------------------- data
@dataclass
class Dataset:
    """Deterministic synthetic data: patient ids and, per Observation, (patient, time, item)."""

    patients: int
    observations: int
    seed: int = 42

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.patient_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(self.patients)]
        weights = [rng.lognormvariate(0, 0.6) for _ in range(self.patients)]
        scale = self.observations / sum(weights)
        budget = [int(w * scale) for w in weights]
        for i in range(self.observations - sum(budget)):
            budget[i % self.patients] += 1
        who, when, what = array("i"), array("q"), array("b")
        labs = range(len(VITALS), len(ITEMS))
        for p, n in enumerate(budget):
            while n > 0:  # one encounter: the vital signs, sometimes a lab panel
                at = int(rng.uniform(FIRST, LAST))
                kinds = list(range(len(VITALS)))
                if rng.random() < LAB_PANEL_CHANCE:
                    kinds.extend(labs)
                for k in kinds[:n]:
                    who.append(p)
                    when.append(at + rng.randint(0, 600))
                    what.append(k)
                n -= len(kinds[:n])
        order = list(range(len(who)))
        rng.shuffle(order)  # arrival order mixes patients and dates, as a server's pk order does
        self.order = order
        self.who, self.when, self.what = who, when, what

    def batches(self, size: int) -> Iterator[tuple[int, int, list[tuple[int, str, int, int]]]]:
        """(batch, first pk, [(pk, patient id, epoch seconds, item), ...]) of Observations after the Patients."""
        pk = self.patients + 1
        for b, start in enumerate(range(0, len(self.order), size)):
            rows = []
            for i in self.order[start : start + size]:
                rows.append((pk, self.patient_ids[self.who[i]], self.when[i], self.what[i]))
                pk += 1
            yield b, rows[0][0], rows


def _value(rng: random.Random, item: Item, mean: float | None = None, sd: float | None = None) -> Any:
    x = max(rng.gauss(item.mean if mean is None else mean, item.sd if sd is None else sd), 0.01)
    return round(x) if item.decimals == 0 else round(x, item.decimals)


def _quantity(value: Any, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def make_patient(rid: str, rng: random.Random) -> dict[str, Any]:
    """A Patient with identifier, name, gender, birthDate, address and phone."""
    city, state, zip_code = rng.choice(CITIES)
    born = datetime.fromtimestamp(rng.uniform(-1.5e9, 1.2e9), UTC).date().isoformat()
    return {
        "resourceType": "Patient",
        "id": rid,
        "identifier": [
            {
                "type": _concept(
                    "http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical Record Number"
                ),
                "system": "http://hospital.example.org/mrn",
                "value": rid[:8],
            }
        ],
        "name": [{"use": "official", "family": rng.choice(FAMILY), "given": [rng.choice(GIVEN)]}],
        "telecom": [{"system": "phone", "value": f"555-{rng.randint(0, 9999):04d}", "use": "home"}],
        "gender": rng.choice(["male", "female"]),
        "birthDate": born,
        "address": [
            {"line": [f"{rng.randint(1, 999)} Main St"], "city": city, "state": state, "postalCode": zip_code}
        ],
    }


def make_observation(rid: str, patient: str, at: int, item: Item, rng: random.Random) -> dict[str, Any]:
    """An Observation as Synthea writes vital signs and labs (blood pressure with components)."""
    when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    out: dict[str, Any] = {"resourceType": "Observation", "id": rid}
    if item.category == "vital-signs":
        out["meta"] = {"profile": [VITAL_PROFILE]}
    out["status"] = "final"
    category = {"system": CATEGORY, "code": item.category, "display": item.category.replace("-", " ").title()}
    out["category"] = [{"coding": [category]}]
    out["code"] = _concept(LOINC, item.code, item.display)
    out["subject"] = {"reference": f"Patient/{patient}"}
    out["effectiveDateTime"] = when
    out["issued"] = when[:19] + ".000+00:00"
    if item.code == "85354-9":
        out["component"] = [
            {
                "code": _concept(LOINC, "8480-6", "Systolic blood pressure"),
                "valueQuantity": _quantity(_value(rng, item), item.unit),
            },
            {
                "code": _concept(LOINC, "8462-4", "Diastolic blood pressure"),
                "valueQuantity": _quantity(_value(rng, item, 80, 10), item.unit),
            },
        ]
    else:
        out["valueQuantity"] = _quantity(_value(rng, item), item.unit)
    return out


# ---------------------------------------------------------------- bulk load
def _pg_type(column: Any) -> str:
    kind = column.type
    for sa_type, name in ((BigInteger, "int8"), (Integer, "int4"), (Boolean, "bool"), (LargeBinary, "bytea")):
        if isinstance(kind, sa_type):
            return name
    if isinstance(kind, Float):
        return "float8"
    assert isinstance(kind, String), column
    return "text"


RESOURCE_COLS = ("pk", "res_type", "res_id", "version", "last_updated", "deleted", "content")
VERSION_COLS = (
    "resource_pk",
    "res_type",
    "res_id",
    "version",
    "last_updated",
    "deleted",
    "method",
    "content",
    "context",
)
# The write_context row every loaded version names (store/outbox.py), inserted by `load` before the COPY.
BENCH_CONTEXT = 1
COPY_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "resource": ("resource", RESOURCE_COLS),
    "resource_version": ("resource_version", VERSION_COLS),
    **{kind: (t.name, ("resource_pk", *COLUMNS[kind])) for kind, t in tables.INDEX_TABLES.items()},
}
COPY_TYPES = {
    key: [_pg_type(tables.metadata.tables[name].c[c]) for c in cols]
    for key, (name, cols) in COPY_TABLES.items()
}
FLOATS = {key: [i for i, ty in enumerate(COPY_TYPES[key]) if ty == "float8"] for key in COPY_TABLES}
Rows = dict[str, list[tuple[Any, ...]]]


def _add(out: Rows, pk: int, resource: dict[str, Any], lu: int) -> None:
    rid = resource["id"]
    content = serialise(resource, rid, 1, lu)
    rtype = resource["resourceType"]
    out["resource"].append((pk, rtype, rid, 1, lu, False, content))
    out["resource_version"].append((pk, rtype, rid, 1, lu, False, "POST", content, BENCH_CONTEXT))
    for kind, rows in index_rows(resource).items():
        cols = COLUMNS[kind]
        floats = FLOATS[kind]
        bucket = out[kind]
        for row in rows:
            values = [pk, *(row[c] for c in cols)]
            for i in floats:
                if values[i] is not None:
                    values[i] = float(values[i])
            bucket.append(tuple(values))


def build_rows(job: tuple[int, int, list[tuple[int, str, int, int]], int, int]) -> Rows:
    """COPY rows (resource, resource_version, index tables) of one batch of Observations."""
    batch, _, items, seed, lu0 = job
    rng = random.Random(seed * 1_000_003 + batch)
    out: Rows = {key: [] for key in COPY_TABLES}
    for pk, patient, at, kind in items:
        rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        _add(out, pk, make_observation(rid, patient, at, ITEMS[kind], rng), lu0 + pk)
    return out


def copy_rows(conn: psycopg.Connection[Any], rows: Rows) -> int:
    """Write a batch by binary COPY, table by table; returns the number of rows."""
    n = 0
    with conn.cursor() as cur:
        for key, batch in rows.items():
            if not batch:
                continue
            name, cols = COPY_TABLES[key]
            with cur.copy(f"COPY {name} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(COPY_TYPES[key])
                for row in batch:
                    copy.write_row(row)
            n += len(batch)
    return n


def _secondary_indexes(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    names = [name for name, _ in COPY_TABLES.values()]
    rows = conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname = ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
        (names,),
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def rebuild_rollup(conn: psycopg.Connection[Any]) -> None:
    """observation_value_rollup from the value rows at once, then its triggers on again (they were off
    for the COPY: store/observation_rollup.py)."""
    print("  observation_value_rollup ...", flush=True)
    for statement in observation_rollup.REBUILD:
        conn.execute(statement)
    conn.execute("ALTER TABLE idx_observation_value ENABLE TRIGGER USER")
    conn.commit()


def load(url: str, data: Dataset, batch: int, jobs: int) -> dict[str, Any]:
    """Migrate, then bulk-load the dataset by COPY (indexes rebuilt afterwards), then VACUUM ANALYZE."""
    t0 = time.perf_counter()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    ensure_indexes(url)
    lu0 = int(time.time() * 1e6)
    rows = 0
    work = ((b, first, items, data.seed, lu0) for b, first, items in data.batches(batch))
    # Fork the row builders before any connection is open (children must not share its socket).
    pool = multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 else None
    with psycopg.connect(psycopg_url(url)) as conn:
        conn.execute(
            "INSERT INTO write_context (id, source) VALUES (%s, 'import:bench') ON CONFLICT DO NOTHING",
            (BENCH_CONTEXT,),
        )
        conn.execute("SELECT setval(pg_get_serial_sequence('write_context', 'id'), %s)", (BENCH_CONTEXT,))
        indexes = _secondary_indexes(conn)
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        # the rollup's triggers would recompute every slot per COPY without the indexes: rebuilt after
        conn.execute("ALTER TABLE idx_observation_value DISABLE TRIGGER USER")
        conn.commit()
        prng = random.Random(data.seed)
        out: Rows = {key: [] for key in COPY_TABLES}
        for i, rid in enumerate(data.patient_ids):
            _add(out, i + 1, make_patient(rid, prng), lu0 + i + 1)
        rows += copy_rows(conn, out)
        conn.commit()
        done = data.patients
        try:
            produced = pool.imap(build_rows, work) if pool else map(build_rows, work)
            for built in produced:
                rows += copy_rows(conn, built)
                conn.commit()
                done += len(built["resource"])
                rate = (done - data.patients) / (time.perf_counter() - t0)
                print(f"\r  loaded {done:,} resources ({rate:,.0f} Observations/s)", end="", flush=True)
        finally:
            if pool is not None:
                pool.close()
                pool.join()
        print()
        total = data.patients + data.observations
        conn.execute("SELECT setval(pg_get_serial_sequence('resource', 'pk'), %s)", (total,))
        conn.commit()
        t_copy = time.perf_counter() - t0
        conn.execute("SET maintenance_work_mem = '512MB'")
        for name, ddl in indexes:
            print(f"  index {name} ...", flush=True)
            conn.execute(ddl)
            conn.commit()
        rebuild_rollup(conn)
        t_index = time.perf_counter() - t0 - t_copy
    with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
        for name, _ in COPY_TABLES.values():
            conn.execute(f"VACUUM (ANALYZE) {name}")
    t_all = time.perf_counter() - t0
    return {
        "resources": data.patients + data.observations,
        "rows": rows,
        "copy_s": round(t_copy, 1),
        "index_s": round(t_index, 1),
        "vacuum_analyze_s": round(t_all - t_copy - t_index, 1),
        "total_s": round(t_all, 1),
        "resources_per_s": round((data.patients + data.observations) / t_all),
        "db_bytes": database_size(url),
        "loadavg": loadavg(),
    }


# ---------------------------------------------------------------- searching
Params = list[tuple[str, str]]

# The searches this benchmark times ({patient}, {code}, {day} filled in per search by `shape`), and the
# two shapes issue 10 found slow before the first ANALYZE (a chain, and a value range of a code); the
# first pages of all of them are timed right after a Synthea load in tests/synthea/test_search_after_load.py.
SHAPES: dict[str, Params] = {
    "a": [("patient", "Patient/{patient}"), ("code", "{code}"), ("date", "ge{day}")],
    "b": [("code", "{code}"), ("_count", "100"), ("_include", "Observation:patient")],
    "c": [("category", f"{CATEGORY}|vital-signs"), ("_count", "100")],
    "c_sorted": [("category", f"{CATEGORY}|vital-signs"), ("_count", "100"), ("_sort", "-date")],
    "f": [("code", "{code}"), ("_sort", "-date")],
    "chain": [("subject:Patient.family", "{family}"), ("patient", "Patient/{patient}")],
    "value": [("code", "{code}"), ("value-quantity", "gt80"), ("_count", "20")],
    # a wearable alert: one patient's readings of a code above a threshold (bench/README.md "Fifteenth session")
    "alert": [("patient", "Patient/{patient}"), ("code-value-quantity", "{code}$gt80")],
}


def shape(name: str, **values: str) -> Params:
    """The search `name` of SHAPES with its placeholders filled in."""
    return [(key, value.format(**values)) for key, value in SHAPES[name]]


class Searcher:
    """Runs searches through the interaction function, and optionally over HTTP."""

    def __init__(self, url: str) -> None:
        self.settings = Settings(database_url=url, base_url=BASE, allow_anonymous=True)
        self.store = Store(make_engine(url), check_references=False, base=self.settings.base)
        self.ctx = Context(self.store, self.settings)
        self.http: httpx.Client | None = None

    def close(self) -> None:
        self.store.engine.dispose()

    def run(self, params: Params) -> tuple[float, dict[str, Any]]:
        """(milliseconds, Bundle) of one search through the interaction."""
        t0 = time.perf_counter()
        with self.store.read() as tx:
            out = search_interaction.search(self.ctx, tx, "Observation", params)
        return (time.perf_counter() - t0) * 1000, out

    def run_http(self, params: Params) -> tuple[float, dict[str, Any]]:
        """(milliseconds, Bundle) of the same search over HTTP (body read and parsed outside the timing)."""
        assert self.http is not None
        t0 = time.perf_counter()
        response = self.http.get("/Observation", params=tuple(params))
        elapsed = (time.perf_counter() - t0) * 1000
        response.raise_for_status()
        return elapsed, orjson.loads(response.content)

    def explain(self, params: Params) -> str:
        """EXPLAIN (ANALYZE, BUFFERS) of the page query the interaction runs for `params`."""
        with self.store.read() as tx:
            q = search_interaction.parse(self.ctx, "Observation", params, False)
            stmt = plan.build(
                q,
                base_url=self.settings.base,
                default_count=self.settings.default_count,
                terminology=search_interaction.terminology_for(self.ctx, tx),
            )
            compiled = stmt.compile(dialect=tx.conn.dialect, compile_kwargs={"render_postcompile": True})
            rows = tx.conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + compiled.string, compiled.params)
            return "\n".join(r[0] for r in rows)


def next_cursor(bundle: dict[str, Any]) -> str | None:
    """The `_cursor` of the Bundle's `next` link."""
    for link in bundle.get("link", []):
        if link["relation"] == "next":
            return dict(parse_qsl(urlsplit(link["url"]).query)).get("_cursor")
    return None


def repeat(fn: Callable[[Params], tuple[float, Any]], make: Callable[[], Params], n: int) -> list[float]:
    """Timings of `n` searches with fresh random parameters (after n/10 untimed warm-up searches)."""
    for _ in range(max(n // 10, 3)):
        fn(make())
    return [fn(make())[0] for _ in range(n)]


@dataclass
class Walk:
    """Per-page timings of one paging walk and the cursor of the deep page."""

    times: list[float]
    deep_cursor: str | None
    jumped: bool


def walk(s: Searcher, params: Params, pages: int, budget_s: float) -> Walk:
    """Follow `next` cursors from page 1 to page `pages` (or jump there when slower than `budget_s`)."""
    # Jumping: one page of the first (pages-1)*count rows gives the `next` cursor the walk would reach.
    count = int(dict(params)["_count"])
    t1, bundle = s.run(params)
    times = [t1]
    if t1 * pages / 1000 > budget_s:
        _, big = s.run([(k, v) if k != "_count" else (k, str((pages - 1) * count)) for k, v in params])
        cursor = next_cursor(big)
        if cursor is None:
            return Walk(times, None, True)
        t, _ = s.run([*params, ("_cursor", cursor)])
        return Walk([t1, t], cursor, True)
    cursor = next_cursor(bundle)
    deep: str | None = None
    while cursor is not None and len(times) < pages:
        deep = cursor
        t, bundle = s.run([*params, ("_cursor", cursor)])
        times.append(t)
        cursor = next_cursor(bundle)
    return Walk(times, deep, False)


def measure(s: Searcher, data: Dataset, n: int, walks: int, pages: int, budget_s: float) -> dict[str, Any]:
    """(a), (b), (c), (f) through the interaction."""
    rng = random.Random(7)

    def code() -> str:
        return f"{LOINC}|{rng.choice(ITEMS).code}"

    def date() -> str:
        return datetime.fromtimestamp(rng.uniform(FIRST, LAST), UTC).date().isoformat()

    def a() -> Params:
        return shape("a", patient=rng.choice(data.patient_ids), code=code(), day=date())

    def b() -> Params:
        return shape("b", code=code())

    def f() -> Params:
        return shape("f", code=code())

    def alert() -> Params:
        return shape("alert", patient=rng.choice(data.patient_ids), code=code())

    out: dict[str, Any] = {"loadavg_start": loadavg()}
    a_times = repeat(s.run, a, n)
    out["a"] = summary(a_times)
    print(f"  (a) p50 {out['a']['p50']:.1f} ms  p95 {out['a']['p95']:.1f} ms", flush=True)
    out["b"] = summary(repeat(s.run, b, max(n // 2, 10)))
    print(f"  (b) p50 {out['b']['p50']:.1f} ms  p95 {out['b']['p95']:.1f} ms", flush=True)
    out["f"] = summary(repeat(s.run, f, max(n // 4, 10)))
    print(f"  (f) p50 {out['f']['p50']:.1f} ms  p95 {out['f']['p95']:.1f} ms", flush=True)
    out["alert"] = summary(repeat(s.run, alert, max(n // 4, 10)))
    print(f"  (alert) p50 {out['alert']['p50']:.1f} ms  p95 {out['alert']['p95']:.1f} ms", flush=True)
    for name in ("c", "c_sorted"):
        params = shape(name)
        runs = [walk(s, params, pages, budget_s) for _ in range(walks)]
        first = [w.times[0] for w in runs]
        deep = [w.times[-1] for w in runs]
        out[name] = {
            "params": params,
            "pages_reached": max(len(w.times) for w in runs) if not runs[0].jumped else pages,
            "jumped": runs[0].jumped,
            "page1_ms": statistics.median(first),
            "deep_ms": statistics.median(deep),
            "ratio": statistics.median(deep) / statistics.median(first),
            "walk_ms_median_per_page": statistics.median([t for w in runs for t in w.times]),
            # steadier than single pages: the median of the first and of the last ten pages walked
            "first10_ms": statistics.median([t for w in runs for t in w.times[:10]]),
            "last10_ms": statistics.median([t for w in runs for t in w.times[-10:]]),
            "deep_cursor": runs[0].deep_cursor,
        }
        c = out[name]
        print(
            f"  ({name}) page 1 {c['page1_ms']:.1f} ms  page {c['pages_reached']} {c['deep_ms']:.1f} ms"
            f"  ratio {c['ratio']:.2f}{'  (jumped)' if c['jumped'] else ''}",
            flush=True,
        )
    rng = random.Random(7)
    out["explain_a"] = s.explain(a())
    out["explain_c_sorted_deep"] = (
        s.explain([*out["c_sorted"]["params"], ("_cursor", out["c_sorted"]["deep_cursor"])])
        if out["c_sorted"]["deep_cursor"]
        else ""
    )
    out["explain_f"] = s.explain(f())
    out["loadavg_end"] = loadavg()
    return out


def measure_http(s: Searcher, data: Dataset, n: int, found: dict[str, Any]) -> dict[str, Any]:
    """(a), (b), and pages 1 and deep of (c) over HTTP, against a running server."""
    rng = random.Random(7)

    def code() -> str:
        return f"{LOINC}|{rng.choice(ITEMS).code}"

    def a() -> Params:
        day = datetime.fromtimestamp(rng.uniform(FIRST, LAST), UTC).date().isoformat()
        return shape("a", patient=rng.choice(data.patient_ids), code=code(), day=day)

    def b() -> Params:
        return shape("b", code=code())

    out: dict[str, Any] = {"loadavg_start": loadavg()}
    out["a"] = summary(repeat(s.run_http, a, n))
    out["b"] = summary(repeat(s.run_http, b, max(n // 2, 10)))
    for name in ("c", "c_sorted"):
        params = found[name]["params"]
        cursor = found[name]["deep_cursor"]
        first = repeat(s.run_http, functools.partial(list, params), 5)
        deep_params = [*params, ("_cursor", cursor)]
        deep = repeat(s.run_http, functools.partial(list, deep_params), 5) if cursor else [math.nan]
        out[name] = {"page1_ms": statistics.median(first), "deep_ms": statistics.median(deep)}
    out["loadavg_end"] = loadavg()
    return out


@contextlib.contextmanager
def server(url: str) -> Iterator[str]:
    """`fhir-server serve` (1 worker) on a free port of 127.0.0.1; stopped at the end."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    base = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).parent / "fhir-server"
    env = {
        **os.environ,
        "FHIR_DATABASE_URL": url,
        "FHIR_ALLOW_ANONYMOUS": "true",
        "FHIR_BASE_URL": base,
        "FHIR_LOG_LEVEL": "warning",
    }
    cmd = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise SystemExit(f"the server exited:\n{log.read().decode(errors='replace')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the server did not answer /metadata within 120 s")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# ---------------------------------------------------------------- Synthea
def synthea_files(folder: Path) -> list[Path]:
    """The bundles, hospitalInformation* and practitionerInformation* first (the others refer to them)."""
    files = sorted(folder.glob("*.json"))
    shared = [p for p in files if p.name.startswith(("hospitalInformation", "practitionerInformation"))]
    return shared + [p for p in files if p not in shared]


def load_synthea(url: str, folder: Path, limit: int | None) -> dict[str, Any]:
    """Every bundle through the transaction interaction (full indexing, reference checks on)."""
    upgrade(make_engine(url))
    ensure_indexes(url)
    settings = Settings(database_url=url, base_url=BASE, allow_anonymous=True)
    store = Store(make_engine(url), check_references=True, base=settings.base)
    ctx = Context(store, settings)
    files = synthea_files(folder)[:limit]
    start = loadavg()
    busy = 0.0
    resources = 0
    try:
        for i, path in enumerate(files):
            body = orjson.loads(path.read_bytes())  # parsing JSON is the HTTP layer's part: not timed
            t0 = time.perf_counter()
            transaction(ctx, body)
            busy += time.perf_counter() - t0
            resources += len(body.get("entry", []))
            print(f"\r  bundle {i + 1}/{len(files)}: {resources / busy:,.0f} resources/s", end="", flush=True)
    finally:
        store.engine.dispose()
    print()
    return {
        "bundles": len(files),
        "resources": resources,
        "seconds": round(busy, 2),
        "resources_per_s": round(resources / busy),
        "loadavg_start": start,
        "loadavg_end": loadavg(),
    }


# ---------------------------------------------------------------- report
def _fmt(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def table(results: dict[str, Any]) -> str:
    """The figures of every scale side by side."""
    scales = list(results.get("scales", {}))
    head = ["measure", "target", *(f"{s} (interaction)" for s in scales), *(f"{s} (HTTP)" for s in scales)]
    lines = []

    def add(
        label: str, target: str, get: Callable[[dict[str, Any]], float | None], http: bool = True
    ) -> None:
        row = [label, target]
        for sc in scales:
            row.append(_fmt(get(results["scales"][sc]["search"])))
        for sc in scales:
            h = results["scales"][sc].get("http")
            row.append(_fmt(get(h)) if h and http else "-")
        lines.append(row)

    add("(a) p50 ms", "<= 10", lambda r: r["a"]["p50"])
    add("(a) p95 ms", "<= 50", lambda r: r["a"]["p95"])
    add("(b) p50 ms", "<= 30", lambda r: r["b"]["p50"])
    add("(b) p95 ms", "", lambda r: r["b"]["p95"])
    add("(c) page 1 ms", "", lambda r: r["c"]["page1_ms"])
    add("(c) page 200 ms", "<= 1.5 x p1", lambda r: r["c"]["deep_ms"])
    add("(c) pages 1-10 median ms", "", lambda r: r["c"].get("first10_ms"), http=False)
    add("(c) pages 191-200 median ms", "", lambda r: r["c"].get("last10_ms"), http=False)
    add("(c) -date page 1 ms", "", lambda r: r["c_sorted"]["page1_ms"])
    add("(c) -date page 200 ms", "<= 1.5 x p1", lambda r: r["c_sorted"]["deep_ms"])
    add("(c) -date pages 1-10 median ms", "", lambda r: r["c_sorted"].get("first10_ms"), http=False)
    add("(c) -date pages 191-200 median", "", lambda r: r["c_sorted"].get("last10_ms"), http=False)
    add("(f) code&_sort=-date p50 ms", "", lambda r: r["f"]["p50"], http=False)
    add("(f) code&_sort=-date p95 ms", "", lambda r: r["f"]["p95"], http=False)
    add("(alert) patient&code-value-quantity p50 ms", "", lambda r: r["alert"]["p50"], http=False)
    add("(alert) patient&code-value-quantity p95 ms", "", lambda r: r["alert"]["p95"], http=False)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=True)]
    text: list[str] = []
    if scales:
        text.append(" | ".join(str(x).ljust(w) for x, w in zip(head, widths, strict=True)))
        text.append("-+-".join("-" * w for w in widths))
        text += [" | ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)) for row in lines]
    if "synthea" in results:
        sy = results["synthea"]
        text.append(
            f"(d) Synthea via transaction: {sy['resources']:,} resources in {sy['seconds']} s = "
            f"{sy['resources_per_s']:,}/s (target >= 1,000/s), load average {sy['loadavg_start']} -> {sy['loadavg_end']}"
        )
    for sc in scales:
        ld = results["scales"][sc].get("load")
        if ld:
            text.append(
                f"load {sc}: {ld['resources']:,} resources, {ld['rows']:,} rows: COPY {ld['copy_s']} s, "
                f"indexes {ld['index_s']} s, VACUUM ANALYZE {ld['vacuum_analyze_s']} s "
                f"({ld['resources_per_s']:,} resources/s, {ld['db_bytes'] / 1e9:.2f} GB)"
            )
        sr = results["scales"][sc]["search"]
        text.append(f"load average during {sc} searches: {sr['loadavg_start']} -> {sr['loadavg_end']}")
    return "\n".join(text)


def run_scale(args: argparse.Namespace, obs: int, patients: int) -> dict[str, Any]:
    """Create (or reuse), load, measure, and drop one database."""
    data = Dataset(patients, obs, seed=args.seed)
    url = args.reuse_db if args.reuse_db else new_database(args.admin)
    print(f"scale {obs:,} Observations / {patients:,} Patients on {url.rsplit('/', 1)[1]}", flush=True)
    out: dict[str, Any] = {"database": url.rsplit("/", 1)[1]}
    try:
        if args.reuse_db:
            out["indexes_created"] = ensure_indexes(url)
            with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
                conn.execute("ANALYZE")
        else:
            out["load"] = load(url, data, args.batch, args.jobs)
        if args.load_only:
            return out
        s = Searcher(url)
        try:
            out["search"] = measure(s, data, args.queries, args.walks, args.pages, args.walk_budget)
            if not args.no_http:
                with server(url) as base, httpx.Client(base_url=base, timeout=600) as client:
                    s.http = client
                    out["http"] = measure_http(s, data, max(args.queries // 2, 20), out["search"])
        finally:
            s.close()
        print("EXPLAIN ANALYZE of (a):\n" + out["search"]["explain_a"], flush=True)
    finally:
        if args.keep or args.reuse_db or args.load_only:
            print(f"  kept database {url.rsplit('/', 1)[1]}")
        else:
            drop_database(args.admin, url)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", default="100000:1000,1000000:10000", help="OBSERVATIONS:PATIENTS,...")
    parser.add_argument("--queries", type=int, default=200, help="timed searches of (a); half for (b)")
    parser.add_argument("--walks", type=int, default=3, help="paging walks per variant of (c)")
    parser.add_argument("--pages", type=int, default=200, help="the deep page of (c)")
    parser.add_argument(
        "--walk-budget", type=float, default=120.0, help="seconds before (c) jumps to the deep page"
    )
    parser.add_argument("--batch", type=int, default=5000, help="Observations per COPY batch")
    parser.add_argument("--jobs", type=int, default=2, help="processes building rows")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP measurements")
    parser.add_argument("--no-synthea", action="store_true", help="skip (d)")
    parser.add_argument("--only-synthea", action="store_true", help="only (d)")
    parser.add_argument("--synthea", type=Path, default=DEFAULT_DATA, help="folder of Synthea bundles")
    parser.add_argument("--synthea-limit", type=int, default=None, help="bundles of (d)")
    parser.add_argument("--keep", action="store_true", help="keep the databases (their names are printed)")
    parser.add_argument(
        "--load-only", action="store_true", help="generate and load, keep the database, measure nothing"
    )
    parser.add_argument("--reuse-db", help="URL of a database loaded by an earlier --keep run (one scale)")
    parser.add_argument(
        "--admin", default=PG_ADMIN, help="PostgreSQL URL of a database to create others from"
    )
    args = parser.parse_args()
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "started": started.isoformat(),
        "loadavg_start": loadavg(),
        "args": vars(args) | {"synthea": str(args.synthea)},
        "scales": {},
    }
    RESULTS.mkdir(exist_ok=True)
    out_path = RESULTS / f"search-{started:%Y%m%d-%H%M%S}.json"
    if not args.only_synthea:
        for spec in args.scales.split(","):
            obs, _, patients = spec.partition(":")
            label = f"{int(obs) // 1000}k"
            results["scales"][label] = run_scale(args, int(obs), int(patients or max(int(obs) // 100, 1)))
            out_path.write_text(json.dumps(results, indent=2, default=str))
    if not args.no_synthea and not args.load_only:
        url = new_database(args.admin)
        print(f"(d) Synthea on {url.rsplit('/', 1)[1]}", flush=True)
        try:
            results["synthea"] = load_synthea(url, args.synthea, args.synthea_limit)
        finally:
            if args.keep:
                print(f"  kept database {url.rsplit('/', 1)[1]}")
            else:
                drop_database(args.admin, url)
    results["loadavg_end"] = loadavg()
    out_path.write_text(json.dumps(results, indent=2, default=str))
    print()
    if not args.load_only:
        print(table(results))
    print(f"\nJSON: {out_path}")


if __name__ == "__main__":
    main()
