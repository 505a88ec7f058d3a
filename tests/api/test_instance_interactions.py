"""The instance-level REST interactions over HTTP (https://hl7.org/fhir/R4/http.html), on both databases."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests import factories

FHIR = {"Content-Type": "application/fhir+json"}


def _create(client: TestClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/{resource['resourceType']}", json=resource, headers=FHIR)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_create_assigns_id_and_meta_and_answers_location_etag_last_modified(client: TestClient) -> None:
    r = client.post("/Patient", json={**factories.patient(), "id": "client-chosen"}, headers=FHIR)
    assert r.status_code == 201
    body = r.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Location"] == f"http://testserver/Patient/{body['id']}/_history/1"
    assert r.headers["Last-Modified"].endswith("GMT")
    assert r.headers["Content-Type"].startswith("application/fhir+json")


def test_read_returns_what_was_created(client: TestClient) -> None:
    created = _create(client, factories.patient("Nguyen"))
    r = client.get(f"/Patient/{created['id']}")
    assert r.status_code == 200
    assert r.json() == created
    assert r.headers["ETag"] == 'W/"1"'


def test_read_of_unknown_id_is_404_operation_outcome(client: TestClient) -> None:
    r = client.get("/Patient/nope")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["code"] == "not-found"


def test_read_of_unknown_type_is_404(client: TestClient) -> None:
    r = client.get("/Spaceship/1")
    assert r.status_code == 404
    assert "Spaceship" in r.json()["issue"][0]["diagnostics"]


def test_update_makes_gapless_versions_and_vread_returns_each(client: TestClient) -> None:
    created = _create(client, factories.patient("A"))
    rid = created["id"]
    for i, family in enumerate(["B", "C", "D"], start=2):
        body = {**factories.patient(family), "id": rid}
        r = client.put(f"/Patient/{rid}", json=body, headers=FHIR)
        assert r.status_code == 200, r.text
        assert r.json()["meta"]["versionId"] == str(i)
    assert client.get(f"/Patient/{rid}/_history/1").json()["name"][0]["family"] == "A"
    assert client.get(f"/Patient/{rid}/_history/3").json()["name"][0]["family"] == "C"
    assert client.get(f"/Patient/{rid}").json()["name"][0]["family"] == "D"
    assert client.get(f"/Patient/{rid}/_history/9").status_code == 404


def test_update_as_create_uses_the_client_id(client: TestClient) -> None:
    r = client.put("/Patient/my-id", json={**factories.patient(), "id": "my-id"}, headers=FHIR)
    assert r.status_code == 201
    assert r.json()["id"] == "my-id"
    assert r.headers["Location"].endswith("/Patient/my-id/_history/1")


def test_update_with_id_mismatch_is_400_naming_id(client: TestClient) -> None:
    r = client.put("/Patient/one", json={**factories.patient(), "id": "two"}, headers=FHIR)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Patient.id"]


def test_update_without_id_in_body_is_400(client: TestClient) -> None:
    r = client.put("/Patient/one", json=factories.patient(), headers=FHIR)
    assert r.status_code == 400


def test_if_match_mismatch_is_412_and_match_succeeds(client: TestClient) -> None:
    rid = _create(client, factories.patient())["id"]
    body = {**factories.patient("New"), "id": rid}
    stale = client.put(f"/Patient/{rid}", json=body, headers={**FHIR, "If-Match": 'W/"7"'})
    assert stale.status_code == 412
    ok = client.put(f"/Patient/{rid}", json=body, headers={**FHIR, "If-Match": 'W/"1"'})
    assert ok.status_code == 200
    assert ok.json()["meta"]["versionId"] == "2"


def test_if_match_garbage_is_400(client: TestClient) -> None:
    rid = _create(client, factories.patient())["id"]
    r = client.put(
        f"/Patient/{rid}", json={**factories.patient(), "id": rid}, headers={**FHIR, "If-Match": "banana"}
    )
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["If-Match"]


def test_delete_then_read_is_410_and_update_revives(client: TestClient) -> None:
    rid = _create(client, factories.patient())["id"]
    assert client.delete(f"/Patient/{rid}").status_code == 204
    assert client.get(f"/Patient/{rid}").status_code == 410
    assert client.delete(f"/Patient/{rid}").status_code == 204  # idempotent
    revived = client.put(f"/Patient/{rid}", json={**factories.patient(), "id": rid}, headers=FHIR)
    assert revived.status_code == 201
    assert revived.json()["meta"]["versionId"] == "3"
    assert client.get(f"/Patient/{rid}").status_code == 200
    assert client.get(f"/Patient/{rid}/_history/2").status_code == 410


def test_json_patch_changes_one_element_and_makes_a_version(client: TestClient) -> None:
    rid = _create(client, factories.patient())["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    r = client.patch(f"/Patient/{rid}", json=ops, headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "male"
    assert r.json()["meta"]["versionId"] == "2"


def test_json_patch_making_the_resource_invalid_is_422(client: TestClient) -> None:
    rid = _create(client, factories.patient())["id"]
    ops = [{"op": "replace", "path": "/gender", "value": 12}]
    r = client.patch(f"/Patient/{rid}", json=ops, headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 422
    assert client.get(f"/Patient/{rid}").json()["gender"] == "female"


def test_json_patch_that_is_not_an_array_is_400(client: TestClient) -> None:
    rid = _create(client, factories.patient())["id"]
    r = client.patch(
        f"/Patient/{rid}", json={"op": "x"}, headers={"Content-Type": "application/json-patch+json"}
    )
    assert r.status_code == 400


def test_if_none_match_and_if_modified_since_give_304(client: TestClient) -> None:
    created = client.post("/Patient", json=factories.patient(), headers=FHIR)
    rid = created.json()["id"]
    assert client.get(f"/Patient/{rid}", headers={"If-None-Match": 'W/"1"'}).status_code == 304
    assert client.get(f"/Patient/{rid}", headers={"If-None-Match": 'W/"2"'}).status_code == 200
    since = created.headers["Last-Modified"]
    assert client.get(f"/Patient/{rid}", headers={"If-Modified-Since": since}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.get(f"/Patient/{rid}", headers={"If-Modified-Since": old}).status_code == 200


def test_prefer_minimal_has_no_body_and_operation_outcome_gives_outcome(client: TestClient) -> None:
    minimal = client.post("/Patient", json=factories.patient(), headers={**FHIR, "Prefer": "return=minimal"})
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert "Location" in minimal.headers
    oo = client.post(
        "/Patient", json=factories.patient(), headers={**FHIR, "Prefer": "return=OperationOutcome"}
    )
    assert oo.json()["resourceType"] == "OperationOutcome"


def test_format_and_pretty(client: TestClient) -> None:
    rid = _create(client, factories.patient())["id"]
    pretty = client.get(f"/Patient/{rid}?_pretty=true&_format=json")
    assert pretty.status_code == 200
    assert b"\n  " in pretty.content
    assert (
        client.get(f"/Patient/{rid}?_format=application/json")
        .headers["Content-Type"]
        .startswith("application/json")
    )
    xml = client.get(f"/Patient/{rid}?_format=xml")
    assert xml.status_code == 200 and xml.headers["Content-Type"].startswith("application/fhir+xml")
    unknown = client.get(f"/Patient/{rid}?_format=turtle")
    assert unknown.status_code == 406
    assert unknown.json()["resourceType"] == "OperationOutcome"


def test_unknown_body_type_is_415(client: TestClient) -> None:
    r = client.post("/Patient", content=b"Patient", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["resourceType"] == "OperationOutcome"


def test_summary_and_elements_on_read_are_subsetted(client: TestClient) -> None:
    rid = _create(
        client,
        factories.patient(
            text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}
        ),
    )["id"]
    summary = client.get(f"/Patient/{rid}?_summary=true").json()
    assert "text" not in summary and summary["name"][0]["family"] == "Smith"
    assert summary["meta"]["tag"][-1]["code"] == "SUBSETTED"
    elements = client.get(f"/Patient/{rid}?_elements=gender").json()
    assert elements["gender"] == "female"
    assert "name" not in elements and "birthDate" not in elements
    data = client.get(f"/Patient/{rid}?_summary=data").json()
    assert "text" not in data and data["birthDate"] == "1970-05-04"


def test_instance_history_lists_versions_newest_first(client: TestClient) -> None:
    rid = _create(client, factories.patient("V1"))["id"]
    client.put(f"/Patient/{rid}", json={**factories.patient("V2"), "id": rid}, headers=FHIR)
    client.delete(f"/Patient/{rid}")
    bundle = client.get(f"/Patient/{rid}/_history").json()
    assert bundle["type"] == "history"
    assert bundle["total"] == 3
    methods = [e["request"]["method"] for e in bundle["entry"]]
    assert methods == ["DELETE", "PUT", "POST"]
    assert "resource" not in bundle["entry"][0]
    assert bundle["entry"][1]["resource"]["name"][0]["family"] == "V2"


def test_type_and_system_history_page_with_count_and_next_links(client: TestClient) -> None:
    ids = {_create(client, factories.patient(f"P{i}"))["id"] for i in range(5)}
    seen: list[str] = []
    url: str | None = "/Patient/_history?_count=2"
    while url:
        page = client.get(url).json()
        seen += [e["resource"]["id"] for e in page["entry"]]
        nxt = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else None
    assert len(seen) == 5 and set(seen) == ids
    assert len(client.get("/_history").json()["entry"]) == 5


def test_history_since_filters_older_versions(client: TestClient) -> None:
    first = _create(client, factories.patient("Old"))
    second = _create(client, factories.patient("New"))
    since = second["meta"]["lastUpdated"]
    bundle = client.get("/Patient/_history", params={"_since": since}).json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == [second["id"]]
    assert first["id"] not in str(bundle)


def test_history_with_bad_since_is_400(client: TestClient) -> None:
    r = client.get("/Patient/_history?_since=yesterday")
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["_since"]


def test_metadata_declares_fhir_401_and_the_core_types(client: TestClient) -> None:
    cs = client.get("/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in cs["rest"][0]["resource"]}
    assert {
        "Patient",
        "Observation",
        "MedicationStatement",
        "Encounter",
        "DocumentReference",
        "Goal",
    } <= types
