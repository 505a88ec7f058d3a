"""Cost of looking up StructureDefinitions stored on the server for a `meta.profile` claim (issue 11).

    .venv/bin/python -m bench.stored_profile_lookup [--database-url postgresql+psycopg://...] [--n 2000]

A write whose claim no loaded package holds (Synthea's US Core claims, say) searches
`StructureDefinition?url=` once per url and transaction (`fhir_server/interactions/stored_profiles.py`).
Timed, in microseconds per lookup (wall and CPU of this process), each in its own transaction as
a REST write would: an absent url, and a stored profile (the compiled version is cached). With
`--database-url` the database must be empty and migrated is not needed: tables are created, then
dropped. The default is a SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

from fhir_server.interactions import stored_profiles
from fhir_server.interactions.context import Context
from fhir_server.settings import Settings
from fhir_server.store import schema
from fhir_server.store.engine import make_engine
from fhir_server.store.sql import Store
from profiles import definitions

HEARTRATE = "http://hl7.org/fhir/StructureDefinition/heartrate"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--database-url", default=None)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--stored", type=int, default=100, help="StructureDefinitions stored first (100)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(url)
        schema.metadata.create_all(engine)
        try:
            run(Store(engine, check_references=False), args.n, args.stored)
        finally:
            schema.metadata.drop_all(engine)
            engine.dispose()


def run(store: Store, n: int, count: int) -> None:
    ctx = Context(store, Settings())
    source = dict(definitions.find(HEARTRATE) or {})
    with store.write() as tx:
        for i in range(count):
            sd = copy.deepcopy(source)
            sd.update(id=f"p{i}", url=f"http://example.org/StructureDefinition/p{i}")
            tx.create(sd, f"p{i}")
    print(f"{store.engine.dialect.name}, {count} StructureDefinitions stored, {n} lookups each")
    for label, url in (
        ("absent url", "http://example.org/us-core-patient"),
        ("stored url", "http://example.org/StructureDefinition/p7"),
    ):
        with store.read() as tx:  # warm: compile once, plan once
            stored_profiles.resolver(ctx, tx)(url)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            with store.read() as tx:
                stored_profiles.resolver(ctx, tx)(url)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        empty, empty_cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            with store.read() as tx:
                pass
        empty, empty_cpu = time.perf_counter() - empty, time.process_time() - empty_cpu
        print(
            f"{label:12s} {wall / n * 1e6:8.0f} us wall {cpu / n * 1e6:8.0f} us CPU per lookup (an empty transaction: {empty / n * 1e6:.0f} us wall, {empty_cpu / n * 1e6:.0f} us CPU)"
        )


if __name__ == "__main__":
    main()
