"""FHIR npm packages an operator adds (https://confluence.hl7.org/display/FHIR/NPM+Package+Specification).

`fhir-server profiles add <name[@version] | file.tgz>` unpacks a package under
`<data_dir>/packages/<name>-<version>/package`; every server process (and the `$import` workers)
loads the StructureDefinitions of the installed packages at start-up (`load_installed`), so a
resource claiming one of their profiles in `meta.profile` is validated against it.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

import orjson

from fhir_server import spec_package

from . import definitions


def folder(data_dir: Path) -> Path:
    """Where installed packages live."""
    return Path(data_dir) / "packages"


def install(source: str, data_dir: Path) -> Path:
    """Install a package from a .tgz file or npm (`name` or `name@version`); return its folder."""
    root = folder(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = Path(source)
    if source.endswith(".tgz") and path.is_file():
        with tempfile.TemporaryDirectory(dir=root) as tmp, tarfile.open(path) as tar:
            tar.extractall(tmp, filter="data")
            staged = Path(tmp) / "package"
            manifest = orjson.loads((staged / "package.json").read_bytes())
            target = root / f"{manifest['name']}-{manifest['version']}" / "package"
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            staged.rename(target)
    else:
        name, _, version = source.partition("@")
        target = spec_package.fetch_npm(
            name, version or "latest", root / f"{name}-{version or 'latest'}" / "package"
        )
    definitions.add_package_dir(target)
    return target


def installed(data_dir: Path) -> list[tuple[str, str, Path]]:
    """(name, version, folder) of every installed package."""
    out = []
    for manifest in sorted(folder(data_dir).glob("*/package/package.json")):
        data = orjson.loads(manifest.read_bytes())
        out.append((str(data.get("name")), str(data.get("version")), manifest.parent))
    return out


def load_installed(data_dir: Path) -> None:
    """Make the StructureDefinitions of every installed package known to the validator."""
    for _name, _version, path in installed(data_dir):
        definitions.add_package_dir(path)


def profiles_of(path: Path) -> list[str]:
    """The StructureDefinition urls of one installed package folder."""
    out = []
    for file in sorted(path.glob("*.json")):
        try:
            data = orjson.loads(file.read_bytes())
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("resourceType") == "StructureDefinition" and data.get("url"):
            out.append(str(data["url"]))
    return out
