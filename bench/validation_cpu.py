"""CPU microseconds per resource of validation: the R4B models (today's check) against the
StructureDefinition validator (profiles/), base definition alone and with one declared profile.

    .venv/bin/python -m bench.validation_cpu [--data ../shared/data/synthea-r4] [--limit N] [--repeat 300]

In one run, in-process, CPU time (time.process_time) of:
- `r4b`: `model.check_models` plus the narrative check, what every write ran before issue 11;
- `base`: `profiles.validator.issues(declared=False)`: structure, cardinality, primitive formats,
  required bindings, reference targets, invariants, narrative, against the type's base definition;
- `base+profile`: the same with the resource's declared `meta.profile` (HL7's heartrate profile on
  the vital sign; Synthea's US Core claims are unknown to the server and skipped).
on a vital-sign Observation (HL7's `Observation-heart-rate` example), a Patient (HL7's
`Patient-example`), every entry resource of the Synthea bundles, and the Observations of a
generated Apple Health export (`--apple N` records through the adapter, as `fhir-server ingest`
builds them). Compilation of definitions and value set expansions happen once, before timing (as
on a running server). The validator remembers values it found valid (profiles/valid_subtrees.py):
the single resources, checked again and again, are measured with that table emptied before each
check (a resource never seen); Synthea and Apple Health are checked once each, in order, as a
load meets them; `--cold` empties it before every check of those too. The machine is shared:
compare the columns of one run, not runs on different days.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from fhir_server import model, narrative, spec_package
from profiles import valid_subtrees, validator

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "synthea-r4"


def r4b(resource: dict[str, Any]) -> None:
    model.check_models(resource)
    narrative.check(resource, resource["resourceType"])


def base(resource: dict[str, Any]) -> None:
    validator.issues(resource, declared=False)


def with_profile(resource: dict[str, Any]) -> None:
    validator.issues(resource)


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {"r4b": r4b, "base": base, "base+profile": with_profile}


def cpu_us(
    check: Callable[[dict[str, Any]], None], resources: list[dict[str, Any]], repeat: int, cold: bool
) -> float:
    for r in resources[: min(len(resources), 50)]:
        check(r)  # warm: compiled definitions, expansions
    valid_subtrees.forget_all()
    start = time.process_time()
    for _ in range(repeat):
        for r in resources:
            if cold:
                valid_subtrees.forget_all()
            check(r)
    return (time.process_time() - start) / (repeat * len(resources)) * 1e6


def synthea(folder: Path, limit: int | None) -> list[dict[str, Any]]:
    files = sorted(folder.glob("*.json"))[: limit or None]
    out = []
    for path in files:
        bundle = orjson.loads(path.read_bytes())
        out += [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
    return out


def apple_health(records: int) -> list[dict[str, Any]]:
    """The Observations `fhir-server ingest` makes of a generated Apple Health export."""
    import tempfile

    from ingest.pipeline import iter_file
    from tests.ingest.fixtures import write_apple_export

    with tempfile.TemporaryDirectory() as tmp:
        path = write_apple_export(Path(tmp) / "export.xml", records)
        out: list[dict[str, Any]] = []
        for bundle in iter_file(path, "apple-health", "Patient/bench"):
            out += [
                e["resource"]
                for e in bundle.get("entry", [])
                if e.get("resource", {}).get("resourceType") == "Observation"
            ]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--limit", type=int, default=None, help="only the first N Synthea bundles")
    p.add_argument("--repeat", type=int, default=300, help="passes over the single resources (300)")
    p.add_argument("--apple", type=int, default=5000, help="Apple Health records (5000; 0: none)")
    p.add_argument("--cold", action="store_true", help="forget remembered valid values before every check")
    args = p.parse_args()
    folder = spec_package.ensure()
    heart = orjson.loads((folder / "Observation-heart-rate.json").read_bytes())
    patient = orjson.loads((folder / "Patient-example.json").read_bytes())
    sets = {
        "vital-sign Observation (heartrate profile)": ([heart], args.repeat, True),
        "Patient": ([patient], args.repeat, True),
    }
    if args.data.exists():
        sets["Synthea, every entry"] = (synthea(args.data, args.limit), 1, args.cold)
    if args.apple:
        sets["Apple Health Observations"] = (apple_health(args.apple), 1, args.cold)
    for r in [heart, patient]:
        errors = [i for i in validator.issues(copy.deepcopy(r)) if i.severity == "error"]
        assert not errors, errors
    print(
        f"{'resources':45} {'n':>7} "
        + " ".join(f"{name:>13}" for name in CHECKS)
        + "   ratio base  ratio +profile"
    )
    for label, (resources, repeat, cold) in sets.items():
        figures = {name: cpu_us(check, resources, repeat, cold) for name, check in CHECKS.items()}
        print(
            f"{label:45} {len(resources):>7} "
            + " ".join(f"{figures[name]:>11.0f}us" for name in CHECKS)
            + f"   {figures['base'] / figures['r4b']:>10.2f}  {figures['base+profile'] / figures['r4b']:>14.2f}"
        )


if __name__ == "__main__":
    main()
