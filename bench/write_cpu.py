"""CPU milliseconds per write, in-process, for comparing two source trees (docs/events.md "Cost").

Measures, on a fresh database, the CPU of this process plus its PostgreSQL backends (from /proc) per
single create (`create` interaction in `Store.transact`, reference checked), per entry of a
1,000-entry transaction Bundle, and per resource of an NDJSON `$import` load (`jobs/import_.load`).
No HTTP: what changes with the write path, not with the web stack. Run it alternately on a copy of
the tree before a change and on the tree after it; the machine is shared, so compare medians:

    .venv/bin/python bench/write_cpu.py [--root DIR] [--sqlite] [--creates 2000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _observation(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-05T10:00:00Z",
        "valueQuantity": {"value": 60 + i % 40, "unit": "/min"},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the source tree to measure")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--creates", type=int, default=2000, help="single creates (x5 imported)")
    args = parser.parse_args()
    sys.path.insert(0, str(args.root.resolve()))
    logging.getLogger("fhir_server").setLevel(logging.CRITICAL)  # the background ANALYZE at drop time
    import orjson
    from sqlalchemy import create_engine, text

    from fhir_server.auth import scopes
    from fhir_server.auth.principal import Principal
    from fhir_server.interactions import create
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
    db = f"bench_write_{uuid.uuid4().hex[:8]}"
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
        tx.create({"resourceType": "Patient", "active": True}, "p1")

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

    ndjson = tmp / "observations.ndjson"
    ndjson.write_bytes(
        b"".join(orjson.dumps({**_observation(i), "id": f"i{i}"}) + b"\n" for i in range(5 * n))
    )

    singles(50)  # warm-up
    results = {
        "single_create": measure(lambda: singles(n), n),
        "transaction_entry": measure(load_bundles, 1000 * bundles),
        "import_resource": measure(lambda: import_.load(store, ndjson, on_error=lambda e: None), 5 * n),
    }
    print(json.dumps({"root": str(args.root), "backend": "sqlite" if args.sqlite else "postgres", **results}))
    engine.dispose()
    if not args.sqlite:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {db} WITH (FORCE)"))


if __name__ == "__main__":
    main()
