"""Idempotent writes against plain ones, in one run (issue 16): conditional transactions and ingest.

One command, from the repository root:

    .venv/bin/python bench/bench_idempotent.py                         # PostgreSQL, 100k records
    .venv/bin/python bench/bench_idempotent.py --sqlite                # the embedded SQLite store
    .venv/bin/python bench/bench_idempotent.py --records 100000,1000000

On a fresh database (PostgreSQL `bench_idem_<random>` at 127.0.0.1:5432, dropped at the end, or a
SQLite file in a temporary directory) it measures, in this process and without HTTP:

1. transactions of `--entries` (500) new Observations, plain creates against conditional creates
   (`ifNoneExist=identifier=<system>|<value>`), new and resent: `--rounds` (5) of each, alternated,
   after a warm-up; median wall time, and CPU of this process plus the PostgreSQL backends per
   Bundle; the ratios conditional/plain (issue 16 acceptance 1: <= 1.25 on PostgreSQL, <= 1.5 on SQLite);
2. `fhir-server ingest` of a generated Apple Health export.xml (`tests/ingest/fixtures.write_apple_export`)
   of each `--records` size into the database, in a child process (`fhir-server ingest` as the
   command runs it): records/s end to end, the child's peak RSS, and CPU milliseconds per record of
   the child and of the PostgreSQL backends; then the same file again (creates nothing);
3. `$ingest` of the same export over HTTP (`--http`, the default; `--no-http` skips it): a
   `fhir-server serve` subprocess on another fresh database, the file POSTed raw to
   `Patient/bench/$ingest`, its Task polled until `completed`: records/s from the POST to the
   completed Task, peak RSS of the server process tree, CPU per record of server and database;
4. the same as 2. for a CSV of `--csv-rows` (100,000) rows.

It prints the load average and the machine's speed (`_machine_ms`: a loop, and scattered reads) next to each
figure (the machine is shared, and its speed has moved by 2x within minutes) and writes everything to
`bench/results/idempotent-<backend>-<time>.json`.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TICK = os.sysconf("SC_CLK_TCK")
SYSTEM = "https://bridge.example.org/sample"


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _load() -> float:
    return os.getloadavg()[0]


def _machine_ms() -> tuple[float, float]:
    """This machine's speed at the moment, in milliseconds (the best of three each): a fixed
    pure-Python loop, and 1M reads at random places of 64 MiB (memory-bound, for a neighbour on the
    shared machine thrashing the caches). The machine's speed has moved by 2x within minutes, and
    the CPU per record with it, so a records/s figure is printed with these; they track it only
    roughly (bench/README.md "Nineteenth session"): the CPU per record says more. What it allocates
    is freed on return."""
    rng = random.Random(0)
    size = 64 * 2**20
    memory = bytes(range(256)) * (size // 256)  # written, so every page is its own
    places = array.array("l", (rng.randrange(size) for _ in range(1_000_000)))
    loop = scatter = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        t1 = time.perf_counter()
        for i in places:
            total += memory[i]
        t2 = time.perf_counter()
        loop, scatter = min(loop, t1 - t0), min(scatter, t2 - t1)
    return 1000 * loop, 1000 * scatter


def _observation(tag: str, i: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{"system": SYSTEM, "value": f"{tag}-{i}"}],
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": "Patient/bench"},
        "effectiveDateTime": f"2024-03-01T08:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "valueQuantity": {
            "value": 60 + i % 40,
            "unit": "beats/minute",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def _bundle(tag: str, n: int, conditional: bool) -> dict[str, Any]:
    entries = []
    for i in range(n):
        request: dict[str, Any] = {"method": "POST", "url": "Observation"}
        if conditional:
            request["ifNoneExist"] = f"identifier={SYSTEM}|{tag}-{i}"
        entries.append(
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": _observation(tag, i), "request": request}
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _transactions(url: str, backends: Callable[[], list[int]], entries: int, rounds: int) -> dict[str, Any]:
    from fhir_server.auth import scopes
    from fhir_server.auth.principal import Principal
    from fhir_server.interactions.context import Context
    from fhir_server.interactions.transaction import transaction
    from fhir_server.settings import Settings
    from fhir_server.store.engine import make_engine
    from fhir_server.store.sql import Store

    engine = make_engine(url, pool_size=2)
    store = Store(engine, check_references=True, base="http://bench")
    writer = Principal(client_id="bench", kind="system", scopes=scopes.parse("system/*.cruds"))
    ctx = Context(store=store, settings=Settings(base_url="http://bench"), principal=writer)
    with store.write() as tx:
        tx.create({"resourceType": "Patient", "active": True}, "bench")

    def measure(body: dict[str, Any]) -> tuple[float, float]:
        pids = backends()
        before = {pid: _proc_cpu(pid) for pid in pids}
        cpu, wall = time.process_time(), time.perf_counter()
        response = transaction(ctx, body)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert len(response["entry"]) == entries
        return wall, cpu + sum(_proc_cpu(pid) - before[pid] for pid in pids)

    for k in range(2):  # warm-up: models, index plans, statement caches
        measure(_bundle(f"warm-p{k}", entries, False))
        measure(_bundle(f"warm-c{k}", entries, True))
    runs: dict[str, list[tuple[float, float]]] = {
        "plain": [],
        "conditional_new": [],
        "conditional_resend": [],
    }
    for k in range(rounds):
        runs["plain"].append(measure(_bundle(f"p{k}", entries, False)))
        runs["conditional_new"].append(measure(_bundle(f"c{k}", entries, True)))
        runs["conditional_resend"].append(measure(_bundle(f"c{k}", entries, True)))
    engine.dispose()
    out: dict[str, Any] = {"entries": entries, "rounds": rounds, "load": _load()}
    for name, values in runs.items():
        out[name] = {
            "wall_s": statistics.median(w for w, _ in values),
            "cpu_s": statistics.median(c for _, c in values),
            "per_s": entries / statistics.median(w for w, _ in values),
        }
    for name in ("conditional_new", "conditional_resend"):
        out[f"{name}_ratio_wall"] = out[name]["wall_s"] / out["plain"]["wall_s"]
        out[f"{name}_ratio_cpu"] = out[name]["cpu_s"] / out["plain"]["cpu_s"]
    return out


def _peak_rss_mib() -> float:
    """This process's peak RSS since it started its program: VmHWM, which `execve` starts again
    (`ru_maxrss` keeps the peak of the process forked to run it: a first `_machine_ms` that left
    150 MB of lists in the bench made every child's peak 332 MiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ingest_child(url: str, path: str, fmt: str) -> None:
    """`fhir-server ingest` as the command runs it, in this (child) process; prints one JSON line."""
    import argparse as ap
    import io

    from fhir_server.operations import ingest_command
    from fhir_server.settings import Settings

    parser = ap.ArgumentParser()
    ingest_command.add_arguments(parser)
    ns = parser.parse_args([path, "--patient", "Patient/bench", "--format", fmt])
    out, err = io.StringIO(), io.StringIO()
    t0, c0 = time.perf_counter(), time.process_time()
    status = ingest_command.run_command(
        ns, Settings(database_url=url, base_url="http://bench"), out=out, err=err
    )
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _peak_rss_mib()
    print(
        json.dumps(
            {
                "status": status,
                "elapsed": elapsed,
                "cpu_s": cpu,
                "peak_rss_mib": peak,
                "summary": out.getvalue(),
            }
        )
    )


def _ingest(
    url: str, path: Path, fmt: str, records: int, backends: Callable[[], list[int]]
) -> dict[str, Any]:
    runs = []
    for attempt in ("first", "again"):
        load, machine = _load(), _machine_ms()
        db_cpu = _DbCpu(backends)
        proc = subprocess.run(
            [sys.executable, __file__, "--child", url, str(path), fmt],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"ingest child failed:\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r.update(
            attempt=attempt,
            records=records,
            per_s=records / r["elapsed"],
            cpu_ms_per_record=1000 * r["cpu_s"] / records,
            db_cpu_ms_per_record=1000 * db_cpu.stop() / records,
            load_before=load,
            load_after=_load(),
            machine_ms_before=machine,
            machine_ms_after=_machine_ms(),
        )
        runs.append(r)
    return {"format": fmt, "records": records, "runs": runs}


class _DbCpu(threading.Thread):
    """CPU seconds of the bench database's backends while it runs (sampled: backends come and go)."""

    def __init__(self, backends: Callable[[], list[int]]) -> None:
        super().__init__(daemon=True)
        self.backends = backends
        self.seen: dict[int, float] = {}
        self.start_cpu: dict[int, float] = {}
        self.halt = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.halt.is_set():
            for pid in self.backends():
                cpu = _proc_cpu(pid)
                self.start_cpu.setdefault(pid, cpu)
                self.seen[pid] = max(self.seen.get(pid, 0.0), cpu)
            self.halt.wait(0.5)

    def stop(self) -> float:
        self.halt.set()
        self.join()
        return sum(cpu - self.start_cpu[pid] for pid, cpu in self.seen.items())


def _http_ingest(url: str, path: Path, records: int, backends: Callable[[], list[int]]) -> dict[str, Any]:
    """`$ingest` of `path` over HTTP into a `fhir-server serve` subprocess (jobs in its threads)."""
    import httpx

    from bench.rest import _stat, running_server, tree

    runs = []
    os.environ["FHIR_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-idem-data-")  # the uploads
    with running_server(url, 1) as (base, proc):
        for attempt in ("first", "again"):
            load, machine = _load(), _machine_ms()
            db_cpu = _DbCpu(backends)
            cpu0 = sum((_stat(pid) or (0, 0.0, 0))[1] for pid in tree(proc.pid))
            peak = 0
            t0 = time.perf_counter()
            with path.open("rb") as fh:
                response = httpx.post(
                    f"{base}/Patient/bench/$ingest",
                    content=fh,
                    headers={"Content-Type": "application/xml"},
                    timeout=600,
                )
            assert response.status_code == 202, response.text
            task_url = response.headers["content-location"]
            while True:
                stats = [_stat(pid) for pid in tree(proc.pid)]
                peak = max(peak, sum(s[2] for s in stats if s is not None))
                task = httpx.get(task_url, timeout=60).json()
                if task["status"] in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.5)
            elapsed = time.perf_counter() - t0
            cpu = sum((_stat(pid) or (0, 0.0, 0))[1] for pid in tree(proc.pid)) - cpu0
            counts = {o["type"]["coding"][0]["code"]: o.get("valueInteger") for o in task.get("output", [])}
            runs.append(
                {
                    "attempt": attempt,
                    "status": task["status"],
                    "counts": counts,
                    "elapsed": elapsed,
                    "per_s": records / elapsed,
                    "peak_rss_mib": peak / 2**20,
                    "cpu_ms_per_record": 1000 * cpu / records,
                    "db_cpu_ms_per_record": 1000 * db_cpu.stop() / records,
                    "load_before": load,
                    "load_after": _load(),
                    "machine_ms_before": machine,
                    "machine_ms_after": _machine_ms(),
                }
            )
    return {"format": "apple-health", "records": records, "runs": runs}


def _ms(machine: Iterable[float]) -> str:
    return "/".join(f"{m:.0f}" for m in machine) + " ms"


def _report(what: str, run: dict[str, Any]) -> None:
    print(
        f"{what} ({run['attempt']}): {run['per_s']:,.0f} records/s ({run['elapsed']:.1f} s), "
        f"peak RSS {run['peak_rss_mib']:.0f} MiB, CPU/record {run['cpu_ms_per_record']:.3f} ms "
        f"+ db {run['db_cpu_ms_per_record']:.3f} ms, load {run['load_before']:.2f}->{run['load_after']:.2f}, "
        f"machine (loop, scattered reads) {_ms(run['machine_ms_before'])} -> {_ms(run['machine_ms_after'])}"
    )


def _csv(path: Path, rows: int) -> Path:
    with path.open("w") as fh:
        fh.write("date,metric,value,unit\n")
        for i in range(rows):
            minute = i % 1440
            day = 1 + (i // 1440) % 28
            month = 1 + (i // (1440 * 28)) % 12
            year = 2020 + i // (1440 * 28 * 12)
            fh.write(
                f"{year}-{month:02d}-{day:02d}T{minute // 60:02d}:{minute % 60:02d}:00+00:00,heart_rate,{60 + i % 40},/min\n"
            )
    return path


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _ingest_child(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--entries", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", default="100000", help="Apple Health export sizes, comma-separated")
    parser.add_argument("--csv-rows", type=int, default=100_000)
    parser.add_argument("--skip-ingest", action="store_true", help="only the transactions")
    parser.add_argument("--skip-transactions", action="store_true", help="only the ingests")
    parser.add_argument("--no-http", dest="http", action="store_false", help="no $ingest over HTTP")
    args = parser.parse_args()

    from sqlalchemy import create_engine, text

    from fhir_server.store.engine import make_engine
    from fhir_server.store.migrate import upgrade
    from fhir_server.store.sql import Store
    from tests.ingest.fixtures import write_apple_export

    tmp = Path(tempfile.mkdtemp(prefix="bench-idem-"))
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    db = f"bench_idem_{uuid.uuid4().hex[:8]}"

    def fresh(name: str) -> str:
        if args.sqlite:
            url = f"sqlite:///{tmp / f'{name}.db'}"
        else:
            with admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {db}_{name}"))
            url = f"postgresql://postgres@127.0.0.1:5432/{db}_{name}"
        engine = make_engine(url)
        upgrade(engine)
        if name != "tx":  # the patient the ingested data is about
            with Store(engine).write() as tx:
                tx.create({"resourceType": "Patient", "active": True}, "bench")
        engine.dispose()
        return url

    def backends_of(name: str) -> Callable[[], list[int]]:
        def pids() -> list[int]:
            if args.sqlite:
                return []
            with admin.connect() as conn:
                rows = conn.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": f"{db}_{name}"}
                )
                return [row[0] for row in rows]

        return pids

    results: dict[str, Any] = {"backend": "sqlite" if args.sqlite else "postgres", "started_load": _load()}
    made: list[str] = []
    try:
        if not args.skip_transactions:
            made.append("tx")
            results["transactions"] = _transactions(fresh("tx"), backends_of("tx"), args.entries, args.rounds)
            t = results["transactions"]
            print(
                f"transactions of {args.entries} Observations ({results['backend']}, load {t['load']:.2f}):"
            )
            for name in ("plain", "conditional_new", "conditional_resend"):
                r = t[name]
                print(f"  {name:20} {r['wall_s']:.3f} s wall ({r['per_s']:,.0f}/s), {r['cpu_s']:.3f} s CPU")
            for name in ("conditional_new", "conditional_resend"):
                print(
                    f"  ratio {name:14} {t[name + '_ratio_wall']:.2f} wall, {t[name + '_ratio_cpu']:.2f} CPU"
                )
        if not args.skip_ingest:
            for n in (int(x) for x in args.records.split(",")):
                path = write_apple_export(tmp / f"export-{n}.xml", n)
                name = f"apple{n}"
                made.append(name)
                r = _ingest(fresh(name), path, "apple-health", n, backends_of(name))
                results[f"ingest_apple_{n}"] = r
                for run in r["runs"]:
                    _report(f"ingest apple-health {n:,}", run)
                if args.http and not args.sqlite:
                    made.append(f"http{n}")
                    r = _http_ingest(fresh(f"http{n}"), path, n, backends_of(f"http{n}"))
                    results[f"http_ingest_apple_{n}"] = r
                    for run in r["runs"]:
                        _report(f"$ingest apple-health {n:,} over HTTP", run)
                path.unlink()
            if args.csv_rows:
                path = _csv(tmp / "rows.csv", args.csv_rows)
                made.append("csv")
                r = _ingest(fresh("csv"), path, "csv", args.csv_rows, backends_of("csv"))
                results["ingest_csv"] = r
                for run in r["runs"]:
                    _report(f"ingest csv {args.csv_rows:,}", run)
    finally:
        if not args.sqlite:
            with admin.connect() as conn:
                for name in made:
                    conn.execute(text(f"DROP DATABASE IF EXISTS {db}_{name} WITH (FORCE)"))
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"idempotent-{results['backend']}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
