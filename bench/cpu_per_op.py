"""CPU milliseconds per operation, in-process, for comparing two source trees (docs/events.md "Cost").

Measures, on a fresh database, the CPU of this process plus its PostgreSQL backends (from /proc) per:

- single create (`create` interaction in `Store.transact`, reference checked);
- entry of a 1,000-entry transaction Bundle of new Observations;
- entry of the Synthea transaction Bundles (`--synthea`, default ../shared/data/synthea-r4 beside the
  repository; `--synthea-limit` patient bundles after the hospital and practitioner ones);
- resource of an NDJSON `$import` load (`jobs/import_.load`) of `--imports` Observations about 1,000
  Patients (five codes, a year of dates);
- read by id (`interactions/read.read`) of random imported Observations;
- search, over what was imported (`interactions/search.search`, five shapes, together and each alone
  as search_1..5: patient + code sorted by date, patient, code + one day, patient + code with
  `_include`, `_summary=count` of a code).

No HTTP: what changes with the store, search and write path, not with the web stack. The machine is
shared, so compare two trees with alternating runs and medians:

    .venv/bin/python bench/cpu_per_op.py                       # this tree, PostgreSQL
    .venv/bin/python bench/cpu_per_op.py --sqlite
    .venv/bin/python bench/cpu_per_op.py --compare ../before   # this tree against another, alternating
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TICK = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_SYNTHEA = REPO / ".." / "shared" / "data" / "synthea-r4"
CODES = ("8867-4", "8480-6", "8462-4", "29463-7", "2339-0")
PATIENTS = 1000
SEARCHES = (
    [("patient", "p17"), ("code", "http://loinc.org|8867-4"), ("_sort", "-date"), ("_count", "10")],
    [("patient", "p42"), ("_count", "50")],
    [("code", "8480-6"), ("date", "ge2024-06-01"), ("date", "lt2024-06-02"), ("_count", "20")],
    [("patient", "p7"), ("code", "29463-7"), ("_include", "Observation:patient"), ("_count", "20")],
    [("code", "2339-0"), ("_summary", "count")],
)


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _observation(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": CODES[i % len(CODES)]}]},
        "subject": {"reference": f"Patient/p{(i // len(CODES)) % PATIENTS}"},
        "effectiveDateTime": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
        "valueQuantity": {"value": 60 + i % 40, "unit": "/min"},
    }


def _synthea_files(folder: Path, limit: int) -> list[Path]:
    files = sorted(folder.glob("*.json"))
    first = [f for f in files if f.name.startswith(("hospitalInformation", "practitionerInformation"))]
    return first + [f for f in files if f not in first][:limit]


def measure_tree(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure for the tree at args.root, on a fresh database."""
    sys.path.insert(0, str(args.root.resolve()))
    logging.getLogger("fhir_server").setLevel(logging.CRITICAL)  # the background ANALYZE at drop time
    import orjson
    from sqlalchemy import create_engine, text

    from fhir_server.auth import scopes
    from fhir_server.auth.principal import Principal
    from fhir_server.interactions import create, read, search
    from fhir_server.interactions.context import Context
    from fhir_server.interactions.transaction import transaction
    from fhir_server.jobs import import_
    from fhir_server.settings import Settings
    from fhir_server.store.engine import make_engine
    from fhir_server.store.migrate import upgrade
    from fhir_server.store.sql import Store

    assert Path(create.__file__).resolve().is_relative_to(args.root.resolve()), create.__file__
    n = args.creates
    tmp = Path(tempfile.mkdtemp())
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    db = f"bench_cpu_{uuid.uuid4().hex[:8]}"
    if args.sqlite:
        url = f"sqlite:///{tmp / 'bench.db'}"
    else:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {db}"))
        url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    engine = make_engine(url, pool_size=2)
    upgrade(engine)
    store = Store(engine, check_references=True, base="http://bench")
    writer = Principal(client_id="bench", kind="system", scopes=scopes.parse("system/*.cruds"))
    ctx = Context(store=store, settings=Settings(base_url="http://bench"), principal=writer)
    transact = getattr(ctx, "transact", None) or store.transact  # trees before Context.transact
    with store.write() as tx:
        for p in range(PATIENTS):
            tx.create({"resourceType": "Patient", "active": True, "name": [{"family": f"P{p}"}]}, f"p{p}")

    def backends() -> list[int]:
        if args.sqlite:
            return []
        with admin.connect() as conn:
            query = text("SELECT pid FROM pg_stat_activity WHERE datname = :d")
            return [row[0] for row in conn.execute(query, {"d": db})]

    def measure(work: Callable[[], object], count: int) -> dict[str, float]:
        pids = backends()
        before = {pid: _proc_cpu(pid) for pid in pids}
        cpu, wall = time.process_time(), time.perf_counter()
        work()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        db_cpu = sum(_proc_cpu(pid) - before[pid] for pid in pids if Path(f"/proc/{pid}").exists())
        return {
            "client_ms": 1000 * cpu / count,
            "db_ms": 1000 * db_cpu / count,
            "total_ms": 1000 * (cpu + db_cpu) / count,
            "wall_ms": 1000 * wall / count,
        }

    def singles(count: int) -> None:
        for i in range(count):
            body = _observation(i)
            transact(lambda tx: create.create(ctx, tx, "Observation", body))  # noqa: B023

    entries = [
        {"resource": _observation(i), "request": {"method": "POST", "url": "Observation"}}
        for i in range(1000)
    ]
    bundles = max(1, n // 1000)

    def load_bundles() -> None:
        for _ in range(bundles):
            transaction(ctx, {"resourceType": "Bundle", "type": "transaction", "entry": entries})

    synthea = [orjson.loads(f.read_bytes()) for f in _synthea_files(args.synthea, args.synthea_limit)]
    synthea_entries = sum(len(b.get("entry") or []) for b in synthea)

    def load_synthea() -> None:
        for bundle in synthea:
            transaction(ctx, bundle)

    ndjson = tmp / "observations.ndjson"
    ndjson.write_bytes(
        b"".join(orjson.dumps({**_observation(i), "id": f"i{i}"}) + b"\n" for i in range(args.imports))
    )
    rng = random.Random(7)
    read_ids = [f"i{rng.randrange(args.imports)}" for _ in range(args.reads)]

    def reads() -> None:
        for rid in read_ids:
            with store.read() as tx:
                read.read(tx, "Observation", rid, principal=writer)

    def searches() -> None:
        for _ in range(args.searches):
            for params in SEARCHES:
                with store.read() as tx:
                    search.search(ctx, tx, "Observation", params)

    singles(50)  # warm-up
    results: dict[str, Any] = {
        "single_create": measure(lambda: singles(n), n),
        "transaction_entry": measure(load_bundles, 1000 * bundles),
    }
    if synthea:
        results["synthea_entry"] = measure(load_synthea, synthea_entries)
    results["import_resource"] = measure(
        lambda: import_.load(store, ndjson, on_error=lambda e: None), args.imports
    )
    if not args.sqlite:
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    reads()  # warm-up: the page cache holds what is read
    results["read"] = measure(reads, len(read_ids))
    searches()
    results["search"] = measure(searches, args.searches * len(SEARCHES))
    for i, params in enumerate(SEARCHES):

        def one_shape(params: list[tuple[str, str]] = params) -> None:
            for _ in range(args.searches):
                with store.read() as tx:
                    search.search(ctx, tx, "Observation", params)

        results[f"search_{i + 1}"] = measure(one_shape, args.searches)
    engine.dispose()
    if not args.sqlite:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {db} WITH (FORCE)"))
    return {
        "root": str(args.root),
        "backend": "sqlite" if args.sqlite else "postgres",
        "imports": args.imports,
        "synthea_entries": synthea_entries,
        **results,
    }


def compare(args: argparse.Namespace) -> None:
    """Runs this tree and `--compare` alternately `--rounds` times; prints medians of total CPU ms."""
    passed = [
        *(["--sqlite"] if args.sqlite else []),
        *("--creates", str(args.creates), "--imports", str(args.imports), "--reads", str(args.reads)),
        *("--searches", str(args.searches), "--synthea", str(args.synthea)),
        *("--synthea-limit", str(args.synthea_limit)),
    ]
    trees = {"before": args.compare.resolve(), "after": args.root.resolve()}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for r in range(args.rounds):
        for name, root in list(trees.items())[:: 1 if r % 2 == 0 else -1]:
            cmd = [sys.executable, __file__, "--root", str(root), *passed]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
            figures = " ".join(
                f"{k}={v['total_ms']:.3f}" for k, v in runs[name][-1].items() if isinstance(v, dict)
            )
            print(f"round {r + 1} {name}: load average {os.getloadavg()[0]:.2f} {figures}", file=sys.stderr)
    table = {}
    for key in [k for k, v in runs["after"][0].items() if isinstance(v, dict)]:
        before = statistics.median(run[key]["total_ms"] for run in runs["before"])
        after = statistics.median(run[key]["total_ms"] for run in runs["after"])
        table[key] = {
            "before_ms": round(before, 4),
            "after_ms": round(after, 4),
            "ratio": round(after / before, 3),
        }
        print(f"{key:18} before {before:8.3f} ms  after {after:8.3f} ms  ratio {after / before:.3f}")
    print(json.dumps({"rounds": args.rounds, "trees": {k: str(v) for k, v in trees.items()}, "table": table}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=REPO, help="the source tree to measure")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--creates", type=int, default=2000, help="single creates and transaction entries")
    parser.add_argument(
        "--imports", type=int, default=100_000, help="Observations imported, then read and searched"
    )
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--searches", type=int, default=60, help="rounds of the five search shapes")
    parser.add_argument("--synthea", type=Path, default=DEFAULT_SYNTHEA)
    parser.add_argument("--synthea-limit", type=int, default=10, help="patient bundles loaded")
    parser.add_argument("--compare", type=Path, help="another source tree: alternate runs, print medians")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.compare is not None:
        compare(args)
        return
    print(json.dumps(measure_tree(args)))


if __name__ == "__main__":
    main()
