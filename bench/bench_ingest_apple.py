"""Benchmark: Apple Health export.xml of 1,000,000 records through the streaming adapter (https://developer.apple.com/documentation/healthkit).

Generates a synthetic export on disk, then runs ``ingest.pipeline.iter_file`` over it in a child
process, discarding each transaction Bundle as it is produced, and prints records/s and the child's
peak RSS (ru_maxrss). Peak RSS is also sampled at 10% and 100% of the run to show it stays flat.

    .venv/bin/python bench/bench_ingest_apple.py [--records 1000000] [--keep]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.ingest.fixtures import write_apple_export


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(path: str, records: int, out: mp.Queue) -> None:
    from ingest.pipeline import iter_file

    baseline = _rss_mib()
    run = iter_file(path, "apple-health", "Patient/bench", recorded="2024-01-01T00:00:00Z")
    t0 = time.perf_counter()
    c0 = time.process_time()
    rss_at_10 = 0.0
    entries = 0
    for bundle in run:
        entries += len(bundle["entry"])
        if not rss_at_10 and run.counts["records"] >= records // 10:
            rss_at_10 = _rss_mib()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    out.put(
        {
            "elapsed": elapsed,
            "cpu": cpu,
            "records": run.counts["records"],
            "observations": run.counts["observations"],
            "bundles": run.counts["bundles"],
            "entries": entries,
            "problems": len(run.problems),
            "baseline_rss": baseline,
            "rss_at_10": rss_at_10,
            "peak_rss": _rss_mib(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated export")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-apple-"))
    path = tmp / "export.xml"
    t0 = time.perf_counter()
    write_apple_export(path, args.records)
    size = path.stat().st_size
    print(f"generated {args.records:,} records, {size / 2**20:,.0f} MiB in {time.perf_counter() - t0:.1f} s")

    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(str(path), args.records, queue))
    proc.start()
    r = queue.get()
    proc.join()
    if not args.keep:
        path.unlink()
        tmp.rmdir()

    rate = r["records"] / r["elapsed"]
    print(f"records read:        {r['records']:,}")
    print(
        f"observations:        {r['observations']:,} in {r['bundles']:,} bundles ({r['entries']:,} entries)"
    )
    print(f"problems:            {r['problems']}")
    print(f"elapsed:             {r['elapsed']:.1f} s")
    print(f"throughput:          {rate:,.0f} records/s wall ({size / 2**20 / r['elapsed']:.1f} MiB/s)")
    print(f"CPU time:            {r['cpu']:.1f} s = {r['records'] / r['cpu']:,.0f} records per CPU-second")
    print(f"RSS before run:      {r['baseline_rss']:.0f} MiB")
    print(f"peak RSS at 10%:     {r['rss_at_10']:.0f} MiB")
    print(f"peak RSS at 100%:    {r['peak_rss']:.0f} MiB")


if __name__ == "__main__":
    main()
