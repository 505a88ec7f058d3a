"""Client authentication at the token endpoint (fhir_server/auth/client_authentication.py; https://hl7.org/fhir/smart-app-launch/STU2.2/client-authentication.html)."""

from __future__ import annotations

import base64
from urllib.parse import quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.auth import opaque_token
from fhir_server.auth.client_assertion import ClientAssertionVerifier, MemoryJtiStore
from fhir_server.auth.client_authentication import Credentials, authenticate
from fhir_server.auth.clients import Client
from fhir_server.auth.oauth_error import OAuthError

SECRET = "s3cret:with/odd+chars"
CLIENTS = {
    "pub": Client("pub", "public"),
    "sym": Client("sym", "symmetric", secret_hash=opaque_token.digest(SECRET)),
    "asym": Client("asym", "asymmetric", jwks={"keys": []}),
}
VERIFIER = ClientAssertionVerifier("https://x/token", lambda cid: None, MemoryJtiStore())


def basic(client_id: str, secret: str) -> str:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def auth(form: dict[str, str], header: str | None = None) -> Client:
    return authenticate(Credentials.from_request(form, header), CLIENTS.get, VERIFIER, realm="https://x")


def test_each_client_type_authenticates_its_own_way() -> None:
    assert auth({"client_id": "pub"}).client_id == "pub"
    assert auth({}, basic("sym", SECRET)).client_id == "sym"
    assert auth({"client_id": "sym", "client_secret": SECRET}).client_id == "sym"


@pytest.mark.parametrize(
    ("form", "header", "error"),
    [
        ({"client_id": "sym"}, None, "invalid_client"),
        ({"client_id": "sym", "client_secret": "nope"}, None, "invalid_client"),
        ({"client_id": "asym", "client_secret": "x"}, None, "invalid_client"),
        ({"client_id": "pub", "client_secret": "x"}, None, "invalid_client"),
        ({"client_id": "nobody"}, None, "invalid_client"),
        ({}, None, "invalid_client"),
        ({}, "Basic !!!", "invalid_client"),
        ({"client_id": "other"}, basic("sym", SECRET), "invalid_client"),
        ({"client_secret": SECRET}, basic("sym", SECRET), "invalid_request"),
        (
            {"client_assertion": "x.y.z", "client_assertion_type": "t", "client_secret": "x"},
            None,
            "invalid_request",
        ),
    ],
)
def test_wrong_or_mixed_credentials_are_refused(form: dict[str, str], header: str | None, error: str) -> None:
    with pytest.raises(OAuthError) as refused:
        auth(form, header)
    assert refused.value.error == error


def test_a_failed_basic_login_is_challenged_with_basic() -> None:
    with pytest.raises(OAuthError) as refused:
        auth({}, basic("sym", "wrong"))
    assert refused.value.status == 401
    assert refused.value.headers == {"WWW-Authenticate": 'Basic realm="https://x"'}


@given(st.text(min_size=1, max_size=20), st.text(max_size=40))
def test_basic_credentials_are_form_decoded(client_id: str, secret: str) -> None:
    credentials = Credentials.from_request({}, basic(client_id, secret))
    assert credentials.basic == (client_id, secret)


@given(st.text(max_size=60))
def test_any_authorization_header_is_either_accepted_or_an_oauth_error(header: str) -> None:
    try:
        auth({}, header)
    except OAuthError as error:
        assert error.error in ("invalid_client", "invalid_request")
