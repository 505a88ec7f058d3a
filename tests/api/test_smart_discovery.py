"""SMART discovery: .well-known documents, JWKS, CapabilityStatement security, CORS (https://hl7.org/fhir/smart-app-launch/STU2.2/conformance.html)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.auth.smart_flow import BASE

REQUIRED_CAPABILITIES = {
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
    "sso-openid-connect",
}


def test_smart_configuration_is_public_json_whatever_the_accept_header(smart_client: TestClient) -> None:
    # SHALL 372, 374, 377, 380
    for accept in ("application/fhir+xml", "text/html", "*/*"):
        response = smart_client.get("/.well-known/smart-configuration", headers={"Accept": accept})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")


def test_smart_configuration_has_every_required_field_with_absolute_urls(smart_client: TestClient) -> None:
    # SHALL 30, 373, 378, 381-385, 393, 394, 228, 285-288
    config = smart_client.get("/.well-known/smart-configuration").json()
    assert config["issuer"] == BASE
    for name in (
        "jwks_uri",
        "authorization_endpoint",
        "token_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
    ):
        assert config[name].startswith(BASE + "/"), name
    assert set(config["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
    }
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert "client_secret_basic" in config["token_endpoint_auth_methods_supported"]
    assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    assert "system/*.rs" in config["scopes_supported"] and "launch/patient" in config["scopes_supported"]
    assert config["response_types_supported"] == ["code"]
    assert set(config["capabilities"]) >= REQUIRED_CAPABILITIES
    assert config["code_challenge_methods_supported"] == ["S256"]


def test_openid_configuration_names_the_same_issuer_and_rs256(smart_client: TestClient) -> None:
    config = smart_client.get("/.well-known/openid-configuration").json()
    assert config["issuer"] == BASE
    assert config["jwks_uri"] == BASE + "/.well-known/jwks.json"
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]


def test_jwks_publishes_bare_public_rsa_keys(smart_client: TestClient) -> None:
    # SHALL 207, 210
    keys = smart_client.get("/.well-known/jwks.json").json()["keys"]
    assert keys and all(k["kty"] == "RSA" and k["alg"] == "RS256" and "kid" in k for k in keys)
    assert not any(member in k for k in keys for member in ("d", "p", "q", "dp", "dq", "qi"))
    assert not any("x5c" in k for k in keys)


def test_capability_statement_is_public_and_names_smart_oauth_uris(smart_client: TestClient) -> None:
    response = smart_client.get("/metadata")
    assert response.status_code == 200
    security = response.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert (
        security["extension"][0]["url"]
        == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    )
    assert uris["authorize"] == BASE + "/auth/authorize" and uris["token"] == BASE + "/auth/token"


def test_cors_lets_any_origin_read_discovery_and_call_token_and_fhir_endpoints(
    smart_client: TestClient,
) -> None:
    # SHALL 16, 17
    origin = {"Origin": "https://app.example.org"}
    discovery = smart_client.get("/.well-known/smart-configuration", headers=origin)
    assert discovery.headers["access-control-allow-origin"] == "*"
    for path, method in (("/auth/token", "POST"), ("/Patient", "GET"), ("/Patient/1", "PUT")):
        preflight = smart_client.options(
            path,
            headers={
                **origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200, path
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert method in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in discovery.headers
