"""All Synthea transaction bundles load, and every urn:uuid reference ends up pointing to a real resource.

https://hl7.org/fhir/R4/http.html#transaction (urn:uuid resolution).
"""

from __future__ import annotations

import orjson
from sqlalchemy import select

from fhir_server.references import local_target, walk
from fhir_server.store import tables
from fhir_server.store.sql import Store
from tests.conftest import synthea_files


def test_every_bundle_loads_with_every_entry_created(synthea: tuple[Store, list[dict]]) -> None:  # type: ignore[type-arg]
    _, responses = synthea
    files = synthea_files()
    assert len(responses) == len(files) == 122
    for path, response in zip(files, responses, strict=True):
        sent = orjson.loads(path.read_bytes())["entry"]
        assert len(response["entry"]) == len(sent), path.name
        assert {e["response"]["status"] for e in response["entry"]} == {"201 Created"}, path.name


def test_every_reference_points_to_a_stored_resource(synthea: tuple[Store, list[dict]]) -> None:  # type: ignore[type-arg]
    store, _ = synthea
    r = tables.resource.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(r.res_type, r.res_id, r.content).where(r.deleted.is_(False))).all()
    stored = {(row.res_type, row.res_id) for row in rows}
    sent = sum(len(orjson.loads(f.read_bytes())["entry"]) for f in synthea_files())
    assert len(stored) == sent == 37_430
    dangling, urns, checked = [], [], 0
    for row in rows:
        for element, path in walk(orjson.loads(row.content), row.res_type, contained=True):
            ref = element["reference"]
            if ref.startswith("urn:"):
                urns.append((row.res_type, row.res_id, path))
            target = local_target(ref)
            if target is not None:
                checked += 1
                if target not in stored:
                    dangling.append((row.res_type, row.res_id, path, ref))
    assert urns == []
    assert dangling == []
    assert checked > 100_000
