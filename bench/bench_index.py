"""Benchmark of search index row building (https://hl7.org/fhir/R4/search.html) over Synthea bundles.

Reads the transaction Bundles in ../shared/data/synthea-r4/*.json (relative to the repository root) (or the folder given as the
first argument), rewrites `urn:uuid:` references to `Type/id` as the transaction interaction does,
then times `index_rows` per resource and prints resources/s, µs per resource by type, and rows.

    .venv/bin/python bench/bench_index.py [folder] [--limit N]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fhir_server.search.index import index_rows, plan


def _rewrite(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _rewrite(v, ids) for k, v in value.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref in ids:
            out["reference"] = ids[ref]
        return out
    if isinstance(value, list):
        return [_rewrite(v, ids) for v in value]
    return value


def load(folder: Path, limit: int | None) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json"))[:limit]:
        bundle = orjson.loads(path.read_bytes())
        entries = bundle.get("entry", [])
        ids = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in entries
            if "fullUrl" in e and "id" in e["resource"]
        }
        resources.extend(_rewrite(e["resource"], ids) for e in entries)
    return resources


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "folder",
        nargs="?",
        default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "synthea-r4"),
    )
    parser.add_argument("--limit", type=int, default=None, help="number of bundles")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    resources = load(Path(args.folder), args.limit)
    for t in {r["resourceType"] for r in resources}:
        plan(t)  # compile outside the timing
    for r in resources[:2000]:
        index_rows(r)  # warm the caches (dates, units, references) like a running server
    per_type: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    rows = 0
    best = float("inf")
    gc.disable()
    for _ in range(args.repeat):
        per_type.clear()
        count.clear()
        rows = 0
        clock = time.process_time  # CPU time: the machine is shared, wall time is noisy
        start = clock()
        for r in resources:
            t0 = clock()
            out = index_rows(r)
            per_type[r["resourceType"]] += clock() - t0
            count[r["resourceType"]] += 1
            rows += sum(len(v) for v in out.values())
        best = min(best, clock() - start)
    gc.enable()
    n = len(resources)
    print(f"{n} resources, {rows} index rows ({rows / n:.1f} per resource)")
    print(
        f"index_rows: {n / best:,.0f} resources/s, {best / n * 1e6:.1f} µs per resource (best of {args.repeat}, CPU time)"
    )
    print(f"{'type':<22} {'count':>7} {'µs/resource':>12}")
    for t in sorted(count, key=lambda t: -count[t]):
        print(f"{t:<22} {count[t]:>7} {per_type[t] / count[t] * 1e6:>12.1f}")


if __name__ == "__main__":
    main()
