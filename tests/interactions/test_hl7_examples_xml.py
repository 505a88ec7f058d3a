"""Every valid HL7 R4 example, sent as XML, is stored and read back unchanged as JSON and as XML
(https://hl7.org/fhir/R4/xml.html; hl7.fhir.r4.examples 4.0.1, CC0, holds JSON only: each example
is turned into XML by `xml_format.serialise`, whose JSON -> XML -> JSON identity
tests/xml_format/test_round_trip.py proves on its own)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fhir_server import model, spec_package
from fhir_server.app import create_app
from fhir_server.auth.principal import SERVER_WRITTEN
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from fhir_server.xml_format import parse, serialise
from tests.hl7_known_invalid import KNOWN_INVALID
from tests.interactions.test_hl7_examples import SERVER_OWNED, _without_server_meta

XML = {"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"}


@pytest.mark.slow
def test_every_accepted_example_posted_as_xml_reads_back_as_json_and_xml(store: Store) -> None:
    app = create_app(
        Settings(base_url="http://testserver", allow_anonymous=True, check_references=False),
        store=Store(store.engine, check_references=False, base="http://testserver"),
    )
    mismatched, stored = [], 0
    with TestClient(app, raise_server_exceptions=False) as client:
        for path, resource in spec_package.resources():
            rtype = resource.get("resourceType")
            if not model.is_resource_type(rtype) or path.name in set(KNOWN_INVALID) | SERVER_OWNED:
                continue  # refused as JSON too (tests/interactions/test_hl7_examples.py)
            r = client.put(f"/{rtype}/{resource['id']}", content=serialise(resource), headers=XML)
            if rtype in SERVER_WRITTEN:  # AuditEvent: recorded by the server alone
                assert r.status_code == 403, (path.name, r.text[:300])
                continue
            assert r.status_code in (200, 201), (path.name, r.text[:500])
            as_json = client.get(f"/{rtype}/{resource['id']}").json()
            as_xml = parse(client.get(f"/{rtype}/{resource['id']}", headers=XML).content)
            if _without_server_meta(as_json) != _without_server_meta(resource) or as_xml != as_json:
                mismatched.append(path.name)
            stored += 1
    assert mismatched == []
    assert stored > 5000
