"""Discovery: `.well-known/smart-configuration`, OpenID configuration, and the CapabilityStatement's security (https://hl7.org/fhir/smart-app-launch/STU2.2/conformance.html).

Every endpoint URL is absolute, built from the configured FHIR base URL. The capabilities listed are
the ones this server implements and tests.
"""

from __future__ import annotations

from typing import Any

from . import pkce
from .client_assertion import REQUIRED_ALGORITHMS
from .keys import ALGORITHM

AUTHORIZE = "/auth/authorize"
TOKEN = "/auth/token"
INTROSPECT = "/auth/introspect"
REVOKE = "/auth/revoke"
JWKS = "/.well-known/jwks.json"

CAPABILITIES = (
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-banner",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
    "sso-openid-connect",
)
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
SCOPES = (
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "patient/*.rs",
    "user/*.cruds",
    "user/*.rs",
    "system/*.cruds",
    "system/*.rs",
    "patient/*.read",
    "user/*.read",
    "system/*.read",
)
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def smart_configuration(base: str) -> dict[str, Any]:
    """The `.well-known/smart-configuration` document (conformance.html#metadata)."""
    return {
        "issuer": base,
        "jwks_uri": base + JWKS,
        "authorization_endpoint": base + AUTHORIZE,
        "token_endpoint": base + TOKEN,
        "introspection_endpoint": base + INTROSPECT,
        "revocation_endpoint": base + REVOKE,
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": sorted(REQUIRED_ALGORITHMS),
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "capabilities": list(CAPABILITIES),
        "code_challenge_methods_supported": list(pkce.METHODS_SUPPORTED),
    }


def openid_configuration(base: str) -> dict[str, Any]:
    """OpenID Provider metadata (https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderMetadata)."""
    return {
        "issuer": base,
        "authorization_endpoint": base + AUTHORIZE,
        "token_endpoint": base + TOKEN,
        "jwks_uri": base + JWKS,
        "introspection_endpoint": base + INTROSPECT,
        "revocation_endpoint": base + REVOKE,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": ["openid", "fhirUser", "profile", "offline_access", "online_access"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": sorted(REQUIRED_ALGORITHMS),
        "code_challenge_methods_supported": list(pkce.METHODS_SUPPORTED),
    }


def capability_security(base: str) -> dict[str, Any]:
    """CapabilityStatement.rest.security: the SMART-on-FHIR service and the oauth-uris extension."""
    return {
        "cors": True,
        "service": [
            {
                "coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}],
                "text": "OAuth2 using SMART-on-FHIR profile (see https://hl7.org/fhir/smart-app-launch/)",
            }
        ],
        "extension": [
            {
                "url": OAUTH_URIS,
                "extension": [
                    {"url": "authorize", "valueUri": base + AUTHORIZE},
                    {"url": "token", "valueUri": base + TOKEN},
                    {"url": "introspect", "valueUri": base + INTROSPECT},
                    {"url": "revoke", "valueUri": base + REVOKE},
                ],
            }
        ],
    }
