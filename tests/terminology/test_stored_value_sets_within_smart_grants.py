"""Value sets stored on the server are used by $expand and :in only within the caller's SMART grants
(https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html); shipped terminology
needs only a valid token."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fhir_server.store.sql import Store
from tests.auth.smart_flow import assertion, bearer, client_credentials, public_jwks, register, rsa_key

KEY = rsa_key("terminology")
GENDER = "http://hl7.org/fhir/ValueSet/administrative-gender"
STORED = "http://example.org/vs/stored-gender"


def token(http: TestClient, store: Store, client_id: str, scope: str) -> dict[str, str]:
    register(store, client_id, "asymmetric", jwks=public_jwks(KEY), scope=scope)
    reply = client_credentials(http, assertion(KEY, "RS384", client_id), scope=scope)
    assert reply.status_code == 200, reply.text
    return bearer(reply.json()["access_token"])


@pytest.fixture
def stored_id(store: Store) -> str:
    vs = {
        "resourceType": "ValueSet",
        "url": STORED,
        "status": "active",
        "compose": {"include": [{"valueSet": [GENDER]}]},
    }
    with store.write() as tx:
        return tx.create(vs, "stored-gender").res_id


def test_shipped_terminology_needs_only_a_token(
    smart_client: TestClient, store: Store, stored_id: str
) -> None:
    auth = token(smart_client, store, "obs-only", "system/Observation.rs")
    assert smart_client.get("/ValueSet/$expand", params={"url": GENDER}).status_code == 401
    assert smart_client.get("/ValueSet/$expand", params={"url": GENDER}, headers=auth).status_code == 200
    assert smart_client.get(f"/Observation?category:in={GENDER}", headers=auth).status_code == 200


def test_stored_value_sets_outside_the_grants_are_not_found(
    smart_client: TestClient, store: Store, stored_id: str
) -> None:
    auth = token(smart_client, store, "obs-only", "system/Observation.rs")
    assert smart_client.get("/ValueSet/$expand", params={"url": STORED}, headers=auth).status_code == 404
    assert smart_client.get(f"/ValueSet/{stored_id}/$expand", headers=auth).status_code in (403, 404)
    assert smart_client.get(f"/Observation?category:in={STORED}", headers=auth).status_code == 400


def test_stored_value_sets_within_the_grants_are_used(
    smart_client: TestClient, store: Store, stored_id: str
) -> None:
    auth = token(smart_client, store, "reader", "system/Observation.rs system/ValueSet.rs")
    r = smart_client.get("/ValueSet/$expand", params={"url": STORED}, headers=auth)
    assert r.status_code == 200 and r.json()["expansion"]["total"] == 4
    assert smart_client.get(f"/ValueSet/{stored_id}/$expand", headers=auth).status_code == 200
    assert smart_client.get(f"/Observation?category:in={STORED}", headers=auth).status_code == 200
