"""Generate the terminology data the server ships from HL7's R4 package (https://hl7.org/fhir/R4/terminology-module.html).

Reads every CodeSystem and ValueSet of `hl7.fhir.r4.examples` 4.0.1 (see fhir_server/spec_package.py)
and writes terminology/data/terminology.json.gz:

- codeSystems: url, version, name, title, content, caseSensitive, hierarchyMeaning, and the concepts
  as [code, display, [parent codes], [[property, value type, value], ...]]. Parents come from the
  nesting of `concept.concept` and from the `child`, `parent` and `subsumedBy` concept properties
  (https://hl7.org/fhir/R4/codesystem.html#hierarchy, codesystem-concept-properties.html).
  Supplements are left out.
- valueSets: id, url, version, name, title, status and the compose (inactive, include / exclude with
  system, version, concept code + display, filter property / op / value, valueSet), designations and
  extensions dropped (https://hl7.org/fhir/R4/valueset.html#compositions).

Re-runnable: `.venv/bin/python scripts/gen_terminology.py`.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_server import spec_package  # noqa: E402
from terminology import codesystems  # noqa: E402

OUT = ROOT / "terminology" / "data" / "terminology.json.gz"
VS_FIELDS = ("id", "url", "version", "name", "title", "status")


def code_system(resource: dict[str, Any]) -> dict[str, Any]:
    """The compact form of one CodeSystem resource."""
    return codesystems.to_data(codesystems.from_resource(resource), resource)


def _include(part: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: part[k] for k in ("system", "version", "valueSet") if k in part}
    if "concept" in part:
        out["concept"] = [{k: c[k] for k in ("code", "display") if k in c} for c in part["concept"]]
    if "filter" in part:
        out["filter"] = [{k: f[k] for k in ("property", "op", "value") if k in f} for f in part["filter"]]
    return out


def value_set(resource: dict[str, Any]) -> dict[str, Any]:
    """The compact form of one ValueSet resource (its definition; expansions are computed)."""
    out = {k: resource[k] for k in VS_FIELDS if k in resource}
    compose = resource.get("compose")
    if compose:
        slim: dict[str, Any] = {}
        if "inactive" in compose:
            slim["inactive"] = compose["inactive"]
        for key in ("include", "exclude"):
            if compose.get(key):
                slim[key] = [_include(p) for p in compose[key]]
        out["compose"] = slim
    return out


def generate() -> dict[str, Any]:
    code_systems = [
        code_system(r)
        for _, r in spec_package.resources("CodeSystem-")
        if r.get("resourceType") == "CodeSystem" and r.get("url") and r.get("content") != "supplement"
    ]
    value_sets = [
        value_set(r)
        for _, r in spec_package.resources("ValueSet-")
        if r.get("resourceType") == "ValueSet" and r.get("url")
    ]
    return {
        "source": f"{spec_package.PACKAGE} {spec_package.VERSION}",
        "codeSystems": sorted(code_systems, key=lambda c: c["url"]),
        "valueSets": sorted(value_sets, key=lambda v: v["url"]),
    }


def main() -> None:
    data = generate()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(gzip.compress(orjson.dumps(data), compresslevel=9, mtime=0))
    concepts = sum(len(c["concepts"]) for c in data["codeSystems"])
    print(
        f"{OUT.relative_to(ROOT)}: {len(data['codeSystems'])} code systems ({concepts} concepts), "
        f"{len(data['valueSets'])} value sets, {OUT.stat().st_size} bytes"
    )


if __name__ == "__main__":
    main()
