"""CPU per read, search and create with the audit trail on and off, in one run (docs/audit.md "Cost").

Through the whole HTTP stack in-process (Starlette TestClient over `create_app`), so the audit
middleware, the recorder thread (it runs during the measurement: each phase ends with a flush, so
the AuditEvents it caused are written inside it) and, on PostgreSQL, the database backends are
counted: CPU of this process (all threads) plus its PostgreSQL backends, per operation. Two fresh
databases (audit off / on), phases alternated between them, medians of `--rounds`:

    .venv/bin/python bench/bench_audit.py             # PostgreSQL at 127.0.0.1:5432
    .venv/bin/python bench/bench_audit.py --sqlite
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TICK = os.sysconf("SC_CLK_TCK")
PATIENTS = 200


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _observation(patient: str, i: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": f"2024-01-{1 + i % 28:02d}T10:00:00Z",
        "valueQuantity": {
            "value": 60 + i % 40,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


class Server:
    """An app (audit on or off) over its own fresh database."""

    def __init__(self, audit: bool, sqlite: bool, tmp: Path, analyze: bool = True) -> None:
        from fastapi.testclient import TestClient
        from sqlalchemy import create_engine, text

        from fhir_server.app import create_app
        from fhir_server.settings import Settings
        from fhir_server.store.engine import make_engine
        from fhir_server.store.migrate import upgrade
        from fhir_server.store.sql import Store

        self.admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        self.db = f"bench_audit_{uuid.uuid4().hex[:8]}"
        self.sqlite = sqlite
        if sqlite:
            url = f"sqlite:///{tmp / (self.db + '.db')}"
        else:
            with self.admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {self.db}"))
            url = f"postgresql://postgres@127.0.0.1:5432/{self.db}"
        engine = make_engine(url, pool_size=4)
        upgrade(engine)
        self.store = Store(engine, base="http://bench")
        if not analyze:  # diagnostic: without the background ANALYZE the AuditEvent rows trigger

            class _NoAnalyze:
                def committed(self, changes: object) -> None:
                    pass

            self.store.analyzer = _NoAnalyze()  # type: ignore[assignment]
        with self.store.write() as tx:
            for p in range(PATIENTS):
                tx.create({"resourceType": "Patient", "active": True, "name": [{"family": f"P{p}"}]}, f"p{p}")
        settings = Settings(
            base_url="http://bench",
            allow_anonymous=True,
            audit=audit,
            data_dir=tmp / self.db,
            max_body_bytes=10**6,
        )
        self.app = create_app(settings, store=self.store)
        self.http = TestClient(self.app, base_url="http://bench")
        self.http.__enter__()
        self.ids: list[str] = []

    def backends(self) -> list[int]:
        if self.sqlite:
            return []
        from sqlalchemy import text

        with self.admin.connect() as conn:
            rows = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": self.db})
            return [row[0] for row in rows]

    def settle(self) -> None:
        if self.app.state.audit is not None:
            self.app.state.audit.flush()

    def close(self) -> None:
        from sqlalchemy import text

        self.http.__exit__(None, None, None)
        self.store.engine.dispose()
        if not self.sqlite:
            with self.admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)"))


def _threads_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process, by thread name (numbered names merged)."""
    import threading

    out: dict[str, float] = {}
    for thread in threading.enumerate():
        tid = thread.native_id
        if tid is None:
            continue
        name = thread.name.split(" ")[0].rstrip("-0123456789_").split("(")[0] or "thread"
        out[name] = out.get(name, 0.0) + _proc_cpu_path(f"/proc/self/task/{tid}/stat")
    return out


def _proc_cpu_path(path: str) -> float:
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


BREAKDOWN: dict[tuple[str, str, str], list[float]] = {}  # (op, mode, thread or "database") -> ms per op


def measure(
    server: Server, work: Callable[[], None], count: int, label: tuple[str, str] = ("", "")
) -> tuple[float, float]:
    """CPU milliseconds per operation: this process plus the database backends, the flush included;
    and the part of it spent in the audit recorder's thread (exact: its own thread CPU clock).
    Where it went (each thread of this process by name, and the database) goes to BREAKDOWN."""
    pids = server.backends()
    before = {pid: _proc_cpu(pid) for pid in pids}
    threads_before = _threads_cpu()
    recorder = server.app.state.audit
    recorder_before = recorder.cpu_seconds if recorder is not None else 0.0
    times = os.times()
    work()
    server.settle()
    after = os.times()
    cpu = (after.user - times.user) + (after.system - times.system)
    database = sum(_proc_cpu(pid) - before[pid] for pid in pids)
    cpu += database
    threads_after = _threads_cpu()
    for name, seconds in threads_after.items():
        spent = seconds - threads_before.get(name, 0.0)
        BREAKDOWN.setdefault((*label, name), []).append(1000 * spent / count)
    BREAKDOWN.setdefault((*label, "database"), []).append(1000 * database / count)
    recorded = (recorder.cpu_seconds - recorder_before) if recorder is not None else 0.0
    return 1000 * cpu / count, 1000 * recorded / count


def phases(server: Server, n: int, rng: random.Random) -> dict[str, Callable[[], None]]:
    def create() -> None:
        for i in range(n):
            response = server.http.post("/Observation", json=_observation(f"p{rng.randrange(PATIENTS)}", i))
            assert response.status_code == 201, response.text
            server.ids.append(response.json()["id"])

    def read() -> None:
        for _ in range(n):
            assert server.http.get(f"/Observation/{rng.choice(server.ids)}").status_code == 200

    def search() -> None:
        for _ in range(n):
            params = {"subject": f"Patient/p{rng.randrange(PATIENTS)}", "code": "8867-4", "_count": "10"}
            assert server.http.get("/Observation", params=params).status_code == 200

    return {"create": create, "read": read, "search": search}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", action="store_true", help="SQLite files instead of PostgreSQL")
    parser.add_argument("--ops", type=int, default=300, help="operations per phase")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median reported)")
    parser.add_argument(
        "--no-analyze", action="store_true", help="diagnostic: no background ANALYZE (store/autoanalyze.py)"
    )
    parser.add_argument("--breakdown", action="store_true", help="CPU per op of each thread and the database")
    args = parser.parse_args()
    logging.getLogger("fhir_server").setLevel(logging.ERROR)
    os.environ.setdefault("FHIR_AUDIT", "true")
    tmp = Path(tempfile.mkdtemp())
    analyze = not args.no_analyze
    servers = {"off": Server(False, args.sqlite, tmp, analyze), "on": Server(True, args.sqlite, tmp, analyze)}
    figures: dict[tuple[str, str], list[float]] = {}
    recorder_cpu: dict[str, list[float]] = {}
    try:
        rng = random.Random(7)
        for _ in range(args.rounds):
            for op in ("create", "read", "search"):
                for mode in ("off", "on") if _ % 2 == 0 else ("on", "off"):
                    server = servers[mode]
                    work = phases(server, args.ops, rng)[op]
                    total, recorder = measure(server, work, args.ops, (op, mode))
                    figures.setdefault((op, mode), []).append(total)
                    if mode == "on":
                        recorder_cpu.setdefault(op, []).append(recorder)
        audited = servers["on"]
        with audited.store.read() as tx:
            recorded = len(tx.current_of_type("AuditEvent", limit=10**7))
    finally:
        for server in servers.values():
            server.close()
    load = Path("/proc/loadavg").read_text().split()[:3]
    backend = "SQLite" if args.sqlite else "PostgreSQL"
    extra = ", no background ANALYZE" if args.no_analyze else ""
    print(f"{backend}, {args.ops} ops x {args.rounds} rounds{extra}, load average {' '.join(load)}")
    print(f"{'CPU ms per':<10} {'audit off':>10} {'audit on':>10} {'cost':>7} {'recorder thread':>16}")
    for op in ("read", "search", "create"):
        off, on = statistics.median(figures[(op, "off")]), statistics.median(figures[(op, "on")])
        thread = statistics.median(recorder_cpu[op])
        print(
            f"{op:<10} {off:>10.3f} {on:>10.3f} {100 * (on / off - 1):>6.1f}% {thread:>10.3f} ({100 * thread / off:.1f}%)"
        )
    print(f"AuditEvents recorded with audit on: {recorded}")
    if args.breakdown:
        print("CPU ms per op by thread (median; /proc clock ticks, coarse) and database backends:")
        for op in ("read", "search", "create"):
            names = sorted({name for (o, _, name) in BREAKDOWN if o == op})
            for name in names:
                off = statistics.median(BREAKDOWN.get((op, "off", name), [0.0]))
                on = statistics.median(BREAKDOWN.get((op, "on", name), [0.0]))
                print(f"  {op:<8} {name:<22} off {off:>7.3f}  on {on:>7.3f}")


if __name__ == "__main__":
    main()
