"""StructureDefinitions by canonical url, from FHIR npm packages (https://hl7.org/fhir/R4/structuredefinition.html).

The base resources, datatypes and HL7's own profiles come from `hl7.fhir.r4.examples` 4.0.1
(`fhir_server.spec_package`); an operator adds packages with `fhir-server profiles add` (they
unpack under `<data_dir>/packages`, see `profiles/packages.py`). StructureDefinitions stored on the
server are not known here: they are looked up per transaction and compiled per stored version
(`profiles/stored.py`), and never shadow a url known here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from fhir_server import spec_package

BASE = "http://hl7.org/fhir/StructureDefinition/"

_lock = threading.Lock()
_package_dirs: list[Path] = []  # extra unpacked packages, searched after the spec package
_index: dict[str, Path] | None = None  # url -> file, built on the first lookup of a non-base url


def add_package_dir(folder: Path) -> None:
    """Make the StructureDefinitions of an unpacked npm package folder known."""
    global _index
    with _lock:
        if folder not in _package_dirs:
            _package_dirs.append(folder)
            _index = None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("resourceType") == "StructureDefinition" else None


def _files() -> Iterable[Path]:
    yield from sorted(spec_package.ensure().glob("StructureDefinition-*.json"))
    for folder in list(_package_dirs):
        yield from sorted(folder.glob("*.json"))


def _build_index() -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in _files():
        if path.name in ("package.json", ".index.json"):
            continue
        data = _read(path)
        if data is not None and isinstance(data.get("url"), str):
            index.setdefault(data["url"], path)
    return index


def find(url: str) -> Mapping[str, Any] | None:
    """The StructureDefinition with canonical `url` (a `|version` suffix is ignored), or None."""
    global _index
    url = url.split("|", 1)[0]
    if url.startswith(BASE):  # HL7's own: StructureDefinition-<id>.json in the spec package
        data = _read(spec_package.ensure() / f"StructureDefinition-{url[len(BASE) :]}.json")
        if data is not None and data.get("url") == url:
            return data
    with _lock:
        if _index is None:
            _index = _build_index()
        path = _index.get(url)
    return _read(path) if path is not None else None


find_packaged = find  # the name `profiles/stored.py` reads: packages only, never stored definitions


def urls() -> list[str]:
    """Every StructureDefinition url the loaded packages hold."""
    global _index
    with _lock:
        if _index is None:
            _index = _build_index()
        return sorted(_index)


def base_url(type_name: str) -> str:
    """The canonical url of a base resource or datatype definition."""
    return BASE + type_name
