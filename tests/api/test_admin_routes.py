"""The administration API: clients, users, EHR launches (https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#register-app-with-ehr)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from fhir_server.store.sql import Store
from tests.auth.smart_flow import (
    REDIRECT,
    Authorization,
    assertion,
    authorize,
    bearer,
    client_credentials,
    exchange,
    public_jwks,
    register,
    rsa_key,
)

ADMIN = bearer("test-admin-secret")


def test_the_admin_api_needs_the_admin_secret_or_a_system_cruds_token(
    smart_client: TestClient, store: Store
) -> None:
    assert smart_client.get("/admin/clients").status_code == 401
    assert smart_client.get("/admin/clients", headers=bearer("wrong")).status_code == 401
    assert smart_client.get("/admin/clients", headers=ADMIN).status_code == 200
    reader, admin = rsa_key("reader"), rsa_key("admin")
    register(store, "reader", "asymmetric", jwks=public_jwks(reader), scope="system/*.rs")
    register(store, "admin", "asymmetric", jwks=public_jwks(admin), scope="system/*.*")
    read_only = client_credentials(smart_client, assertion(reader, "RS384", "reader")).json()["access_token"]
    assert smart_client.get("/admin/clients", headers=bearer(read_only)).status_code == 403
    full = client_credentials(smart_client, assertion(admin, "RS384", "admin"), scope="system/*.*").json()
    assert smart_client.get("/admin/clients", headers=bearer(full["access_token"])).status_code == 200


def test_registering_clients_shows_a_symmetric_secret_once(smart_client: TestClient) -> None:
    # SHALL 24, 316
    created = smart_client.post(
        "/admin/clients",
        json={"client_id": "web", "type": "symmetric", "redirect_uris": [REDIRECT]},
        headers=ADMIN,
    )
    assert created.status_code == 201 and created.json()["client_secret"]
    listed = smart_client.get("/admin/clients", headers=ADMIN).json()
    assert listed == [
        {"client_id": "web", "type": "symmetric", "name": "", "redirect_uris": [REDIRECT], "scope": ""}
    ]


def test_registering_an_asymmetric_client_with_a_jwks_or_a_jwks_url(smart_client: TestClient) -> None:
    # SHALL 296, 297, 305
    key = rsa_key("k")
    inline = {"client_id": "a1", "type": "asymmetric", "jwks": public_jwks(key), "scope": "system/*.rs"}
    assert smart_client.post("/admin/clients", json=inline, headers=ADMIN).status_code == 201
    by_url = {"client_id": "a2", "type": "asymmetric", "jwks_uri": "https://a2.example.com/jwks.json"}
    assert smart_client.post("/admin/clients", json=by_url, headers=ADMIN).status_code == 201
    private = {"client_id": "a3", "type": "asymmetric", "jwks": {"keys": [key.as_dict(private=True)]}}
    refused = smart_client.post("/admin/clients", json=private, headers=ADMIN)
    assert refused.status_code == 400 and "public keys only" in refused.text


def test_bad_registrations_are_400(smart_client: TestClient) -> None:
    for body in (
        {"client_id": "x", "type": "public"},
        {"client_id": "x", "type": "public", "redirect_uris": ["https://app.example.org/*"]},
        {"client_id": "x", "type": "public", "redirect_uris": ["https://app.example.org/cb#frag"]},
        {"client_id": "bad id", "type": "public", "redirect_uris": [REDIRECT]},
        {"client_id": "x", "type": "magic", "redirect_uris": [REDIRECT]},
        {"client_id": "x", "type": "asymmetric"},
    ):
        assert smart_client.post("/admin/clients", json=body, headers=ADMIN).status_code == 400, body


def test_users_created_through_the_api_can_log_in(smart_client: TestClient, store: Store) -> None:
    register(store)
    with store.write() as tx:
        tx.create({"resourceType": "Patient"}, "p9")
    body = {"username": "zoe", "password": "a long enough password", "fhirUser": "Patient/p9"}
    assert smart_client.post("/admin/users", json=body, headers=ADMIN).status_code == 201
    assert smart_client.get("/admin/users", headers=ADMIN).json() == [
        {"username": "zoe", "fhirUser": "Patient/p9", "totp": False}
    ]
    request = Authorization()
    page = smart_client.get(request.url())
    login = smart_client.post(
        "/auth/login",
        data={
            "request": page.text.split('name="request" value="')[1].split('"')[0],
            "username": "zoe",
            "password": body["password"],
        },
    )
    assert login.status_code == 200 and 'id="approve"' in login.text


def test_a_user_with_totp_gets_the_secret_and_an_otpauth_uri_once(smart_client: TestClient) -> None:
    body = {"username": "tom", "password": "a long enough password", "totp": True}
    created = smart_client.post("/admin/users", json=body, headers=ADMIN).json()
    assert created["totp_secret"] and created["totp_uri"].startswith("otpauth://totp/")
    assert "totp_secret" not in smart_client.get("/admin/users", headers=ADMIN).text


def test_an_issued_launch_starts_an_ehr_launch(smart_client: TestClient, store: Store) -> None:
    register(store)
    with store.write() as tx:
        tx.create({"resourceType": "Patient"}, "p1")
    from tests.auth.smart_flow import add_user

    add_user(store, "dr", "Practitioner/d1")
    issued = smart_client.post(
        "/admin/launch", json={"patient": "p1", "encounter": "e7"}, headers=ADMIN
    ).json()
    request = Authorization(scope="launch patient/*.rs", launch=issued["launch"])
    token = exchange(smart_client, request, authorize(smart_client, request, "dr")["code"]).json()
    assert (token["patient"], token["encounter"]) == ("p1", "e7")


def test_a_fhir_user_must_be_a_patient_practitioner_practitioner_role_related_person_or_person(
    smart_client: TestClient,
) -> None:
    # SHALL 198
    body = {"username": "odd", "password": "a long enough password", "fhirUser": "Observation/1"}
    assert smart_client.post("/admin/users", json=body, headers=ADMIN).status_code == 400
    body["fhirUser"] = "PractitionerRole/r1"
    assert smart_client.post("/admin/users", json=body, headers=ADMIN).status_code == 201
