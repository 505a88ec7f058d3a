"""Every SearchParameter of the six core types finds a resource by its value, and a wrong value finds none.

https://hl7.org/fhir/R4/search.html. The data: HL7's R4 examples of Patient, Observation,
MedicationStatement, Encounter, DocumentReference and Goal (with meta tag/security/profile/source
and the few references no example carries added), stored through the REST API on both databases.
For each parameter a stored resource with a value is picked, the search value is written from that
value, and the search must return that resource; a value that nothing has must return nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from fhir_server import spec_package
from fhir_server.app import create_app
from fhir_server.search import index, parameters
from fhir_server.settings import Settings
from fhir_server.store import tables
from fhir_server.store.sql import Store
from tests.conftest import BASE, _empty
from tests.hl7_known_invalid import KNOWN_INVALID

CORE = ("Patient", "Observation", "MedicationStatement", "Encounter", "DocumentReference", "Goal")
_MIN, _MAX = -(2**62), 2**62
_EXTRA: dict[str, dict[str, Any]] = {
    "Observation": {"basedOn": [{"reference": "ServiceRequest/sr-1"}]},
    "MedicationStatement": {"medicationReference": {"reference": "Medication/med-1"}},
    "Encounter": {
        "location": [{"location": {"reference": "Location/loc-1"}}],
        "reasonReference": [{"reference": "Condition/cond-1"}],
    },
}


def _decorated(resource: dict[str, Any], i: int) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    meta = out.setdefault("meta", {})
    meta["tag"] = [*meta.get("tag", []), {"system": "urn:test:tags", "code": f"tag-{i}"}]
    meta["security"] = [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]
    meta["profile"] = [*meta.get("profile", []), f"http://example.org/StructureDefinition/p{i}"]
    meta["source"] = f"urn:test:source:{i}"
    if i % 2 == 0:
        for key, value in _EXTRA.get(out["resourceType"], {}).items():
            if key.startswith("medication"):  # a choice element: one form only
                out.pop("medicationCodeableConcept", None)
            out.setdefault(key, value)
    return out


@pytest.fixture(scope="module")
def loaded(engine: Engine) -> Iterator[TestClient]:
    """The core-type examples stored once per backend (but those R4 declares invalid); references are
    not checked (examples dangle)."""
    _empty(engine)
    store = Store(engine, check_references=False, base=BASE)
    app = create_app(Settings(base_url=BASE, allow_anonymous=True, check_references=False), store=store)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        n = 0
        for path, resource in spec_package.resources():
            if resource.get("resourceType") in CORE and path.name not in KNOWN_INVALID:
                n += 1
                body = _decorated(resource, n)
                r = client.put(f"/{body['resourceType']}/{body['id']}", json=body)
                assert r.status_code in (200, 201), r.text
        yield client
    _empty(engine)


def _stored(client: TestClient, res_type: str) -> list[dict[str, Any]]:
    store: Store = client.app.state.context.store  # type: ignore[attr-defined]
    r = tables.resource.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(r.content).where(r.res_type == res_type, r.deleted.is_(False))).all()
    return [orjson.loads(row.content) for row in rows]


def _date(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _format(kind: str, row: dict[str, Any]) -> str | None:
    """A search value (without prefix) that matches the index row."""
    esc = lambda s: str(s).replace("\\", "\\\\").replace(",", "\\,").replace("$", "\\$").replace("|", "\\|")  # noqa: E731
    if kind == "token":
        if row["code"] is None:
            return None
        return f"{esc(row['system'])}|{esc(row['code'])}" if row["system"] else f"|{esc(row['code'])}"
    if kind == "string":
        return esc(row["exact"]) if row["exact"].strip() else None
    if kind == "reference":
        if row["target_type"] and row["target_id"] and not row["url"]:
            return f"{row['target_type']}/{row['target_id']}"
        return esc(row["url"]) if row["url"] else None
    if kind == "quantity":
        parts = [repr(row["value"]), esc(row["system"] or ""), esc(row["code"] or "")]
        return "|".join(parts).rstrip("|") if row["code"] else repr(row["value"])
    if kind == "number":
        return repr(row["value"])
    if kind == "uri":
        return esc(row["uri"])
    if kind == "text":  # three words in a row of the full text, as a phrase
        return '"' + " ".join(row["body"].split()[:3]) + '"'
    if kind == "date":
        if row["low"] > _MIN:
            return "ge" + _date(row["low"])[:10]
        return "le" + _date(row["high"])[:10]
    return None


_NO_MATCH = {
    "token": "urn:test:nothing|no-such-code",
    "string": "zzqxnomatch",
    "reference": "Patient/no-such-id-anywhere",
    "quantity": "9.87654e12",
    "number": "9.87654e12",
    "uri": "http://example.org/no/such/uri",
    "text": "zzqxnomatch",
}


def _probe(param: parameters.SearchParam, resource: dict[str, Any]) -> str | None:
    """A value for `param` that `resource` has, from its index rows."""
    rows = index.index_rows(resource)
    if param.type == "composite":
        return _composite(param, rows)
    ids = parameters.row_ids(
        param, param.resource_type
    )  # a `combo-` parameter is answered by its parts' rows
    for kind in (param.kind,):
        for row in rows.get(kind, []):
            if row["param_id"] in ids:
                value = _format(kind, row)
                if value is not None:
                    return value
    return None


def _composite(param: parameters.SearchParam, rows: dict[str, list[dict[str, Any]]]) -> str | None:
    groups: dict[tuple[int, int], list[tuple[str, dict[str, Any]]]] = {}
    ids = parameters.row_ids(param, param.resource_type)  # each part numbers its elements (grp) on its own
    for kind, kind_rows in rows.items():
        for row in kind_rows:
            if row.get("param_id") in ids:  # value rows have none
                groups.setdefault((row["param_id"], row["grp"]), []).append((kind, row))
    # a composite on the resource itself is answered by its components' parameters' rows
    for joined in parameters.joined_ids(param, param.resource_type):
        found = []
        for comp, pid in zip(param.components, joined, strict=True):
            formatted = [_format(comp.type, r) for r in rows.get(comp.type, []) if r["param_id"] == pid]
            values = [v[2:] if comp.type == "date" else v for v in formatted if v]
            if not values:
                break
            found.append(values[0])
        else:
            return "$".join(found)
    for grp_rows in groups.values():
        parts = []
        for comp in param.components:
            kind = comp.type
            match = [m for k, r in grp_rows if k == kind and (m := _format(k, r))]
            if not match:
                break
            value = match[0]
            parts.append(value[2:] if kind == "date" else value)
        else:
            return "$".join(parts)
    return None


def _cases() -> list[tuple[str, str]]:
    return [(t, code) for t in CORE for code in sorted(parameters.for_type(t))]


def _ids(client: TestClient, res_type: str, params: list[tuple[str, str]]) -> set[str]:
    r = client.get(f"/{res_type}", params=[*params, ("_count", "1000"), ("_elements", "id")])
    assert r.status_code == 200, (params, r.text)
    return {e["resource"]["id"] for e in r.json().get("entry", [])}


@pytest.mark.parametrize(("res_type", "code"), _cases())
def test_parameter_finds_a_resource_by_its_value_and_not_by_another(
    loaded: TestClient, res_type: str, code: str
) -> None:
    stored = _stored(loaded, res_type)
    if code == "_id":
        target = stored[0]
        assert target["id"] in _ids(loaded, res_type, [("_id", target["id"])])
        assert _ids(loaded, res_type, [("_id", "no-such-id-anywhere")]) == set()
        return
    if code == "_lastUpdated":
        target = stored[0]
        assert target["id"] in _ids(loaded, res_type, [("_lastUpdated", target["meta"]["lastUpdated"])])
        assert _ids(loaded, res_type, [("_lastUpdated", "lt1990-01-01")]) == set()
        return
    if code == "_list":
        target = stored[0]
        entry = [{"item": {"reference": f"{res_type}/{target['id']}"}}]
        listed = {"resourceType": "List", "id": f"core-{res_type}", "status": "current", "mode": "working"}
        assert loaded.put(f"/List/core-{res_type}", json={**listed, "entry": entry}).status_code in (200, 201)
        assert _ids(loaded, res_type, [("_list", f"core-{res_type}")]) == {target["id"]}
        assert _ids(loaded, res_type, [("_list", "no-such-list")]) == set()
        return
    param = parameters.get(res_type, code)
    assert param is not None
    found = [(r, v) for r in stored if (v := _probe(param, r)) is not None]
    assert found, f"no stored {res_type} has a value for {code}"
    resource, value = found[0]
    assert resource["id"] in _ids(loaded, res_type, [(code, value)]), (code, value)
    if param.type == "date":
        miss = "lt1000-01-01" if value.startswith("ge") else "gt2999-01-01"
        missing = _ids(loaded, res_type, [(code, miss)])
        assert resource["id"] not in missing
    elif param.type == "composite":
        first = value.split("$")[0]
        second = param.components[1].type
        miss = "1000-01-01" if second == "date" else _NO_MATCH[second]
        assert _ids(loaded, res_type, [(code, f"{first}${miss}")]) == set()
    else:
        assert _ids(loaded, res_type, [(code, _NO_MATCH[param.kind])]) == set()
