"""Benchmark of Bulk Data import and export on PostgreSQL (https://hl7.org/fhir/uv/bulkdata/STU2/export.html).

Generates N Observations (for N/5 Patients) and N/5 Patients as NDJSON, then measures, each in a
fresh worker process on a new database:

1. import of the Patients, then the Observations (`fhir-server import` code path, lines validated and
   indexed by `--import-workers` processes): resources/s;
2. export of every Observation (`_type=Observation`, the job code the worker runs): resources/s and
   the worker's peak RSS;
3. an export of the Patients whose worker is SIGKILLed a third of the way in and restarted: the
   job completes with every Patient exactly once; time lost.

    .venv/bin/python bench/bench_bulk.py [--observations 1000000] [--import-workers N]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HERE = Path(__file__).resolve()


def generate(folder: Path, n_obs: int) -> tuple[Path, Path, int]:
    """Patients and Observations as NDJSON (deterministic ids)."""
    n_pat = max(1, n_obs // 5)
    patients = folder / "Patient.ndjson"
    observations = folder / "Observation.ndjson"
    with open(patients, "wb") as f:
        for i in range(n_pat):
            f.write(
                orjson.dumps(
                    {
                        "resourceType": "Patient",
                        "id": f"p{i}",
                        "name": [{"family": f"Family{i % 997}", "given": [f"Given{i % 101}"]}],
                        "gender": ("female", "male")[i % 2],
                        "birthDate": f"{1940 + i % 70}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                    }
                )
                + b"\n"
            )
    codes = [
        ("8867-4", "Heart rate", "/min"),
        ("8310-5", "Body temperature", "Cel"),
        ("29463-7", "Body weight", "kg"),
    ]
    with open(observations, "wb") as f:
        for i in range(n_obs):
            code, text, unit = codes[i % 3]
            f.write(
                orjson.dumps(
                    {
                        "resourceType": "Observation",
                        "id": f"o{i}",
                        "status": "final",
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
                        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": text}]},
                        "subject": {"reference": f"Patient/p{i % n_pat}"},
                        "effectiveDateTime": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
                        "valueQuantity": {
                            "value": 50 + i % 50,
                            "unit": unit,
                            "system": "http://unitsofmeasure.org",
                            "code": unit,
                        },
                    }
                )
                + b"\n"
            )
    return patients, observations, n_pat


def child(role: str, url: str, data_dir: Path, arg: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FHIR_DATABASE_URL": url,
        "FHIR_DATA_DIR": str(data_dir),
        "FHIR_BASE_URL": "http://bench",
    }
    env.update(
        {
            "FHIR_JOB_LEASE_SECONDS": "3",
            "FHIR_BULK_SNAPSHOT_SETTLE_SECONDS": "0",
            "FHIR_BULK_FILE_MAX_RESOURCES": "250000",
            "FHIR_BULK_CHECKPOINT_ROWS": "10000",
        }
    )
    return subprocess.Popen([sys.executable, str(HERE), "--role", role, "--arg", arg], env=env)


def wait_child(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Exit status and peak RSS (MB) of a child process."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


# ---------------------------------------------------------------- roles run in child processes


def role_import(arg: str) -> None:
    from fhir_server.jobs import import_
    from fhir_server.jobs.import_command import _pool
    from fhir_server.settings import Settings
    from fhir_server.store.engine import make_engine
    from fhir_server.store.sql import Store

    path, workers = arg.rsplit(":", 1)
    pool = _pool(int(workers))  # forked before any database connection, as `fhir-server import` does
    settings = Settings()
    store = Store(make_engine(settings.database_url), check_references=False, base=settings.base)
    errors: list[Any] = []
    tally = import_.load(store, Path(path), on_error=errors.append, pool=pool)
    if pool is not None:
        pool.shutdown()
    assert not errors, errors[:3]
    print(f"    imported {tally.stored} ({tally.created} created)", flush=True)


def role_export(job_id: str) -> None:
    from fhir_server import job_kinds
    from fhir_server.jobs import worker
    from fhir_server.settings import Settings
    from fhir_server.store.engine import make_engine
    from fhir_server.store.sql import Store

    job_kinds.register()
    settings = Settings()
    store = Store(make_engine(settings.database_url), check_references=False, base=settings.base)
    outcome = worker.run(store, settings, job_id)
    print(f"    worker: {outcome}", flush=True)


# ---------------------------------------------------------------- the benchmark


def new_export_job(url: str, rtype: str) -> str:
    from fhir_server import instant
    from fhir_server.jobs import job, kickoff
    from fhir_server.store.engine import make_engine
    from fhir_server.store.sql import Store

    store = Store(make_engine(url), check_references=False, base="http://bench")
    params = kickoff.export_params(
        store, kickoff.KickOff("system", [("_type", rtype)]), None, base="http://bench", max_count=1000
    )
    created = job.create(
        store,
        kind="export",
        client_id="bench",
        request_url=f"http://bench/$export?_type={rtype}",
        params=params,
        transaction_time=instant.now_us(),
        max_active=100,
        retry_after=1,
    )
    store.engine.dispose()
    return created.id


def job_row(url: str, job_id: str) -> dict[str, Any]:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute(
            "SELECT status, progress, outputs, attempts FROM job WHERE id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return {"status": row[0], "progress": row[1], "outputs": row[2], "attempts": row[3]}


def count_lines(data_dir: Path, job_id: str, outputs: list[dict[str, Any]]) -> tuple[int, int]:
    """(lines, distinct ids) over a job's output files."""
    ids: set[bytes] = set()
    total = 0
    for item in outputs:
        with open(data_dir / "bulk" / job_id / item["file"], "rb") as f:
            for line in f:
                total += 1
                ids.add(orjson.loads(line)["id"].encode())
    return total, len(ids)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", action="store_true", help="keep the database and files")
    parser.add_argument("--import-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--arg", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.role == "import":
        return role_import(ns.arg)
    if ns.role == "export":
        return role_export(ns.arg)

    from fhir_server.store import schema
    from fhir_server.store.engine import make_engine
    from fhir_server.store.migrate import upgrade

    name = f"bench_bulk_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ns.pg, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ns.pg.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    folder = Path(tempfile.mkdtemp(prefix="bench_bulk_"))
    data_dir = folder / "data"
    try:
        engine = make_engine(url)
        upgrade(engine)
        schema.metadata.create_all(engine)
        engine.dispose()

        started = time.monotonic()
        patients, observations, n_pat = generate(folder, ns.observations)
        print(
            f"generated {ns.observations:,} Observations and {n_pat:,} Patients in {time.monotonic() - started:.0f} s"
        )

        for label, path, n in (
            ("Patients", patients, n_pat),
            ("Observations", observations, ns.observations),
        ):
            started = time.monotonic()
            code, rss = wait_child(child("import", url, data_dir, f"{path}:{ns.import_workers}"))
            seconds = time.monotonic() - started
            assert code == 0
            print(
                f"import {n:,} {label} ({ns.import_workers} preparing processes): {seconds:.1f} s, "
                f"{n / seconds:,.0f} resources/s, writer peak RSS {rss:.0f} MB"
            )

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
        print(f"database size after the imports: {size[0] if size else '?'}")

        job_id = new_export_job(url, "Observation")
        started = time.monotonic()
        code, rss = wait_child(child("export", url, data_dir, job_id))
        seconds = time.monotonic() - started
        row = job_row(url, job_id)
        assert code == 0 and row["status"] == "completed", row
        exported = sum(i["count"] for i in row["outputs"])
        assert exported == ns.observations
        print(
            f"export {exported:,} Observations: {seconds:.1f} s, {exported / seconds:,.0f} resources/s, "
            f"worker peak RSS {rss:.0f} MB, {len(row['outputs'])} files"
        )

        job_id = new_export_job(url, "Patient")
        started = time.monotonic()
        first = child("export", url, data_dir, job_id)
        while job_row(url, job_id)["progress"].get("exported", 0) < n_pat // 3:
            assert first.poll() is None, "the export finished before it could be killed"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        wait_child(first)
        at_kill = job_row(url, job_id)
        time.sleep(3.5)  # the lease runs out
        code, rss = wait_child(child("export", url, data_dir, job_id))
        seconds = time.monotonic() - started
        row = job_row(url, job_id)
        assert code == 0 and row["status"] == "completed" and row["attempts"] == 2, row
        lines, distinct = count_lines(data_dir, job_id, row["outputs"])
        assert lines == distinct == n_pat, (lines, distinct, n_pat)
        print(
            f"export {n_pat:,} Patients, worker SIGKILLed after {at_kill['progress']['exported']:,} and restarted: "
            f"completed in {seconds:.1f} s (incl. 3.5 s lease wait), {lines:,} lines, each Patient exactly once"
        )
    finally:
        if not ns.keep:
            shutil.rmtree(folder, ignore_errors=True)
            with psycopg.connect(ns.pg, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"kept database {name} and files in {folder}")


if __name__ == "__main__":
    main()
