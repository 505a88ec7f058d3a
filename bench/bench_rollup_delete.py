"""Deleting a patient's 1 Hz values on SQLite: the cost of the rollup's delete trigger (store/observation_rollup.py).

One command, from the repository root:

    .venv/bin/python bench/bench_rollup_delete.py                  # 3,600 and 14,400 values
    .venv/bin/python bench/bench_rollup_delete.py --values 86400   # a day

For each size, value rows of one Observation code at one per second (so 900 to a 15-minute slot) are
inserted into `idx_observation_value` of a fresh SQLite database (migrated as the server migrates
it), then deleted in one statement, and the DELETE's wall time is printed, for values all equal (98:
every value is both its slot's minimum and maximum), for values drawn from 90-100 (many ties), and
for distinct values (no ties: an extreme that leaves recomputes its slot). The delete
trigger recomputes a slot only when an extreme leaves it with no value tied to it; before ties were
looked for, the equal values cost a recompute of their slot per row (docs/clinical-operations.md).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AT = 1_711_846_800_000_000  # 2024-03-31T01:00:00Z, the start of a slot
_INSERT = (
    "INSERT INTO idx_observation_value (resource_pk, subject, system, code, grp, value_system,"
    " value_code, effective, value, unit, canon_value, canon_code) VALUES (:pk, 'Patient/bench',"
    " 'http://loinc.org', '59408-5', 0, 'http://loinc.org', '59408-5', :at, :v, '%', :v, '%')"
)


def _delete_seconds(values: list[float]) -> float:
    from sqlalchemy import text

    from fhir_server.store.engine import make_engine
    from fhir_server.store.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'rollup.db'}")
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(
                text(_INSERT), [{"pk": i, "at": AT + i * 1_000_000, "v": v} for i, v in enumerate(values)]
            )
        start = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM idx_observation_value"))
        elapsed = time.perf_counter() - start
        engine.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--values", default="3600,14400", help="sizes, comma-separated")
    args = parser.parse_args()
    rng = random.Random(0)
    for n in (int(x) for x in args.values.split(",")):
        equal = _delete_seconds([98.0] * n)
        varied = _delete_seconds([float(rng.randint(90, 100)) for _ in range(n)])
        distinct = _delete_seconds([rng.uniform(90, 100) for _ in range(n)])
        print(f"{n:>7,} values: all equal {equal:.2f} s, 90-100 {varied:.2f} s, distinct {distinct:.2f} s")


if __name__ == "__main__":
    main()
