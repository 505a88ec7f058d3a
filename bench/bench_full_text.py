"""Benchmark of `_text` / `_content` search (https://hl7.org/fhir/R4/search.html#text) on PostgreSQL, Synthea data.

One command (from the repository root):

    .venv/bin/python bench/bench_full_text.py [--limit N] [--queries 200] [--data ../shared/data/synthea-r4]

It creates a database `fulltextbench_<random>`, migrates it, loads the Synthea bundles (hospital and
practitioner ones first, then `--limit` patient bundles, default all) through the transaction
interaction (so the text index is written by the one write path), runs VACUUM ANALYZE, and times
searches through the search interaction (`interactions.search.search`, in process, default page
size), each with words drawn from the stored text (a random resource's `_content` words, so common
words come up as often as they occur):

- `content-1`: `Observation?_content=<word>`; `content-2`: `Condition?_content=<w1> <w2>` (AND);
- `phrase`: `Encounter?_content="<w1> <w2>"` (two words in a row); `prefix`: `Procedure?_content=<wor>*`;
- `text`: `Patient?_text=<word of a narrative>` and `CarePlan?_text=...` (Synthea writes few narratives);
- `with-patient`: `Observation?_content=<word>&patient=<id>`; `system`: `?_content=<word>&_type=...`.

Target: p50 <= 50 ms for `_text`/`_content` (issue 12). It also prints the CPU per Synthea resource of
its index rows and of the text rows alone (the write cost of the text index in Python; the
database's side: `bench/cpu_per_op.py --compare <tree without it>`). Prints a table with the load average and writes
bench/results/full-text-<time>.json; the database is dropped unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fhir_server.interactions import search as search_interaction
from fhir_server.interactions.context import Context
from fhir_server.interactions.transaction import transaction
from fhir_server.search import full_text
from fhir_server.search.index import index_tuples
from fhir_server.search.parameters import param_id
from fhir_server.settings import Settings
from fhir_server.store.engine import make_engine
from fhir_server.store.migrate import upgrade
from fhir_server.store.sql import Store

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "synthea-r4"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BASE = "http://bench.invalid/fhir"


def loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def summary(times: list[float]) -> dict[str, Any]:
    ordered = sorted(times)

    def pct(p: float) -> float:
        return round(ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))], 2)

    return {"n": len(times), "p50": pct(50), "p95": pct(95), "max": round(ordered[-1], 2)}


def load(ctx: Context, folder: Path, limit: int | None) -> dict[str, Any]:
    files = sorted(folder.glob("*.json"))
    shared = [p for p in files if p.name.startswith(("hospitalInformation", "practitionerInformation"))]
    people = [p for p in files if p not in shared][:limit]
    resources, busy = 0, 0.0
    for i, path in enumerate(shared + people):
        body = orjson.loads(path.read_bytes())
        t0 = time.perf_counter()
        transaction(ctx, body)
        busy += time.perf_counter() - t0
        resources += len(body.get("entry", []))
        print(f"\r  bundle {i + 1}/{len(shared) + len(people)}: {resources / busy:,.0f} resources/s", end="")
    print()
    return {"bundles": len(shared) + len(people), "resources": resources, "seconds": round(busy, 1)}


def index_cost(folder: Path, limit: int | None) -> dict[str, Any]:
    """CPU µs per Synthea resource of its index rows (`index_tuples`) and of the text rows alone."""
    files = sorted(p for p in folder.glob("*.json") if not p.name.startswith(("hospital", "practitioner")))
    resources = [e["resource"] for p in files[:limit] for e in orjson.loads(p.read_bytes())["entry"]]
    for r in resources:
        r.setdefault("id", "x")
    index_tuples(resources[0])  # compile the plans outside the timing
    t0 = time.process_time()
    for r in resources:
        index_tuples(r)
    every = time.process_time() - t0
    t0 = time.process_time()
    for r in resources:
        full_text.document(full_text.content(r))
        full_text.document(full_text.narrative(r))
    text = time.process_time() - t0
    out = {
        "resources": len(resources),
        "index_rows_us": round(every / len(resources) * 1e6, 1),
        "text_rows_us": round(text / len(resources) * 1e6, 1),
        "loadavg": loadavg(),
    }
    print(f"  index CPU per resource: {out}")
    return out


def words_of(raw: psycopg.Connection[Any], res_type: str, code: str, n: int, rng: random.Random) -> list[str]:
    """Words of the text of random resources of a type (frequent words come up often)."""
    rows = raw.execute(
        "SELECT body FROM idx_text WHERE param_id = %s ORDER BY random() LIMIT %s",
        (param_id(res_type, code), n),
    ).fetchall()
    out = []
    for (body,) in rows:
        candidates = [w for w in body.split() if w.isalpha() and len(w) >= 4] or body.split()
        out.append(rng.choice(candidates))
    return out


def phrases_of(raw: psycopg.Connection[Any], res_type: str, n: int, rng: random.Random) -> list[str]:
    rows = raw.execute(
        "SELECT body FROM idx_text WHERE param_id = %s ORDER BY random() LIMIT %s",
        (param_id(res_type, "_content"), n),
    ).fetchall()
    out = []
    for (body,) in rows:
        split = body.split()
        i = rng.randrange(max(1, len(split) - 1))
        out.append('"' + " ".join(split[i : i + 2]) + '"')
    return out


def measure(ctx: Context, url: str, n: int) -> dict[str, Any]:
    rng = random.Random(12)
    with psycopg.connect(url) as raw:
        obs = words_of(raw, "Observation", "_content", n, rng)
        cond = words_of(raw, "Condition", "_content", 2 * n, rng)
        proc = words_of(raw, "Procedure", "_content", n, rng)
        narratives = words_of(raw, "Patient", "_text", n // 2, rng) + words_of(
            raw, "CarePlan", "_text", n // 2, rng
        )
        phrases = phrases_of(raw, "Encounter", n, rng)
        patients = [r[0] for r in raw.execute("SELECT res_id FROM resource WHERE res_type = 'Patient'")]
    shapes: dict[str, list[tuple[str | None, list[tuple[str, str]]]]] = {
        "content-1": [("Observation", [("_content", w)]) for w in obs],
        "content-2": [
            ("Condition", [("_content", f"{a} {b}")]) for a, b in zip(cond[::2], cond[1::2], strict=False)
        ],
        "phrase": [("Encounter", [("_content", p)]) for p in phrases],
        "prefix": [("Procedure", [("_content", w[: max(3, len(w) - 2)] + "*")]) for w in proc],
        "text": [
            (rt, [("_text", w)]) for rt, w in zip(["Patient", "CarePlan"] * n, narratives, strict=False)
        ],
        "with-patient": [("Observation", [("_content", w), ("patient", rng.choice(patients))]) for w in obs],
        "system": [(None, [("_content", w), ("_type", "Observation,Condition,Procedure")]) for w in cond[:n]],
    }
    out: dict[str, Any] = {}
    for name, queries in shapes.items():
        times, hits = [], 0
        for res_type, params in queries:
            t0 = time.perf_counter()
            with ctx.store.read() as tx:
                bundle = search_interaction.search(ctx, tx, res_type, params)
            times.append((time.perf_counter() - t0) * 1000)
            hits += bool(bundle.get("entry"))
        out[name] = {**summary(times), "with_results": hits, "loadavg": loadavg()}
        print(
            f"  {name:13} p50 {out[name]['p50']:7.2f} ms  p95 {out[name]['p95']:7.2f} ms  "
            f"({hits}/{len(queries)} found something; load {out[name]['loadavg']})"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None, help="patient bundles loaded (default all)")
    parser.add_argument("--queries", type=int, default=200, help="searches per shape")
    parser.add_argument("--pg-admin", default=PG_ADMIN)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    name = f"fulltextbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.pg_admin, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = args.pg_admin.rsplit("/", 1)[0] + f"/{name}"
    sa_url = url.replace("postgresql://", "postgresql+psycopg://")
    engine = make_engine(sa_url)
    try:
        upgrade(engine)
        settings = Settings(database_url=sa_url, base_url=BASE, allow_anonymous=True)
        ctx = Context(Store(engine, check_references=True, base=settings.base), settings)
        print(f"loading {args.data} (load average {loadavg()})")
        loaded = load(ctx, args.data, args.limit)
        with psycopg.connect(url, autocommit=True) as raw:
            raw.execute("VACUUM ANALYZE")
            sizes = raw.execute(
                "SELECT count(*), pg_size_pretty(pg_total_relation_size('idx_text')),"
                " pg_size_pretty(pg_relation_size('ix_idx_text_fts')),"
                " pg_size_pretty(pg_database_size(current_database())) FROM idx_text"
            ).fetchone()
        assert sizes is not None
        loaded.update(text_rows=sizes[0], idx_text_total=sizes[1], gin_index=sizes[2], database=sizes[3])
        print(f"  {loaded}")
        results = {
            "loaded": loaded,
            "search": measure(ctx, url, args.queries),
            "index_cpu": index_cost(args.data, args.limit),
            "loadavg_end": loadavg(),
        }
    finally:
        engine.dispose()
        if not args.keep:
            with psycopg.connect(args.pg_admin, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"full-text-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
