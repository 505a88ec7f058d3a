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
    return npm_cache_dir(PACKAGE, VERSION)


def npm_cache_dir(package: str, version: str) -> Path:
    """Where an npm package unpacks to: $XDG_CACHE_HOME (or ~/.cache)/fhir-server/<name>-<version>/package."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "fhir-server" / f"{package}-{version}" / "package"


def ensure() -> Path:
    """Return the unpacked package folder, fetching it with `npm pack` when it is not there yet."""
    return fetch_npm(PACKAGE, VERSION, cache_dir())


def fetch_npm(package: str, version: str, target: Path) -> Path:
    """Unpack `npm pack <package>@<version>` into target unless it is there already; return target."""
    if (target / "package.json").exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"npm is needed once to fetch {package}@{version}; install Node.js/npm")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Staged beside the target and renamed into place: concurrent fetches never see half a package.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        subprocess.run(
            [npm, "pack", f"{package}@{version}", "--silent"],
            cwd=tmp,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        archive = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        staged = Path(tmp) / "package"
        if target.exists() and not (target / "package.json").exists():
            shutil.rmtree(target, ignore_errors=True)  # left over from an interrupted fetch
        try:
            staged.rename(target)
        except OSError:
            if not (target / "package.json").exists():
                raise
    return target


def resources(prefix: str = "") -> Iterator[tuple[Path, dict]]:
    """Yield (path, resource) for every JSON file of the package whose name starts with prefix."""
    folder = ensure()
    for path in sorted(folder.glob(f"{prefix}*.json")):
        if path.name in ("package.json", ".index.json"):
            continue
        yield path, orjson.loads(path.read_bytes())
