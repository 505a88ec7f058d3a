"""A snapshot for a profile given only as a differential (https://hl7.org/fhir/R4/profiling.html#snapshot).

`with_snapshot(sd)` starts from the snapshot of its `baseDefinition` (a definition a loaded package
holds) and applies each differential element by its id:
- an element the base has: the differential's properties replace the base's (`constraint` adds);
- a child of an element of one complex datatype (`Observation.code.coding.system`): that
  datatype's elements are unrolled below it first;
- a slice (`Observation.category:VSCat`): a copy of the sliced element and its children, named.
Anything else (an unknown path, a base the server does not hold, a choice element renamed to one
type as in `Observation.valueQuantity`) raises `NoSnapshot` with the reason. Inherited
constraints get the `source` of the definition they come from, as HL7's snapshots have, so the
profile pass of the validator does not repeat the base's invariants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from . import definitions

_NOT_UNROLLED = {"BackboneElement", "Element", "Resource", "Extension"}


class NoSnapshot(Exception):
    """The differential cannot be turned into a snapshot here; the message says why."""


def with_snapshot(sd: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `sd` with a snapshot generated from its base definition and differential."""
    diff = (sd.get("differential") or {}).get("element")
    if not isinstance(diff, list) or not diff:
        raise NoSnapshot("it has neither a snapshot nor a differential")
    base_url = sd.get("baseDefinition")
    base = definitions.find(base_url) if isinstance(base_url, str) else None
    if base is None or not isinstance(base.get("snapshot"), Mapping):
        raise NoSnapshot(f"its baseDefinition {base_url} is not a definition of a loaded package")
    elements = _copied(base["snapshot"]["element"], str(base_url))
    for d in diff:
        if not isinstance(d, dict) or not isinstance(d.get("path"), str):
            raise NoSnapshot("a differential element has no path")
        eid = d.get("id") or _id_of(d)
        at = _ensure(elements, eid)
        _merge(elements[at], d, str(sd.get("url")))
    out = dict(sd)
    out["snapshot"] = {"element": elements}
    return out


def _id_of(d: Mapping[str, Any]) -> str:
    return str(d["path"]) + (f":{d['sliceName']}" if d.get("sliceName") else "")


def _copied(elements: list[Any], source: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = orjson.loads(orjson.dumps(elements))  # a deep copy
    for e in out:
        e.setdefault("id", e["path"])
        for c in e.get("constraint", ()):
            c.setdefault("source", source)
    return out


def _index(elements: list[dict[str, Any]], eid: str) -> int | None:
    return next((i for i, e in enumerate(elements) if e["id"] == eid), None)


def _subtree_end(elements: list[dict[str, Any]], eid: str) -> int:
    """The index after the last element below `eid` (its children and its slices)."""
    end = _index(elements, eid)
    assert end is not None
    for i in range(end + 1, len(elements)):
        if elements[i]["id"].startswith((eid + ".", eid + ":")):
            end = i
        else:
            break
    return end + 1


def _ensure(elements: list[dict[str, Any]], eid: str) -> int:
    """The index of element `eid`, unrolling a datatype or adding a slice to make it."""
    found = _index(elements, _resolve(elements, eid))
    assert found is not None
    return found


def _resolve(elements: list[dict[str, Any]], eid: str) -> str:
    """The snapshot id of differential id `eid`, after making the element exist."""
    if _index(elements, eid) is not None:
        return eid
    parent_id, _, last = eid.rpartition(".")
    if parent_id:
        parent_id = _resolve(elements, parent_id)
    prefix = f"{parent_id}." if parent_id else ""
    if ":" in last:  # a slice of parent_id.name
        name, _, slice_name = last.partition(":")
        return _slice(elements, prefix + name, slice_name)
    if _index(elements, prefix + last) is not None:
        return prefix + last
    for e in elements:  # a choice element renamed to one type: value[x] as valueQuantity
        name = e["id"][len(prefix) :]
        if e["id"].startswith(prefix) and name.endswith("[x]") and "." not in name and ":" not in name:
            stem = name[:-3]
            code = next(
                (t.get("code") for t in e.get("type", ()) if stem + _cap(t.get("code")) == last), None
            )
            if last.startswith(stem) and code is not None:
                e["type"] = [t for t in e["type"] if t.get("code") == code]
                e.setdefault(
                    "slicing", {"discriminator": [{"type": "type", "path": "$this"}], "rules": "closed"}
                )
                sliced = _slice(elements, e["id"], last)
                elements[_index(elements, sliced) or 0]["type"] = list(e["type"])
                return sliced
    if not parent_id:
        raise NoSnapshot(f"{eid} is not an element of the base")
    _unroll(elements, parent_id)
    if _index(elements, prefix + last) is None:
        raise NoSnapshot(f"{eid} is not an element of the base")
    return prefix + last


def _cap(code: Any) -> str:
    return str(code)[:1].upper() + str(code)[1:] if code else "\0"


def _slice(elements: list[dict[str, Any]], sliced_id: str, slice_name: str) -> str:
    """Add slice `slice_name` of element `sliced_id` (a copy of it and its children); its id."""
    eid = f"{sliced_id}:{slice_name}"
    if _index(elements, eid) is not None:
        return eid
    start = _index(elements, sliced_id)
    if start is None:
        raise NoSnapshot(f"{eid} slices {sliced_id}, which is not an element of the base")
    end = _subtree_end(elements, sliced_id)
    subtree = [e for e in elements[start:end] if e["id"] == sliced_id or e["id"].startswith(sliced_id + ".")]
    copies = orjson.loads(orjson.dumps(subtree))
    for e in copies:
        e["id"] = eid + e["id"][len(sliced_id) :]
    copies[0]["sliceName"] = slice_name
    copies[0].pop("slicing", None)
    elements[end:end] = copies
    return eid


def _unroll(elements: list[dict[str, Any]], parent_id: str) -> None:
    """Put the elements of the one complex datatype of `parent_id` below it (when it has none yet)."""
    at = _index(elements, parent_id)
    assert at is not None
    parent = elements[at]
    codes = {t.get("code") for t in parent.get("type", ())}
    code = next(iter(codes)) if len(codes) == 1 else None
    datatype = definitions.find(definitions.base_url(code)) if isinstance(code, str) else None
    has_children = any(e["id"].startswith(parent_id + ".") for e in elements)
    if has_children or code in _NOT_UNROLLED or datatype is None or datatype.get("kind") != "complex-type":
        return
    unrolled = _copied(datatype["snapshot"]["element"][1:], definitions.base_url(str(code)))
    for e in unrolled:
        e["id"] = parent_id + e["id"][len(str(code)) :]
        e["path"] = parent["path"] + e["path"][len(str(code)) :]
    elements[at + 1 : at + 1] = unrolled


def _merge(target: dict[str, Any], d: Mapping[str, Any], source: str) -> None:
    for key, value in d.items():
        if key in ("id", "path"):
            continue
        if key == "constraint":
            have = {c.get("key") for c in target.get("constraint", ())}
            added = [dict(c, source=c.get("source", source)) for c in value if c.get("key") not in have]
            target["constraint"] = list(target.get("constraint", ())) + added
        elif key.startswith(("fixed", "pattern")):
            for old in [k for k in target if k.startswith(("fixed", "pattern"))]:
                del target[old]
            target[key] = value
        else:
            target[key] = value
