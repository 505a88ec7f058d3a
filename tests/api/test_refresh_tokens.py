"""Refreshing access tokens (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#refresh-access-token)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.store.sql import Store
from tests.auth.smart_flow import Authorization, add_patient, add_user, authorize, bearer, exchange, register

SCOPE = "launch/patient patient/Observation.rs patient/Patient.rs openid fhirUser offline_access"


@pytest.fixture
def launched(smart_client: TestClient, store: Store) -> dict[str, Any]:
    """The token response of a standalone patient launch with offline_access."""
    register(store)
    register(store, "other-app")
    add_patient(store, "p1")
    add_user(store, "anna", "Patient/p1")
    request = Authorization(scope=SCOPE)
    response = exchange(smart_client, request, authorize(smart_client, request, "anna")["code"]).json()
    assert "refresh_token" in response
    return response


def refresh(http: TestClient, token: str, scope: str | None = None, client_id: str = "app") -> Any:
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    if scope is not None:
        form["scope"] = scope
    return http.post("/auth/token", data=form)


def test_refresh_without_scope_returns_the_original_scopes(
    smart_client: TestClient, launched: dict[str, Any]
) -> None:
    # SHALL 101, 109, 110, 111, 112, 113, 114
    response = refresh(smart_client, launched["refresh_token"])
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store" and response.headers["pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert body["scope"] == launched["scope"]
    assert body["access_token"] != launched["access_token"]
    assert body["patient"] == "p1"
    assert smart_client.get("/Patient/p1", headers=bearer(body["access_token"])).status_code == 200


def test_refresh_with_a_narrower_scope_grants_only_that(
    smart_client: TestClient, launched: dict[str, Any]
) -> None:
    # SHALL 103, 104
    response = refresh(smart_client, launched["refresh_token"], "patient/Patient.rs openid")
    assert response.status_code == 200
    assert response.json()["scope"] == "openid patient/Patient.rs"
    # the new refresh token still carries the original grant
    again = refresh(smart_client, response.json()["refresh_token"])
    assert again.json()["scope"] == launched["scope"]


def test_refresh_asking_for_more_than_was_granted_is_invalid_scope(
    smart_client: TestClient, launched: dict[str, Any]
) -> None:
    response = refresh(smart_client, launched["refresh_token"], "patient/Observation.cruds")
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


def test_a_refresh_token_is_bound_to_its_client(smart_client: TestClient, launched: dict[str, Any]) -> None:
    # SHALL 103
    response = refresh(smart_client, launched["refresh_token"], client_id="other-app")
    assert response.json()["error"] == "invalid_grant"
    assert refresh(smart_client, launched["refresh_token"]).status_code == 200


def test_refresh_tokens_rotate_and_a_replayed_one_revokes_the_grant(
    smart_client: TestClient, launched: dict[str, Any]
) -> None:
    first = refresh(smart_client, launched["refresh_token"]).json()
    replay = refresh(smart_client, launched["refresh_token"])
    assert replay.json()["error"] == "invalid_grant"
    assert smart_client.get("/Patient/p1", headers=bearer(first["access_token"])).status_code == 401
    assert refresh(smart_client, first["refresh_token"]).json()["error"] == "invalid_grant"


def test_online_access_gives_a_refresh_token_that_ends_with_the_login(
    smart_client: TestClient, store: Store
) -> None:
    # SHALL 100, 366
    register(store)
    add_patient(store, "p1")
    add_user(store, "anna", "Patient/p1")
    request = Authorization(scope="launch/patient patient/*.rs online_access")
    token = exchange(smart_client, request, authorize(smart_client, request, "anna")["code"]).json()
    introspected = smart_client.post(
        "/auth/introspect",
        data={"token": token["refresh_token"]},
        headers=bearer(token["access_token"]),
    ).json()
    assert introspected["active"] is True
    assert introspected["exp"] <= introspected["iat"] + 8 * 3600
    assert refresh(smart_client, token["refresh_token"]).status_code == 200


def test_an_unknown_refresh_token_is_invalid_grant(
    smart_client: TestClient, launched: dict[str, Any]
) -> None:
    assert refresh(smart_client, "not-a-token").json()["error"] == "invalid_grant"
