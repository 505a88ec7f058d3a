"""Benchmark of the clinical operations on PostgreSQL: Patient/$everything, Observation/$lastn, Observation/$stats
(https://hl7.org/fhir/R4/patient-operation-everything.html, https://hl7.org/fhir/R4/observation-operations.html).

One command (from the repository root; bench/README.md, section "Clinical operations"):

    .venv/bin/python bench/bench_clinical.py [--observations 1000000 --patients 10000] [--minutes 525600]

It creates a database `searchbench_<random>` and loads, by binary COPY, the synthetic Observations of
bench/bench_search.py (vital signs with blood pressure panels, labs; `--observations` over
`--patients`; every index table, idx_observation_value included, filled from the server's own
`search.index.index_rows`), then one more patient with a heart rate every minute for a year (`--minutes`,
2024-01-01T00:00Z on), then a few Synthea patients of about 300 resources (`--synthea N` bundles
from ../shared/data/synthea-r4, through the transaction interaction, with the organisations and
practitioners they reference). It then times, through the operation functions (one read
transaction each, as a request runs them):

- `$everything` of each Synthea patient, the whole record on one page (`_count=1000`): target p50 <= 30 ms;
- `$lastn?patient=X&category=vital-signs&max=1` for random synthetic patients: target p50 <= 20 ms;
- `$stats?subject=X&code=85354-9&statistic=average,minimum,maximum,count` (a blood pressure panel);
- the hourly series over the heart-rate year (`interval=hour&timezone=Europe/Berlin`, 8,784 buckets of
  average, minimum, maximum, count): target <= 300 ms; and the daily series.

Figures (p50, p95, n) go to bench/results/clinical-<time>.json. The database is dropped unless --keep.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_search as bs
from fhir_server.interactions.context import Context
from fhir_server.interactions.transaction import transaction
from fhir_server.operations import observation_lastn, observation_stats, patient_everything
from fhir_server.operations.parameters import from_query
from fhir_server.settings import Settings
from fhir_server.store.engine import make_engine
from fhir_server.store.sql import Store
from fhir_server.warmup import warm_up

RESULTS = Path(__file__).resolve().parent / "results"
YEAR_START = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
HEART = bs.VITALS[0]
TARGETS = {"everything": 30.0, "lastn": 20.0, "stats_hourly_year": 300.0}


def load_heart_rate_year(url: str, minutes: int, seed: int) -> tuple[str, dict[str, Any]]:
    """One more Patient with a heart rate every minute from 2024-01-01T00:00Z, by COPY; its id.
    Resumes where an interrupted load of the same seed stopped (`--reuse-db`)."""
    t0 = time.perf_counter()
    rng = random.Random(f"heart-rate-year-{seed}")  # not the synthetic patients' sequence
    patient = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    lu0 = int(time.time() * 1e6)
    with psycopg.connect(bs.psycopg_url(url)) as conn:
        row = conn.execute("SELECT coalesce(max(pk), 0) FROM resource").fetchone()
        pk = int(row[0]) + 1 if row else 1
        found = conn.execute(
            "SELECT count(*) FROM idx_reference WHERE target_type = 'Patient' AND target_id = %s", (patient,)
        ).fetchone()
        done = int(found[0]) if found else 0  # one subject (and one patient) row per Observation
        done //= 2
        out: bs.Rows = {key: [] for key in bs.COPY_TABLES}
        exists = conn.execute(
            "SELECT 1 FROM resource WHERE res_type = 'Patient' AND res_id = %s", (patient,)
        ).fetchone()
        if not exists:
            bs._add(out, pk, bs.make_patient(patient, rng), lu0 + pk)
        conn.execute("ALTER TABLE idx_observation_value DISABLE TRIGGER USER")  # rollup: rebuilt below
        rng = random.Random(f"heart-rate-year-{seed}-{done}")
        for minute in range(done, minutes):
            pk += 1
            rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            obs = bs.make_observation(rid, patient, YEAR_START + 60 * minute, HEART, rng)
            bs._add(out, pk, obs, lu0 + pk)
            if len(out["resource"]) >= 20_000:
                bs.copy_rows(conn, out)
                conn.commit()
                out = {key: [] for key in bs.COPY_TABLES}
                print(f"\r  heart-rate year: {minute + 1:,}/{minutes:,}", end="", flush=True)
        bs.copy_rows(conn, out)
        conn.execute("SELECT setval(pg_get_serial_sequence('resource', 'pk'), %s)", (pk,))
        conn.commit()
        print()
        bs.rebuild_rollup(conn)
    with psycopg.connect(bs.psycopg_url(url), autocommit=True) as conn:
        for name, _ in bs.COPY_TABLES.values():
            conn.execute(f"VACUUM (ANALYZE) {name}")
    loaded = {"observations": minutes, "resumed_at": done, "seconds": round(time.perf_counter() - t0, 1)}
    return patient, loaded


def typical_synthea(folder: Path, count: int, target: int = 300) -> list[Path]:
    """The `count` patient bundles whose entry counts are closest to `target` (among the smallest files)."""
    people = sorted(
        (p for p in folder.glob("*.json") if not p.name.startswith(("hospital", "practitioner"))),
        key=lambda p: p.stat().st_size,
    )[: max(count * 4, 12)]
    sized = [(abs(len(orjson.loads(p.read_bytes())["entry"]) - target), p) for p in people]
    return [p for _, p in sorted(sized)[:count]]


def load_synthea(ctx: Context, folder: Path, count: int) -> list[tuple[str, int]]:
    """Organisations, practitioners and `count` typical patients; (Patient id, bundle entries) each."""
    for shared in sorted(folder.glob("hospitalInformation*.json")) + sorted(
        folder.glob("practitionerInformation*.json")
    ):
        transaction(ctx, orjson.loads(shared.read_bytes()))
    out = []
    for path in typical_synthea(folder, count):
        bundle = orjson.loads(path.read_bytes())
        response = transaction(ctx, bundle)
        for sent, done in zip(bundle["entry"], response["entry"], strict=True):
            if sent["resource"]["resourceType"] == "Patient":
                out.append((done["response"]["location"].split("/")[1], len(bundle["entry"])))
    return out


def timed(fn: Callable[[], Any], n: int, warm: int = 2) -> tuple[dict[str, Any], Any]:
    """p50/p95 (ms) of n calls after `warm` untimed ones; the last answer."""
    answer = None
    for _ in range(warm):
        answer = fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        answer = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {**bs.summary(times), "n": n}, answer


def measure(
    ctx: Context, synthea: list[tuple[str, int]], patients: list[str], heart: str, n: int
) -> dict[str, Any]:
    def run(work: Callable[..., Any], params: list[tuple[str, str]], *args: Any) -> Any:
        with ctx.store.read() as tx:
            return work(ctx, tx, from_query(params), *args)

    out: dict[str, Any] = {}
    rng = random.Random(7)
    if synthea:
        runs, sizes = [], []
        for pid, _ in synthea:
            stats, bundle = timed(
                lambda pid=pid: run(patient_everything.everything_bundle, [("_count", "1000")], pid), n
            )
            runs.append(stats)
            sizes.append(len(bundle["entry"]))
        out["everything"] = {
            "p50": round(statistics.median(r["p50"] for r in runs), 2),
            "p95": round(max(r["p95"] for r in runs), 2),
            "resources": sizes,
            "n": n * len(synthea),
        }
    category = f"{bs.CATEGORY}|vital-signs"
    lastn_runs = []
    for _ in range(n):
        pid = rng.choice(patients)
        params = [("patient", f"Patient/{pid}"), ("category", category), ("max", "1")]
        t0 = time.perf_counter()
        answer = run(observation_lastn.lastn, params)
        lastn_runs.append((time.perf_counter() - t0) * 1000)
    out["lastn"] = {**bs.summary(lastn_runs), "n": n, "entries_last": len(answer.get("entry", []))}
    stats_runs = []
    for _ in range(n):
        pid = rng.choice(patients)
        params = [
            ("subject", f"Patient/{pid}"),
            ("code", "85354-9"),
            ("system", bs.LOINC),
            ("statistic", "average,minimum,maximum,count"),
        ]
        t0 = time.perf_counter()
        run(observation_stats.stats, params)
        stats_runs.append((time.perf_counter() - t0) * 1000)
    out["stats_panel"] = {**bs.summary(stats_runs), "n": n}
    if heart:
        for interval in ("hour", "day"):
            params = [
                ("subject", f"Patient/{heart}"),
                ("code", HEART.code),
                ("system", bs.LOINC),
                ("statistic", "average,minimum,maximum,count"),
                ("interval", interval),
                ("timezone", "Europe/Berlin"),
            ]
            stats, answer = timed(
                lambda params=params: run(observation_stats.stats, params), max(n // 10, 3), 1
            )
            out[f"stats_{interval}ly_year".replace("dayly", "daily")] = {
                **stats,
                "buckets": len(answer["parameter"]),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--observations", type=int, default=100_000)
    parser.add_argument("--patients", type=int, default=1_000)
    parser.add_argument(
        "--minutes", type=int, default=525_600, help="heart rates of the one patient (0: none)"
    )
    parser.add_argument("--synthea", type=int, default=3, help="typical Synthea patients for $everything")
    parser.add_argument("--data", type=Path, default=bs.DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=50, help="timed calls per measurement")
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--admin", default=bs.PG_ADMIN)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--reuse-db", default="", help="a kept (or interrupted) database of the same scale and seed"
    )
    args = parser.parse_args()

    url = args.admin.rsplit("/", 1)[0] + "/" + args.reuse_db if args.reuse_db else bs.new_database(args.admin)
    print(
        f"{args.observations:,} Observations / {args.patients:,} Patients on {url.rsplit('/', 1)[1]}",
        flush=True,
    )
    results: dict[str, Any] = {"scale": vars(args) | {"data": str(args.data)}, "loadavg_start": bs.loadavg()}
    try:
        data = bs.Dataset(args.patients, args.observations, seed=args.seed)
        if not args.reuse_db:
            results["load"] = bs.load(url, data, args.batch, args.jobs)
        heart = ""
        if args.minutes:
            heart, results["heart_rate_load"] = load_heart_rate_year(url, args.minutes, args.seed)
        settings = Settings(database_url=url, base_url=bs.BASE, allow_anonymous=True)
        store = Store(make_engine(url), check_references=True, base=settings.base)
        ctx = Context(store, settings)
        try:
            synthea = load_synthea(ctx, args.data, args.synthea) if args.synthea else []
            with psycopg.connect(bs.psycopg_url(url), autocommit=True) as conn:
                # VACUUM too: right after a bulk COPY of a million rows no page is marked all-visible,
                # so index-only scans visit the heap and autovacuum works through the tables during
                # the timings (the first $lastn p50 measured that way was 23.6 ms, the next runs on
                # the same database 14.9 and 11.5); a served database is in the vacuumed state.
                conn.execute("VACUUM (ANALYZE)")
            warm_up()  # as a served process does (app.py): models loaded, long-lived objects frozen out of gc
            results["measure"] = measure(ctx, synthea, data.patient_ids, heart, args.runs)
        finally:
            store.engine.dispose()
    finally:
        if args.keep or args.reuse_db:
            print(f"  kept database {url.rsplit('/', 1)[1]}")
        else:
            bs.drop_database(args.admin, url)
    results["loadavg_end"] = bs.loadavg()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"clinical-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"{'measurement':<22} {'p50 ms':>9} {'p95 ms':>9} {'target':>8}")
    for name, figures in results["measure"].items():
        target = TARGETS.get(name)
        print(f"{name:<22} {figures['p50']:>9.1f} {figures['p95']:>9.1f} {target if target else '':>8}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
