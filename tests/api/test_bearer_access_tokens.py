"""The FHIR API's check of Bearer access tokens and the request Principal (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#access-fhir-api)."""

from __future__ import annotations

import contextvars
import time
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.api import deps
from fhir_server.auth.keys import SigningKeys
from fhir_server.auth.principal import Principal
from fhir_server.interactions.context import Context
from fhir_server.store.sql import Store
from tests.auth.smart_flow import (
    BASE,
    assertion,
    bearer,
    claims,
    client_credentials,
    public_jwks,
    register,
    rsa_key,
)

KEY = rsa_key("k1")


@pytest.fixture
def system_token(smart_client: TestClient, store: Store) -> str:
    register(store, "svc", "asymmetric", jwks=public_jwks(KEY), scope="system/*.rs")
    with store.write() as tx:
        tx.create({"resourceType": "Patient"}, "p1")
    token: str = client_credentials(smart_client, assertion(KEY, "RS384", "svc")).json()["access_token"]
    return token


def server_keys(http: TestClient) -> SigningKeys:
    keys: SigningKeys = http.app.state.auth.keys()  # type: ignore[attr-defined]
    return keys


def test_a_request_without_a_token_gets_401_with_a_bearer_challenge(smart_client: TestClient) -> None:
    response = smart_client.get("/Patient/p1")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'Bearer realm="{BASE}"'
    assert response.json()["resourceType"] == "OperationOutcome"


def test_a_non_bearer_authorization_is_401(smart_client: TestClient) -> None:
    response = smart_client.get("/Patient/p1", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")


def test_a_valid_token_reads(smart_client: TestClient, system_token: str) -> None:
    assert smart_client.get("/Patient/p1", headers=bearer(system_token)).status_code == 200


def _signed(http: TestClient, valid: str, **changes: Any) -> str:
    body = {**claims(valid), **changes}
    return server_keys(http).sign_jwt({k: v for k, v in body.items() if v is not None})


@pytest.mark.parametrize(
    "case",
    ["garbage", "expired", "another audience", "another issuer", "never issued", "another key", "id token"],
)
def test_an_invalid_token_gets_401_invalid_token(
    smart_client: TestClient, system_token: str, case: str
) -> None:
    # SHALL 77, 94, 96, 265
    now = int(time.time())
    if case == "garbage":
        token = "abc.def.ghi"
    elif case == "expired":
        token = _signed(smart_client, system_token, exp=now - 1)
    elif case == "another audience":
        token = _signed(smart_client, system_token, aud="https://other.example.org/fhir")
    elif case == "another issuer":
        token = _signed(smart_client, system_token, iss="https://other.example.org")
    elif case == "never issued":
        token = _signed(smart_client, system_token, jti="0" * 32)
    elif case == "another key":
        token = SigningKeys(rsa_key(server_keys(smart_client).kid)).sign_jwt(claims(system_token))
    else:
        token = _signed(smart_client, system_token, aud="svc", kind=None)
    response = smart_client.get("/Patient/p1", headers=bearer(token))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_metadata_and_discovery_stay_public(smart_client: TestClient) -> None:
    for path in ("/metadata", "/.well-known/smart-configuration", "/.well-known/jwks.json"):
        assert smart_client.get(path).status_code == 200, path


def test_anonymous_development_mode_serves_requests_without_a_token(client: TestClient, store: Store) -> None:
    with store.write() as tx:
        tx.create({"resourceType": "Patient"}, "p1")
    assert client.get("/Patient/p1").status_code == 200
    assert client.get("/Patient/p1", headers=bearer("bad")).status_code == 401


def test_the_interaction_context_carries_the_principal(store: Store) -> None:
    from fhir_server.settings import Settings

    ctx = Context(store=store, settings=Settings(base_url=BASE))
    request: Any = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(context=ctx)))
    principal = Principal(client_id="c", kind="system")
    # in a copy of the context: get_context names the request's reader (store/replicas.py), which
    # must not stay set in this thread for later tests' requests
    got = contextvars.copy_context().run(deps.get_context, request, principal)
    assert got.principal is principal and got.store is store
    assert ctx.principal is None
