"""CPU microseconds per resource of FHIR XML (fhir_server/xml_format) against JSON (orjson), on Synthea.

    .venv/bin/python -m bench.xml_cpu [--data ../shared/data/synthea-r4] [--limit N]

In one run, in-process, CPU time (time.process_time) per entry resource of the Synthea bundles of:
- `xml serialise`: `xml_format.serialise(resource)` (JSON dict to XML bytes, what an XML read pays
  on top of `orjson.loads` of the stored bytes);
- `xml parse`: `xml_format.parse(xml)` (what an XML write pays instead of `json parse`);
- `json dumps` / `json parse`: orjson on the same resources, for scale (plus the input-limit scan
  `input_limits.loads_json` runs before orjson on a request body).
Sizes (bytes per resource) of both forms are printed too. Compilation of definitions happens once,
before timing. The machine is shared: compare the columns of one run, and note the load average.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from fhir_server import input_limits
from fhir_server.xml_format import parse, serialise

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "synthea-r4"


def synthea(folder: Path, limit: int | None) -> list[dict[str, Any]]:
    out = []
    for path in sorted(folder.glob("*.json"))[: limit or None]:
        bundle = orjson.loads(path.read_bytes())
        out += [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
    return out


def cpu_us(work: Callable[[Any], Any], items: list[Any]) -> float:
    for item in items[:50]:
        work(item)  # warm: compiled definitions
    start = time.process_time()
    for item in items:
        work(item)
    return (time.process_time() - start) / len(items) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--limit", type=int, default=10, help="the first N Synthea bundles (10; 0: all)")
    args = p.parse_args()
    resources = synthea(args.data, args.limit)
    xml = [serialise(r) for r in resources]
    json = [orjson.dumps(r) for r in resources]
    assert all(parse(x) == r for x, r in zip(xml, resources, strict=True)), "round trip broken"
    figures = {
        "xml serialise": cpu_us(serialise, resources),
        "xml parse": cpu_us(parse, xml),
        "json dumps": cpu_us(orjson.dumps, resources),
        "json parse (depth scan + orjson)": cpu_us(input_limits.loads_json, json),
    }
    print(
        f"{len(resources)} resources from {args.limit or 'all'} Synthea bundles; load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"bytes/resource: xml {sum(map(len, xml)) / len(xml):.0f}, json {sum(map(len, json)) / len(json):.0f}"
    )
    for name, us in figures.items():
        print(f"{name:34} {us:>9.1f} us/resource")


if __name__ == "__main__":
    main()
