"""HL7's CC0 npm package `hl7.fhir.r4.examples` 4.0.1: where it is, fetched with npm when missing.

The package holds the R4 definitions (SearchParameter, CompartmentDefinition, StructureDefinition,
ValueSet, ...) and HL7's example resources; see https://hl7.org/fhir/R4/downloads.html.
Runtime data we derive from it is generated into the source tree by `scripts/`; tests read the
examples from here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson

PACKAGE = "hl7.fhir.r4.examples"
VERSION = "4.0.1"


def cache_dir() -> Path:
    """Folder the package unpacks to (FHIR_SPEC_PACKAGE_DIR overrides)."""
    override = os.environ.get("FHIR_SPEC_PACKAGE_DIR")
    if override:
        return Path(override)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "fhir-server" / f"{PACKAGE}-{VERSION}" / "package"


def ensure() -> Path:
    """Return the unpacked package folder, fetching it with `npm pack` when it is not there yet."""
    target = cache_dir()
    if (target / "package.json").exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"npm is needed once to fetch {PACKAGE}@{VERSION}; install Node.js/npm")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--silent"],
            cwd=tmp,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        archive = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        staged = Path(tmp) / "package"
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(staged), str(target))
    return target


def resources(prefix: str = "") -> Iterator[tuple[Path, dict]]:
    """Yield (path, resource) for every JSON file of the package whose name starts with prefix."""
    folder = ensure()
    for path in sorted(folder.glob(f"{prefix}*.json")):
        if path.name in ("package.json", ".index.json"):
            continue
        yield path, orjson.loads(path.read_bytes())
