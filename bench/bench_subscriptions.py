"""Subscriptions: write-to-delivery latency and the cost of active Subscriptions on writes (docs/subscriptions.md).

In one process, no HTTP on the write side (interactions through `Context.transact`, as the REST
routes run them), the change-event dispatcher and the rest-hook deliverer in their threads, a
real HTTP receiver on localhost:

- latency: with 1, 100 and 10,000 active Subscriptions (one matching `Observation?code&patient`,
  the others on other patients, as a ward of patients each watched by its own app), sequential
  matching Observation creates; the time from the create's commit to the notification's arrival
  at the receiver, p50 / p95;
- throughput: single Observation creates per second with no Subscription, and with 100 active
  Subscriptions that match none of them, alternating (pairs of runs on the shared machine).

    .venv/bin/python bench/bench_subscriptions.py            # PostgreSQL at 127.0.0.1:5432
    .venv/bin/python bench/bench_subscriptions.py --sqlite
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_server import events
from fhir_server.interactions import create
from fhir_server.interactions.context import Context
from fhir_server.settings import Settings
from fhir_server.store import migrate
from fhir_server.store.engine import make_engine
from fhir_server.store.sql import Store
from fhir_server.subscriptions import service

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CODE = "8867-4"


class Arrivals:
    """A receiver that notes when each event number of the watched Subscription arrives."""

    def __init__(self) -> None:
        self.times: dict[tuple[str, int], float] = {}
        self.cond = threading.Condition()
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                now = time.perf_counter()
                key = (self.headers["X-Subscription-Id"], int(self.headers["X-Subscription-Event"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with arrivals.cond:
                    arrivals.times[key] = now
                    arrivals.cond.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, key: tuple[str, int], timeout: float = 30) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: key in self.times, timeout):
                raise TimeoutError(f"notification {key} did not arrive")
            return self.times[key]


def _database(sqlite: bool, folder: Path) -> str:
    if sqlite:
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'bench.db'}"
    name = f"bench_subs_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def _drop(url: str) -> None:
    if url.startswith("sqlite"):
        return
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def _observation(patient: str, code: str = CODE) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


def _subscribe(ctx: Context, criteria: list[str], url: str) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(criteria), 500):

        def work(tx: Any, chunk: list[str] = criteria[start : start + 500]) -> list[str]:
            body = {"resourceType": "Subscription", "status": "requested", "reason": "bench"}
            return [
                create.create(
                    ctx,
                    tx,
                    "Subscription",
                    {**body, "criteria": c, "channel": {"type": "rest-hook", "endpoint": url}},
                ).stored.res_id
                for c in chunk
            ]

        ids += ctx.transact(work)
    return ids


def _patients(ctx: Context, count: int) -> None:
    def work(tx: Any) -> None:
        for n in range(count):
            tx.create({"resourceType": "Patient", "active": True}, f"p{n}")

    ctx.transact(work)


def _settle(store: Store, timeout: float = 600) -> None:
    """Wait until the dispatcher has delivered every event so far (the Subscriptions' own creates)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.read() as tx:
            behind = tx.conn.execute(
                text(
                    "SELECT (SELECT max(txn) FROM resource_version) - coalesce((SELECT txn"
                    " FROM change_consumer WHERE name = 'subscriptions'), 0)"
                )
            ).scalar()
        if not behind:
            return
        time.sleep(0.005)


def latency(sqlite: bool, subscriptions: int, writes: int, folder: Path) -> dict[str, float]:
    url = _database(sqlite, folder)
    engine = make_engine(url)
    migrate.upgrade(engine)
    store = Store(engine, base="http://bench")
    settings = Settings(base_url="http://bench", subscription_allow_loopback=True)
    ctx = Context(store, settings)
    arrivals = Arrivals()
    try:
        patients = max(subscriptions, 1)
        _patients(ctx, patients)
        watched = _subscribe(ctx, [f"Observation?code=http://loinc.org|{CODE}&patient=p0"], arrivals.url)[0]
        _subscribe(
            ctx,
            [f"Observation?code=http://loinc.org|{CODE}&patient=p{n}" for n in range(1, subscriptions)],
            arrivals.url,
        )
        service.install()
        dispatcher = events.start(store)
        assert dispatcher is not None
        deliverer, stop = service.start(store, settings)
        _settle(store)
        times: list[float] = []
        for n in range(1, writes + 1):
            ctx.transact(lambda tx: create.create(ctx, tx, "Observation", _observation("p0")))
            committed = time.perf_counter()
            times.append((arrivals.wait((watched, n)) - committed) * 1000)
        stop.set()
        dispatcher[1].set()
        deliverer.pool.shutdown(wait=True)
        time.sleep(1.5)  # the threads' last look ends before the database is dropped
        store.after_commit.clear()
        q = statistics.quantiles(times, n=20)
        return {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(q[18], 1), "writes": writes}
    finally:
        arrivals.server.shutdown()
        engine.dispose()
        _drop(url)


def throughput(sqlite: bool, creates: int, pairs: int, folder: Path) -> dict[str, Any]:
    url = _database(sqlite, folder)
    engine = make_engine(url)
    migrate.upgrade(engine)
    store = Store(engine, base="http://bench")
    settings = Settings(base_url="http://bench", subscription_allow_loopback=True)
    ctx = Context(store, settings)
    arrivals = Arrivals()
    service.install()
    dispatcher = events.start(store)
    assert dispatcher is not None
    deliverer, stop = service.start(store, settings)
    try:
        _patients(ctx, 10)

        def run() -> float:
            started = time.perf_counter()
            for _ in range(creates):
                ctx.transact(lambda tx: create.create(ctx, tx, "Observation", _observation("p1", "29463-7")))
            _settle(store)  # the listener's work counts: wait until it caught up
            return creates / (time.perf_counter() - started)

        run()  # warm-up
        none: list[float] = []
        some: list[float] = []
        ids: list[str] = []
        for _ in range(pairs):
            none.append(run())
            ids = _subscribe(
                ctx,
                [f"Observation?code=http://loinc.org|{CODE}&patient=p{n % 10}" for n in range(100)],
                arrivals.url,
            )
            _settle(store)
            some.append(run())
            for sub_id in ids:  # back to none for the next pair
                ctx.transact(lambda tx, s=sub_id: create_delete(tx, s))
            _settle(store)
        ratio = statistics.median(s / n for s, n in zip(some, none, strict=True))
        return {
            "creates_per_s_none": [round(x) for x in none],
            "creates_per_s_100_nonmatching": [round(x) for x in some],
            "median_ratio": round(ratio, 3),
        }
    finally:
        stop.set()
        dispatcher[1].set()
        deliverer.pool.shutdown(wait=True)
        time.sleep(1.5)
        arrivals.server.shutdown()
        engine.dispose()
        _drop(url)


def create_delete(tx: Any, sub_id: str) -> None:
    from fhir_server.interactions import delete

    delete.delete(tx, "Subscription", sub_id)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--counts", default="1,100,10000")
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        for count in (int(c) for c in args.counts.split(",")):
            started = time.monotonic()
            figures = latency(args.sqlite, count, args.writes, Path(folder) / f"l{count}")
            print(f"latency, {count} active: {figures} ({time.monotonic() - started:.0f} s)", flush=True)
        print(
            f"throughput: {throughput(args.sqlite, args.creates, args.pairs, Path(folder) / 't')}", flush=True
        )
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
