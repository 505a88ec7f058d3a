"""Token introspection (https://hl7.org/fhir/smart-app-launch/STU2.2/token-introspection.html) and revocation (RFC 7009)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.store.sql import Store
from tests.auth.smart_flow import (
    BASE,
    Authorization,
    add_patient,
    add_user,
    assertion,
    authorize,
    bearer,
    claims,
    client_credentials,
    exchange,
    issue_launch,
    public_jwks,
    register,
    rsa_key,
)

KEY = rsa_key("introspector")


@pytest.fixture
def tokens(smart_client: TestClient, store: Store) -> dict[str, Any]:
    """An EHR-launched user token, and a Backend Services token to introspect it with."""
    register(store)
    register(store, "introspector", "asymmetric", jwks=public_jwks(KEY), scope="system/*.rs")
    add_patient(store, "p1")
    add_user(store, "dr", "Practitioner/c1")
    launch = issue_launch(
        store, patient="p1", encounter="e1", fhir_context=({"reference": "Appointment/a1"},)
    )
    request = Authorization(scope="launch patient/*.rs openid fhirUser offline_access", launch=launch)
    user = exchange(smart_client, request, authorize(smart_client, request, "dr")["code"]).json()
    system = client_credentials(smart_client, assertion(KEY, "RS384", "introspector")).json()
    return {"user": user, "system": system}


def introspect(http: TestClient, token: str, caller: str) -> Any:
    return http.post("/auth/introspect", data={"token": token}, headers=bearer(caller))


def test_introspecting_an_active_token_returns_its_scope_client_exp_and_context(
    smart_client: TestClient, tokens: dict[str, Any]
) -> None:
    # SHALL 271, 272, 273, 274, 275, 276, 277, 278, 279, 282, 283
    user, system = tokens["user"], tokens["system"]
    response = introspect(smart_client, user["access_token"], system["access_token"])
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["active"] is True
    assert body["scope"] == user["scope"]
    assert body["client_id"] == "app"
    assert body["exp"] == claims(user["access_token"])["exp"]
    assert body["exp"] - body["iat"] == user["expires_in"]
    assert body["patient"] == "p1" and body["encounter"] == "e1"
    assert body["fhirContext"] == [{"reference": "Appointment/a1"}]
    assert body["need_patient_banner"] == user["need_patient_banner"]
    id_token = claims(user["id_token"])
    assert body["iss"] == id_token["iss"] == BASE
    assert body["sub"] == id_token["sub"]
    assert body["fhirUser"] == BASE + "/Practitioner/c1"


@pytest.mark.parametrize("which", ["garbage", "revoked", "refresh-revoked"])
def test_introspecting_an_inactive_token_returns_only_active_false(
    smart_client: TestClient, tokens: dict[str, Any], which: str
) -> None:
    # SHALL 272
    user, system = tokens["user"], tokens["system"]
    token = {
        "garbage": "not.a.token",
        "revoked": user["access_token"],
        "refresh-revoked": user["refresh_token"],
    }[which]
    if which != "garbage":
        smart_client.post("/auth/revoke", data={"token": token, "client_id": "app"})
    response = introspect(smart_client, token, system["access_token"])
    assert response.status_code == 200
    assert response.json() == {"active": False}


def test_introspection_needs_an_authorized_caller(smart_client: TestClient, tokens: dict[str, Any]) -> None:
    user = tokens["user"]
    anonymous = smart_client.post(
        "/auth/introspect", data={"token": user["access_token"], "client_id": "app"}
    )
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    bad = introspect(smart_client, user["access_token"], "not-a-token")
    assert bad.status_code == 401


def test_a_confidential_client_can_introspect_with_its_credentials(
    smart_client: TestClient, store: Store, tokens: dict[str, Any]
) -> None:
    secret = register(store, "rs", "symmetric")
    basic = base64.b64encode(f"rs:{secret}".encode()).decode()
    response = smart_client.post(
        "/auth/introspect",
        data={"token": tokens["user"]["access_token"]},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.json()["active"] is True


def test_revoking_an_access_token_stops_it_at_the_fhir_api(
    smart_client: TestClient, tokens: dict[str, Any]
) -> None:
    # SHALL 77, 94
    user = tokens["user"]
    assert smart_client.get("/Patient/p1", headers=bearer(user["access_token"])).status_code == 200
    response = smart_client.post("/auth/revoke", data={"token": user["access_token"], "client_id": "app"})
    assert response.status_code == 200
    denied = smart_client.get("/Patient/p1", headers=bearer(user["access_token"]))
    assert denied.status_code == 401
    assert 'error="invalid_token"' in denied.headers["www-authenticate"]


def test_revoking_a_refresh_token_revokes_its_grant(smart_client: TestClient, tokens: dict[str, Any]) -> None:
    user = tokens["user"]
    smart_client.post("/auth/revoke", data={"token": user["refresh_token"], "client_id": "app"})
    refreshed = smart_client.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": user["refresh_token"], "client_id": "app"},
    )
    assert refreshed.json()["error"] == "invalid_grant"
    assert smart_client.get("/Patient/p1", headers=bearer(user["access_token"])).status_code == 401


def test_a_client_cannot_revoke_another_clients_token(
    smart_client: TestClient, store: Store, tokens: dict[str, Any]
) -> None:
    register(store, "intruder")
    response = smart_client.post(
        "/auth/revoke", data={"token": tokens["user"]["access_token"], "client_id": "intruder"}
    )
    assert response.status_code == 200  # RFC 7009: nothing is revealed
    assert smart_client.get("/Patient/p1", headers=bearer(tokens["user"]["access_token"])).status_code == 200


def test_revoking_an_unknown_token_is_answered_with_200(
    smart_client: TestClient, tokens: dict[str, Any]
) -> None:
    assert (
        smart_client.post("/auth/revoke", data={"token": "whatever", "client_id": "app"}).status_code == 200
    )
