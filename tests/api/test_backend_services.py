"""SMART Backend Services: client_credentials with private_key_jwt (https://hl7.org/fhir/smart-app-launch/STU2.2/backend-services.html)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jws
from joserfc.jwk import ECKey, OctKey, RSAKey

from fhir_server.auth.client_assertion import FetchedJwks
from fhir_server.store.sql import Store
from tests.auth.smart_flow import (
    TOKEN_URL,
    add_observation,
    add_patient,
    assertion,
    bearer,
    client_credentials,
    ec_key,
    public_jwks,
    register,
    rsa_key,
)

RSA = rsa_key("rsa-1")
EC = ec_key("ec-1")
IMPOSTOR = rsa_key("rsa-1")  # same kid, another key
JWKS_URL = "https://bulk.example.com/.well-known/jwks.json"


@pytest.fixture
def backend(store: Store) -> Store:
    register(store, "bulk-rsa", "asymmetric", jwks=public_jwks(RSA), jwks_uri=JWKS_URL, scope="system/*.rs")
    register(store, "bulk-ec", "asymmetric", jwks=public_jwks(EC), scope="system/*.rs")
    register(store, "narrow", "asymmetric", jwks=public_jwks(RSA), scope="system/Observation.rs")
    add_patient(store, "p1")
    add_observation(store, "p1")
    return store


@pytest.mark.parametrize(("client_id", "key", "alg"), [("bulk-rsa", RSA, "RS384"), ("bulk-ec", EC, "ES384")])
def test_rs384_and_es384_clients_get_short_lived_system_tokens_and_can_read_and_search(
    smart_client: TestClient, backend: Store, client_id: str, key: RSAKey | ECKey, alg: str
) -> None:
    # SHALL 240, 249, 253, 254, 255, 256, 258, 261, 310, 335, 297
    response = client_credentials(smart_client, assertion(key, alg, client_id))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store" and response.headers["pragma"] == "no-cache"
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "system/*.rs"
    assert 0 < token["expires_in"] <= 300
    assert "refresh_token" not in token and "id_token" not in token
    assert smart_client.get("/Patient/p1", headers=bearer(token["access_token"])).status_code == 200
    found = smart_client.get("/Observation?subject=Patient/p1", headers=bearer(token["access_token"]))
    assert found.status_code == 200, found.text
    assert found.json()["resourceType"] == "Bundle"


def test_granted_system_scopes_are_cut_down_to_the_registered_ones(
    smart_client: TestClient, backend: Store
) -> None:
    # SHALL 241, 250, 259
    token = client_credentials(smart_client, assertion(RSA, "RS384", "narrow"), scope="system/*.rs").json()
    assert token["scope"] == "system/Observation.rs"
    refused = client_credentials(smart_client, assertion(RSA, "RS384", "narrow"), scope="system/Patient.rs")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"


def test_user_and_patient_scopes_are_not_granted_to_a_backend_client(
    smart_client: TestClient, backend: Store
) -> None:
    response = client_credentials(
        smart_client, assertion(RSA, "RS384", "bulk-rsa"), scope="patient/*.rs user/*.rs"
    )
    assert response.json()["error"] == "invalid_scope"


def _forged(key: RSAKey | ECKey | OctKey, alg: str, header: dict[str, Any], body: dict[str, Any]) -> str:
    return jws.serialize_compact(header, json.dumps(body), key, algorithms=[alg])


def _none_alg(client_id: str) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 60, "jti": "x"}
    return f"{b64({'alg': 'none', 'kid': 'rsa-1'})}.{b64(body)}."


@pytest.mark.parametrize(
    "case",
    [
        "bad signature",
        "wrong aud",
        "exp 10 minutes ahead",
        "expired",
        "unknown kid",
        "unregistered jku",
        "iss differs from sub",
        "unknown client",
        "alg none",
        "alg HS256",
    ],
)
def test_bad_client_assertions_are_invalid_client(
    smart_client: TestClient, backend: Store, case: str
) -> None:
    # SHALL 249, 251, 335, 337, 338, 340
    now = int(time.time())
    signed = {
        "bad signature": lambda: assertion(IMPOSTOR, "RS384", "bulk-rsa"),
        "wrong aud": lambda: assertion(RSA, "RS384", "bulk-rsa", aud="https://elsewhere.example.org/token"),
        "exp 10 minutes ahead": lambda: assertion(RSA, "RS384", "bulk-rsa", exp=now + 600),
        "expired": lambda: assertion(RSA, "RS384", "bulk-rsa", exp=now - 120),
        "unknown kid": lambda: assertion(rsa_key("rsa-9"), "RS384", "bulk-rsa"),
        "unregistered jku": lambda: assertion(
            RSA, "RS384", "bulk-rsa", header={"jku": "https://evil.example.com/jwks"}
        ),
        "iss differs from sub": lambda: assertion(RSA, "RS384", "bulk-rsa", sub="bulk-ec"),
        "unknown client": lambda: assertion(RSA, "RS384", "nobody"),
        "alg none": lambda: _none_alg("bulk-rsa"),
        "alg HS256": lambda: _forged(
            OctKey.import_key(b"k" * 32),
            "HS256",
            {"alg": "HS256", "kid": "rsa-1"},
            {"iss": "bulk-rsa", "sub": "bulk-rsa", "aud": TOKEN_URL, "exp": now + 60, "jti": "y"},
        ),
    }[case]()
    response = client_credentials(smart_client, signed)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.headers["cache-control"] == "no-store"


def test_a_replayed_assertion_jti_is_invalid_client(smart_client: TestClient, backend: Store) -> None:
    # SHALL 336
    signed = assertion(RSA, "RS384", "bulk-rsa")
    assert client_credentials(smart_client, signed).status_code == 200
    replay = client_credentials(smart_client, signed)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"


def test_a_client_secret_instead_of_an_assertion_is_invalid_client(
    smart_client: TestClient, backend: Store
) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "system/*.rs",
        "client_id": "bulk-rsa",
        "client_secret": "s",
    }
    response = smart_client.post("/auth/token", data=form)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    basic = base64.b64encode(b"bulk-rsa:s").decode()
    response = smart_client.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/*.rs"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_the_wrong_assertion_type_is_invalid_client(smart_client: TestClient, backend: Store) -> None:
    response = client_credentials(
        smart_client,
        assertion(RSA, "RS384", "bulk-rsa"),
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_keys_are_fetched_from_the_registered_jwks_url(smart_client: TestClient, backend: Store) -> None:
    # SHALL 296, 338, 339, 341
    rotated = rsa_key("rsa-2")
    fetched: list[str] = []

    def fetch(url: str) -> FetchedJwks:
        fetched.append(url)
        return FetchedJwks(public_jwks(rotated), max_age=0)

    smart_client.app.state.auth.verifier.jwks_cache.fetch = fetch  # type: ignore[attr-defined]
    response = client_credentials(
        smart_client, assertion(rotated, "RS384", "bulk-rsa", header={"jku": JWKS_URL})
    )
    assert response.status_code == 200, response.text
    assert fetched == [JWKS_URL]
    assert client_credentials(smart_client, assertion(rotated, "RS384", "bulk-rsa")).status_code == 200
    assert fetched == [JWKS_URL, JWKS_URL]  # max-age 0: never served from the cache


def test_scope_is_required(smart_client: TestClient, backend: Store) -> None:
    response = client_credentials(smart_client, assertion(RSA, "RS384", "bulk-rsa"), scope="")
    assert response.json()["error"] == "invalid_request"


def test_public_and_symmetric_clients_cannot_use_client_credentials(
    smart_client: TestClient, backend: Store
) -> None:
    # SHALL 344
    secret = register(backend, "conf", "symmetric")
    form = {
        "grant_type": "client_credentials",
        "scope": "system/*.rs",
        "client_id": "conf",
        "client_secret": secret,
    }
    response = smart_client.post("/auth/token", data=form)
    assert response.status_code == 400 and response.json()["error"] == "unauthorized_client"
