"""Standalone and EHR launch with the authorization code flow (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html)."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet

from fhir_server.store.sql import Store
from tests.auth.smart_flow import (
    BASE,
    REDIRECT,
    Authorization,
    add_patient,
    add_user,
    assertion,
    authorize,
    bearer,
    claims,
    consent,
    exchange,
    issue_launch,
    log_in,
    offered_scopes,
    pick_patient,
    public_jwks,
    query,
    register,
    rsa_key,
)


@pytest.fixture
def patient_app(store: Store) -> Store:
    """A public app, patient p1 with a user, clinician c1 with a user, and a second patient p2."""
    register(store, "app", name="Test App")
    add_patient(store, "p1", "Smith", "Anna")
    add_patient(store, "p2", "Jones", "Ben")
    add_user(store, "anna", "Patient/p1")
    add_user(store, "dr-who", "Practitioner/c1")
    return store


def test_standalone_patient_launch_redirects_with_code_and_the_exact_state(
    smart_client: TestClient, patient_app: Store
) -> None:
    # SHALL 53, 56, 57, 59, 205, 353, 363
    request = Authorization(state="opaque/state with spaces+&=")
    redirect = authorize(smart_client, request, "anna")
    assert redirect["state"] == request.state
    assert redirect["code"]
    token = exchange(smart_client, request, redirect["code"]).json()
    assert token["patient"] == "p1"


def test_authorize_accepts_post_as_well_as_get(smart_client: TestClient, patient_app: Store) -> None:
    # SHALL 48, 49, 354
    request = Authorization()
    page = smart_client.post("/auth/authorize", data=request.params())
    assert page.status_code == 200
    assert 'id="login"' in page.text
    page = log_in(smart_client, page.text, "anna")
    done = consent(smart_client, page.text)
    assert done.status_code == 303
    assert exchange(smart_client, request, query(done.headers["location"])["code"]).status_code == 200


def test_token_response_has_the_required_fields_and_no_store_headers(
    smart_client: TestClient, patient_app: Store
) -> None:
    # SHALL 73, 74, 75, 78, 84, 85, 86, 87, 88, 89, 168, 169, 170, 173, 365
    request = Authorization()
    response = exchange(smart_client, request, authorize(smart_client, request, "anna")["code"])
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert response.headers["content-type"].startswith("application/json")
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert isinstance(token["expires_in"], int) and token["expires_in"] > 0
    assert set(token["scope"].split()) == set(request.scope.split())
    assert token["patient"] == "p1"
    assert token["need_patient_banner"] is True
    assert token["refresh_token"]
    assert all(c.isascii() and c not in ' "\\' for c in token["access_token"])
    assert claims(token["access_token"])["aud"] == BASE


def test_id_token_is_rs256_signed_with_the_published_key_and_has_fhir_user(
    smart_client: TestClient, patient_app: Store
) -> None:
    # SHALL 200, 207, 209, 210, 358
    request = Authorization(scope="openid fhirUser launch/patient patient/Patient.rs")
    token = exchange(smart_client, request, authorize(smart_client, request, "anna")["code"]).json()
    keys = KeySet.import_key_set(smart_client.get("/.well-known/jwks.json").json())
    id_token = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    assert id_token.header["alg"] == "RS256"
    assert id_token.claims["iss"] == BASE
    assert id_token.claims["aud"] == "app"
    assert id_token.claims["fhirUser"] == BASE + "/Patient/p1"
    assert (
        smart_client.get(
            id_token.claims["fhirUser"][len(BASE) :], headers=bearer(token["access_token"])
        ).status_code
        == 200
    )


def test_no_id_token_and_no_refresh_token_when_not_asked_for(
    smart_client: TestClient, patient_app: Store
) -> None:
    request = Authorization(scope="launch/patient patient/*.rs")
    token = exchange(smart_client, request, authorize(smart_client, request, "anna")["code"]).json()
    assert "id_token" not in token and "refresh_token" not in token


def test_clinician_standalone_launch_asks_for_a_patient_and_puts_it_in_context(
    smart_client: TestClient, patient_app: Store
) -> None:
    # SHALL 164, 363, 368
    request = Authorization(scope="launch/patient patient/*.rs user/*.rs openid fhirUser")
    page = log_in(smart_client, smart_client.get(request.url()).text, "dr-who")
    assert 'id="select-patient"' in page.text and "Jones, Ben" in page.text
    page = pick_patient(smart_client, page.text, "p2")
    assert "Jones, Ben" in page.text and 'id="approve"' in page.text
    done = consent(smart_client, page.text)
    token = exchange(smart_client, request, query(done.headers["location"])["code"]).json()
    assert token["patient"] == "p2"
    assert claims(token["id_token"])["fhirUser"] == BASE + "/Practitioner/c1"


def test_ehr_launch_returns_the_launch_context(smart_client: TestClient, patient_app: Store) -> None:
    # SHALL 168, 169, 170, 171, 172, 173, 174, 178, 352, 361, 362
    launch = issue_launch(
        patient_app,
        patient="p2",
        encounter="e1",
        fhir_context=({"reference": "Appointment/a1"},),
        intent="reconcile-medications",
        need_patient_banner=False,
    )
    request = Authorization(scope="launch patient/*.rs openid fhirUser", launch=launch)
    token = exchange(smart_client, request, authorize(smart_client, request, "dr-who")["code"]).json()
    assert token["patient"] == "p2"
    assert token["encounter"] == "e1"
    assert token["fhirContext"] == [{"reference": "Appointment/a1"}]
    assert token["intent"] == "reconcile-medications"
    assert token["need_patient_banner"] is False
    assert "launch" in token["scope"].split()


def test_a_launch_value_the_server_did_not_issue_is_refused(
    smart_client: TestClient, patient_app: Store
) -> None:
    request = Authorization(scope="launch patient/*.rs", launch="made-up-launch")
    response = smart_client.get(request.url())
    assert response.status_code == 302
    redirect = query(response.headers["location"])
    assert redirect["error"] == "invalid_request" and redirect["state"] == request.state


def test_a_patient_cannot_use_a_launch_for_another_patient(
    smart_client: TestClient, patient_app: Store
) -> None:
    request = Authorization(scope="launch patient/*.rs", launch=issue_launch(patient_app, patient="p2"))
    page = smart_client.get(request.url())
    done = log_in(smart_client, page.text, "anna")
    assert done.status_code == 303
    assert query(done.headers["location"])["error"] == "access_denied"


def test_denying_redirects_with_access_denied_and_the_state(
    smart_client: TestClient, patient_app: Store
) -> None:
    # SHALL 54
    request = Authorization()
    page = log_in(smart_client, smart_client.get(request.url()).text, "anna")
    done = consent(smart_client, page.text, approve=False)
    assert done.status_code == 303
    redirect = query(done.headers["location"])
    assert redirect == {
        "error": "access_denied",
        "error_description": redirect["error_description"],
        "state": request.state,
    }


def test_unticked_scopes_are_not_granted(smart_client: TestClient, patient_app: Store) -> None:
    # SHALL 78, 115
    request = Authorization(scope="launch/patient patient/Observation.rs patient/Patient.rs offline_access")
    redirect = authorize(smart_client, request, "anna", untick=("offline_access", "patient/Observation.rs"))
    token = exchange(smart_client, request, redirect["code"]).json()
    assert token["scope"].split() == ["launch/patient", "patient/Patient.rs"]
    assert "refresh_token" not in token


def test_system_scopes_and_unbacked_fhir_user_are_never_offered_to_a_user(
    smart_client: TestClient, store: Store
) -> None:
    register(store)
    add_user(store, "nobody")
    page = smart_client.get(Authorization(scope="system/*.rs user/*.rs fhirUser openid").url())
    offered = offered_scopes(log_in(smart_client, page.text, "nobody").text)
    assert offered == ["user/*.rs", "openid"]


def test_redirect_uri_differing_by_one_character_is_refused_without_redirect(
    smart_client: TestClient, patient_app: Store
) -> None:
    # SHALL 18
    for uri in (REDIRECT + "x", REDIRECT[:-1], REDIRECT.upper(), REDIRECT + "/"):
        response = smart_client.get(Authorization(redirect_uri=uri).url())
        assert response.status_code == 400, uri
        assert "location" not in response.headers
        assert "not valid" in response.text


def test_redirect_uri_at_the_token_endpoint_must_equal_the_authorized_one(
    smart_client: TestClient, store: Store
) -> None:
    register(store, redirect_uris=[REDIRECT, REDIRECT + "2"])
    add_patient(store, "p1")
    add_user(store, "anna", "Patient/p1")
    request = Authorization()
    code = authorize(smart_client, request, "anna")["code"]
    response = exchange(smart_client, request, code, redirect_uri=REDIRECT + "2")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_an_unknown_client_gets_an_error_page_not_a_redirect(
    smart_client: TestClient, patient_app: Store
) -> None:
    response = smart_client.get(Authorization(client_id="nope").url())
    assert response.status_code == 400 and "location" not in response.headers


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"aud": "https://other.example.org/fhir"}, "invalid_request"),
        ({"aud": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "nonsense"}, "invalid_scope"),
    ],
)
def test_bad_authorization_requests_are_redirected_with_an_error(
    smart_client: TestClient, patient_app: Store, override: dict[str, str | None], error: str
) -> None:
    # SHALL 96 (aud)
    request = Authorization()
    response = smart_client.get(request.url(**override))
    assert response.status_code == 302
    redirect = query(response.headers["location"])
    assert redirect["error"] == error and redirect["state"] == request.state


def test_state_is_required(smart_client: TestClient, patient_app: Store) -> None:
    response = smart_client.get(Authorization().url(state=None))
    assert query(response.headers["location"])["error"] == "invalid_request"


@pytest.mark.parametrize(
    "override",
    [
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge": "", "code_challenge_method": "S256"},
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
    ],
)
def test_authorization_requests_without_an_s256_pkce_challenge_are_refused(
    smart_client: TestClient, patient_app: Store, override: dict[str, str | None]
) -> None:
    # SHALL 14, 15
    response = smart_client.get(Authorization().url(**override))
    assert query(response.headers["location"])["error"] == "invalid_request"


@pytest.mark.parametrize("verifier", [None, "", "   ", "wrong-" * 10, "plain"])
def test_code_exchange_without_the_right_code_verifier_is_refused(
    smart_client: TestClient, patient_app: Store, verifier: str | None
) -> None:
    # SHALL 31, 15 (verifier "plain": a plain-method client sending its challenge as verifier)
    request = Authorization()
    code = authorize(smart_client, request, "anna")["code"]
    value = request.challenge if verifier == "plain" else verifier
    response = exchange(smart_client, request, code, code_verifier=value)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.headers["cache-control"] == "no-store"


def test_a_reused_code_is_refused_and_revokes_the_tokens_it_issued(
    smart_client: TestClient, patient_app: Store
) -> None:
    request = Authorization()
    code = authorize(smart_client, request, "anna")["code"]
    first = exchange(smart_client, request, code).json()
    assert smart_client.get("/Patient/p1", headers=bearer(first["access_token"])).status_code == 200
    second = exchange(smart_client, request, code)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert smart_client.get("/Patient/p1", headers=bearer(first["access_token"])).status_code == 401
    refreshed = smart_client.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": "app"},
    )
    assert refreshed.json()["error"] == "invalid_grant"


def test_a_code_only_works_for_the_client_it_was_issued_to(
    smart_client: TestClient, patient_app: Store
) -> None:
    register(patient_app, "other-app")
    request = Authorization()
    code = authorize(smart_client, request, "anna")["code"]
    response = exchange(smart_client, request, code, client_id="other-app")
    assert response.json()["error"] == "invalid_grant"


def test_a_symmetric_client_authenticates_with_basic_or_post_and_a_wrong_secret_is_invalid_client(
    smart_client: TestClient, patient_app: Store
) -> None:
    # SHALL 356
    secret = register(patient_app, "conf", "symmetric")
    assert secret
    for how in ("basic", "post", "wrong"):
        request = Authorization(client_id="conf")
        code = authorize(smart_client, request, "anna")["code"]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": request.verifier,
        }
        if how == "basic":
            auth = base64.b64encode(f"conf:{secret}".encode()).decode()
            response = smart_client.post("/auth/token", data=form, headers={"Authorization": f"Basic {auth}"})
        elif how == "post":
            response = smart_client.post(
                "/auth/token", data={**form, "client_id": "conf", "client_secret": secret}
            )
        else:
            auth = base64.b64encode(b"conf:not-the-secret").decode()
            response = smart_client.post("/auth/token", data=form, headers={"Authorization": f"Basic {auth}"})
            assert response.status_code == 401
            assert response.json()["error"] == "invalid_client"
            assert response.headers["www-authenticate"].startswith("Basic")
            continue
        assert response.status_code == 200, response.text


def test_a_symmetric_client_without_its_secret_is_invalid_client(
    smart_client: TestClient, patient_app: Store
) -> None:
    register(patient_app, "conf", "symmetric")
    request = Authorization(client_id="conf")
    response = exchange(smart_client, request, authorize(smart_client, request, "anna")["code"])
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_an_asymmetric_app_exchanges_its_code_with_a_signed_assertion(
    smart_client: TestClient, patient_app: Store
) -> None:
    # SHALL 357
    key = rsa_key()
    register(patient_app, "asym", "asymmetric", jwks=public_jwks(key), redirect_uris=[REDIRECT])
    request = Authorization(client_id="asym")
    code = authorize(smart_client, request, "anna")["code"]
    response = exchange(
        smart_client,
        request,
        code,
        client_id=None,
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=assertion(key, "RS384", "asym"),
    )
    assert response.status_code == 200, response.text


def test_a_wrong_password_keeps_the_user_on_the_login_page(
    smart_client: TestClient, patient_app: Store
) -> None:
    page = smart_client.get(Authorization().url())
    response = log_in(smart_client, page.text, "anna", "not the password")
    assert response.status_code == 401
    assert 'role="alert"' in response.text and 'id="login"' in response.text
    assert "fhir_auth_session" not in response.headers.get("set-cookie", "")


def test_consent_needs_the_browser_session_that_logged_in(
    smart_client: TestClient, patient_app: Store
) -> None:
    page = log_in(smart_client, smart_client.get(Authorization().url()).text, "anna")
    smart_client.cookies.clear()
    response = consent(smart_client, page.text)
    assert response.status_code == 403 and "location" not in response.headers


def test_a_decided_request_cannot_be_decided_again(smart_client: TestClient, patient_app: Store) -> None:
    page = log_in(smart_client, smart_client.get(Authorization().url()).text, "anna")
    assert consent(smart_client, page.text).status_code == 303
    assert consent(smart_client, page.text).status_code == 400


def test_pages_are_plain_labelled_forms_a_browser_can_drive(
    smart_client: TestClient, patient_app: Store
) -> None:
    login_page = smart_client.get(Authorization().url())
    assert login_page.headers["content-type"].startswith("text/html")
    assert login_page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in login_page.headers["content-security-policy"]
    for field in ("username", "password", "totp"):
        assert f'<label for="{field}">' in login_page.text and f'id="{field}"' in login_page.text
    consent_page = log_in(smart_client, login_page.text, "anna").text
    assert 'id="approve"' in consent_page and 'id="deny"' in consent_page
    assert '<html lang="en">' in consent_page and "<legend>" in consent_page
    for i in range(len(offered_scopes(consent_page))):
        assert f'<label for="scope-{i}">' in consent_page


def test_parameters_sent_twice_are_refused(smart_client: TestClient, patient_app: Store) -> None:
    request = Authorization()
    response = smart_client.get(request.url() + "&scope=patient/*.cruds")
    assert query(response.headers["location"])["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"client_id": "app"}, "invalid_request"),
        ({"client_id": "app", "grant_type": "password"}, "unsupported_grant_type"),
        ({"client_id": "app", "grant_type": "authorization_code"}, "invalid_request"),
        ({"client_id": "app", "grant_type": "authorization_code", "code": "made-up"}, "invalid_grant"),
        ({"client_id": "nope", "grant_type": "authorization_code", "code": "x"}, "invalid_client"),
        (
            {"client_id": "app", "grant_type": "client_credentials", "scope": "system/*.rs"},
            "unauthorized_client",
        ),
    ],
)
def test_token_endpoint_errors_follow_rfc_6749(
    smart_client: TestClient, patient_app: Store, form: dict[str, str], error: str
) -> None:
    # SHALL 73, 251
    response = smart_client.post("/auth/token", data=form)
    assert response.json()["error"] == error
    assert response.status_code == (401 if error == "invalid_client" else 400)
    assert response.headers["cache-control"] == "no-store" and response.headers["pragma"] == "no-cache"


def test_token_endpoint_takes_only_form_bodies(smart_client: TestClient, patient_app: Store) -> None:
    response = smart_client.post("/auth/token", json={"grant_type": "authorization_code", "client_id": "app"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
