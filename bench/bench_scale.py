"""Scale-out benchmark: 1, 2 and 4 `fhir-server serve` processes plus 2 workers on one PostgreSQL, then reads on a replica.

    .venv/bin/python -m bench.bench_scale [--processes 1,2,4] [--limit 12] [--duration 8] [--clients 8]

It makes its own PostgreSQL 15 primary and streaming replica (tests/pg_cluster.py: initdb and
pg_basebackup on free ports, removed at the end) and uses Redis at 127.0.0.1:6379 for the job queue.
For each process count N, on a new database: starts N separate `serve` processes (each one uvicorn
worker, own port, one shared data_dir; the first migrates, the others start after it) and 2
`fhir-server worker` processes; loads `--limit` Synthea bundles (`--data`, default
../shared/data/synthea-r4) spread over the processes; then for `--duration` seconds `--clients`
concurrent clients, spread over the processes, read Patients by id and search
`Observation?patient=<id>&_count=20`. Then the same reads with N=2 and `FHIR_DATABASE_READ_URLS` on
the replica, with the replica's share read from /metrics. Finally an $export on the last database,
run by the 2 workers: the output must hold every Patient once.
Prints each figure with the load average, and CPU milliseconds per operation of the server
processes and of all PostgreSQL processes (the figure that moves least with other work on the box).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rest import _stat, bundle_files, free_port, loadavg, pct, tree  # noqa: E402
from tests.pg_cluster import Cluster, primary_and_replica, wait_caught_up  # noqa: E402

REDIS = "redis://127.0.0.1:6379/0"
FHIR_JSON = "application/fhir+json"
METRICS = "bench-scrape"


def cpu_of(pids: list[int]) -> float:
    return sum(st[1] for st in map(_stat, pids) if st is not None)


def postmaster(cluster: Cluster) -> int:
    return int((cluster.directory / "postmaster.pid").read_text().split()[0])


class Processes:
    """The API processes and workers of one run, and the CPU they and PostgreSQL use."""

    def __init__(self, clusters: tuple[Cluster, Cluster]) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.bases: list[str] = []
        self.clusters = clusters
        self.logs = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)

    def cpu(self) -> tuple[float, float]:
        server = cpu_of([pid for p in self.procs for pid in tree(p.pid)])
        db = cpu_of([pid for c in self.clusters for pid in tree(postmaster(c))])
        return server, db

    def start(self, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=self.logs, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> list[str]:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.logs.seek(0)
        text = self.logs.read().decode(errors="replace")
        self.logs.close()
        for line in text.splitlines():
            if "replica" in line:
                print(f"    log: {line[:200]}")
        return [ln for ln in text.splitlines() if '"level":"error"' in ln or "Traceback" in ln]


def _wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=3).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"{base} did not become ready")


@contextlib.contextmanager
def deployment(
    clusters: tuple[Cluster, Cluster], database: str, n: int, workers: int, replica: bool
) -> Iterator[Processes]:
    primary, standby = clusters
    data_dir = Path(tempfile.mkdtemp(prefix="fhir-scale-data-"))
    queue = f"fhir-bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "FHIR_DATABASE_URL": primary.url(database),
        "FHIR_REDIS_URL": REDIS,
        "FHIR_JOB_QUEUE": queue,
        "FHIR_DATA_DIR": str(data_dir),
        "FHIR_ALLOW_ANONYMOUS": "true",
        "FHIR_LOG_LEVEL": "warning",
        "FHIR_METRICS_TOKEN": METRICS,
        "FHIR_DB_POOL_SIZE": "8",
        "FHIR_BULK_MIN_POLL_SECONDS": "0",
        "FHIR_BULK_SNAPSHOT_SETTLE_SECONDS": "0",
        "FHIR_REPLICA_PIN_SECONDS": "3",
        "FHIR_REPLICA_MAX_LAG_SECONDS": "2",
    }
    if replica:
        env["FHIR_DATABASE_READ_URLS"] = standby.url(database)
    procs = Processes(clusters)
    try:
        for i in range(n):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            cmd = [
                sys.executable,
                "-m",
                "fhir_server.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            proc = procs.start([*cmd, "--workers", "1", "--no-demo"], {**env, "FHIR_BASE_URL": base})
            if i == 0:
                _wait_ready(base, proc)  # the first one migrates the new database
            procs.bases.append(base)
        for base, proc in zip(procs.bases, procs.procs, strict=True):
            _wait_ready(base, proc)
        for _ in range(workers):
            procs.start([sys.executable, "-m", "fhir_server.cli", "worker"], env)
        yield procs
    finally:
        errors = procs.stop()
        if errors:
            print(f"  !! {len(errors)} error lines in the server/worker logs, e.g. {errors[-1][:300]}")
        redis.Redis.from_url(REDIS).delete(queue)
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)


async def _load(bases: list[str], bodies: list[bytes], clients: int) -> tuple[int, list[str], list[str]]:
    todo = list(enumerate(bodies))
    entries = 0
    patients: list[str] = []
    failures: list[str] = []
    async with httpx.AsyncClient(timeout=600) as http:

        async def one_client(k: int) -> None:
            nonlocal entries
            while todo:
                i, body = todo.pop(0)
                base = bases[(i + k) % len(bases)]
                resp = await http.post(f"{base}/", content=body, headers={"Content-Type": FHIR_JSON})
                if resp.status_code != 200:
                    failures.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                    continue
                for e in orjson.loads(resp.content)["entry"]:
                    entries += 1
                    loc = e["response"].get("location", "")
                    if loc.startswith("Patient/"):
                        patients.append(loc.split("/")[1])

        await asyncio.gather(*(one_client(k) for k in range(clients)))
    return entries, patients, failures


async def _reads(bases: list[str], patients: list[str], clients: int, seconds: float) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {"read": [], "search": []}
    errors = 0
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=60) as http:

        async def one_client(k: int) -> None:
            nonlocal errors
            rng = random.Random(k)
            n = 0
            while time.monotonic() < stop:
                base = bases[(k + n) % len(bases)]
                pid = rng.choice(patients)
                kind = "read" if n % 2 == 0 else "search"
                url = (
                    f"{base}/Patient/{pid}"
                    if kind == "read"
                    else f"{base}/Observation?patient={pid}&_count=20"
                )
                t0 = time.perf_counter()
                resp = await http.get(url)
                latencies[kind].append(time.perf_counter() - t0)
                errors += resp.status_code != 200
                n += 1

        await asyncio.gather(*(one_client(k) for k in range(clients)))
    return {"latencies": latencies, "errors": errors}


def _ms(values: list[float], p: float) -> str:
    return f"{pct(values, p) * 1000:.1f}"


def read_phase(procs: Processes, patients: list[str], args: argparse.Namespace, label: str) -> None:
    cpu0 = procs.cpu()
    t0 = time.perf_counter()
    out = asyncio.run(_reads(procs.bases, patients, args.clients, args.duration))
    wall = time.perf_counter() - t0
    cpu1 = procs.cpu()
    lat = out["latencies"]
    ops = len(lat["read"]) + len(lat["search"])
    print(
        f"  {label}: {ops / wall:.0f} req/s; read p50/p95 {_ms(lat['read'], 50)}/{_ms(lat['read'], 95)} ms, "
        f"search p50/p95 {_ms(lat['search'], 50)}/{_ms(lat['search'], 95)} ms; "
        f"CPU/op server {1000 * (cpu1[0] - cpu0[0]) / max(ops, 1):.2f} ms, "
        f"PostgreSQL {1000 * (cpu1[1] - cpu0[1]) / max(ops, 1):.2f} ms; errors {out['errors']}; "
        f"load {loadavg()}"
    )


def load_phase(procs: Processes, bodies: list[bytes], args: argparse.Namespace) -> list[str]:
    cpu0 = procs.cpu()
    t0 = time.perf_counter()
    entries, patients, failures = asyncio.run(_load(procs.bases, bodies, args.load_clients))
    wall = time.perf_counter() - t0
    cpu1 = procs.cpu()
    print(
        f"  load: {len(bodies)} bundles, {entries} resources in {wall:.1f} s = {entries / wall:.0f} resources/s; "
        f"CPU/resource server {1000 * (cpu1[0] - cpu0[0]) / max(entries, 1):.2f} ms, "
        f"PostgreSQL {1000 * (cpu1[1] - cpu0[1]) / max(entries, 1):.2f} ms; failures {len(failures)}; "
        f"load {loadavg()}"
    )
    for failure in failures[:3]:
        print(f"    {failure}")
    return patients


def replica_share(base: str) -> str:
    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS}"}).text
    counts = {
        line.split('reason="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fhir_db_reads_total{")
    }
    return ", ".join(f"{k} {int(v)}" for k, v in sorted(counts.items()) if v) or "no counts"


def export_check(procs: Processes, expected: int) -> None:
    base = procs.bases[-1]
    t0 = time.perf_counter()
    kick = httpx.get(
        f"{base}/Patient/$export", headers={"Prefer": "respond-async", "Accept": FHIR_JSON}, timeout=60
    )
    if kick.status_code != 202:
        print(f"  export: kick-off answered {kick.status_code}: {kick.text[:300]}")
        return
    status = kick.headers["content-location"]
    while (resp := httpx.get(status, timeout=60)).status_code == 202:
        time.sleep(0.2)
    keys: list[str] = []
    for item in resp.json().get("output", []):
        body = httpx.get(item["url"], timeout=60).content
        keys += [f"{item['type']}/{orjson.loads(line)['id']}" for line in body.splitlines() if line]
    patients = {k for k in keys if k.startswith("Patient/")}
    once = len(keys) == len(set(keys)) and len(patients) == expected
    print(
        f"  Patient/$export by the 2 workers: {len(keys)} resources ({len(set(keys))} distinct), "
        f"{len(patients)} Patients of {expected} loaded, in {time.perf_counter() - t0:.1f} s: "
        f"{'each once' if once else 'MISMATCH'}; load {loadavg()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "synthea-r4")
    parser.add_argument("--limit", type=int, default=12, help="patient bundles to load per run")
    parser.add_argument("--load-clients", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args(argv)
    shared, patients = bundle_files(args.data, args.limit)
    bodies = [p.read_bytes() for p in shared + patients]
    print(f"{len(bodies)} bundles from {args.data}; load {loadavg()} on {os.cpu_count()} CPUs")
    with primary_and_replica(None) as clusters:
        primary, replica = clusters
        last: Processes | None = None
        for n in [int(x) for x in args.processes.split(",")]:
            database = f"scale_{n}_{uuid.uuid4().hex[:6]}"
            primary.sql(f'CREATE DATABASE "{database}"')
            print(f"{n} API process(es) + {args.workers} workers, database {database}:")
            with deployment(clusters, database, n, args.workers, replica=False) as procs:
                loaded = load_phase(procs, bodies, args)
                read_phase(procs, loaded, args, "reads on the primary")
                last = procs
                if n == int(args.processes.split(",")[-1]):
                    export_check(procs, len(set(loaded)))
        assert last is not None
        wait_caught_up(primary, replica)
        print(f"2 API processes reading database {database} on the replica (writes: none during reads):")
        with deployment(clusters, database, 2, 0, replica=True) as procs:
            patients_loaded = [
                e["resource"]["id"]
                for e in httpx.get(f"{procs.bases[0]}/Patient?_count=1000&_elements=id")
                .json()
                .get("entry", [])
            ]
            read_phase(procs, patients_loaded, args, "reads with the replica")
            for base in procs.bases:
                print(f"    reads of {base} by target: {replica_share(base)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
