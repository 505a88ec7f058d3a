"""Bulk Data kick-off requests (https://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-kick-off-request).

Requirement ids are those of ../shared/docs/requirements/bulk-data-2.0-requirements.txt
(hl7.fhir.uv.bulkdata_2.0.0@N), named in each test's docstring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.store.sql import Store
from tests import bulk_support, factories
from tests.bulk_support import (
    BASE,
    Caller,
    export,
    lines,
    put,
    settings_for,
    wait_done,
)

LEVELS = ["$export", "Patient/$export", "Group/g1/$export"]

bulk_caller = bulk_support.bulk_caller  # fixtures
bulk_client = bulk_support.bulk_client
bulk_settings = bulk_support.bulk_settings


class HeldQueue:
    """A job queue that keeps jobs waiting (they stay 'accepted')."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, job_id: str) -> None:
        self.submitted.append(job_id)


@pytest.fixture
def data(store: Store) -> dict[str, str]:
    """Two patients with an Observation each, an Organization, and Group g1 holding the first patient."""
    p1, p2 = put(store, factories.patient("One"), factories.patient("Two"))
    put(store, factories.observation(p1), factories.observation(p2))
    put(store, {"resourceType": "Organization", "name": "Clinic"})
    group = {
        "resourceType": "Group",
        "id": "g1",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{p1}"}}],
    }
    put(store, group)
    return {"p1": p1, "p2": p2}


def _outcome(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


@pytest.mark.parametrize("path", LEVELS)
def test_kickoff_without_a_token_is_401(
    store: Store, tmp_path: Path, data: dict[str, str], path: str
) -> None:
    """The kick-off is protected like any FHIR request: no token, 401 (@4, @5, @20)."""
    app = create_app(settings_for(tmp_path), store=store)  # the real authentication dependency
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        response = client.get(f"/{path}", headers={"Prefer": "respond-async"})
    _outcome(response, 401)


@pytest.mark.parametrize("path", LEVELS)
@pytest.mark.parametrize("prefer", ["respond-async", None, "respond-async, handling=strict"])
def test_kickoff_is_202_with_an_absolute_content_location(
    bulk_client: TestClient, data: dict[str, str], path: str, prefer: str | None
) -> None:
    """202 Accepted and the absolute polling URL, with or without Prefer: respond-async (the FHIR
    Asynchronous Request Pattern) (@28, @29, @46, @223, @224, @225, @227, @229, @249, @272, @273,
    @297, @298, @299, @300, @301)."""
    headers = {"Prefer": prefer} if prefer else {}
    response = bulk_client.get(f"/{path}", headers=headers)
    assert response.status_code == 202, response.text
    location = response.headers["content-location"]
    assert location.startswith(f"{BASE}/")
    assert wait_done(bulk_client, location).status_code == 200


@pytest.mark.parametrize("path", LEVELS)
def test_post_kickoff_takes_a_parameters_resource(
    bulk_client: TestClient, data: dict[str, str], path: str
) -> None:
    """POST with a Parameters resource; the manifest's request URL has no parameters (@30, @158)."""
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Patient"},
            {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
        ],
    }
    response = bulk_client.post(f"/{path}", json=body, headers={"Prefer": "respond-async"})
    assert response.status_code == 202, response.text
    manifest = wait_done(bulk_client, response.headers["content-location"]).json()
    assert manifest["request"] == f"{BASE}/{path}"
    assert {item["type"] for item in manifest["output"]} == {"Patient"}


@pytest.mark.parametrize("path", LEVELS)
@pytest.mark.parametrize(
    "fmt", ["application/fhir+ndjson", "application/ndjson", "ndjson", "application/fhir ndjson"]
)
def test_each_output_format_spelling_is_accepted(
    bulk_client: TestClient, data: dict[str, str], path: str, fmt: str
) -> None:
    """The full and abbreviated NDJSON types are accepted (a '+' sent unencoded too) (@47, @49, @51,
    @52, @231, @251, @274)."""
    manifest = export(bulk_client, path, params={"_outputFormat": fmt})
    assert manifest["output"]


@pytest.mark.parametrize("path", LEVELS)
def test_an_unsupported_output_format_is_400(
    bulk_client: TestClient, data: dict[str, str], path: str
) -> None:
    """Only NDJSON is written: another format is an error, even under lenient handling (@303, @304)."""
    for prefer in ("respond-async", "respond-async, handling=lenient"):
        response = bulk_client.get(
            f"/{path}", params={"_outputFormat": "text/csv"}, headers={"Prefer": prefer}
        )
        _outcome(response, 400)


@pytest.mark.parametrize("path", LEVELS)
def test_an_unknown_type_is_400(bulk_client: TestClient, data: dict[str, str], path: str) -> None:
    """An unknown `_type` is an error with an OperationOutcome (@69, @70, @108, @303, @304)."""
    body = _outcome(bulk_client.get(f"/{path}", params={"_type": "Patient,Spaceship"}), 400)
    assert "Spaceship" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("path", LEVELS)
def test_an_unknown_type_is_reported_but_ignored_under_lenient_handling(
    bulk_client: TestClient, data: dict[str, str], path: str
) -> None:
    """handling=lenient: the export runs (a partial success: 200) and the error files, OperationOutcome
    NDJSON, carry a warning per ignored value (@72, @142, @143, @196, @197)."""
    manifest = export(
        bulk_client,
        path,
        params={"_type": "Patient,Spaceship"},
        headers={"Prefer": "respond-async, handling=lenient"},
    )
    assert {item["type"] for item in manifest["output"]} == {"Patient"}
    (outcome,) = lines(bulk_client, manifest, "error")["OperationOutcome"]
    assert "Spaceship" in outcome["issue"][0]["diagnostics"]
    assert outcome["issue"][0]["severity"] == "warning"


@pytest.mark.parametrize("path", LEVELS)
@pytest.mark.parametrize("since", ["yesterday", "2020-13-01T00:00:00Z", "2020-01-01T00:00:00", "2020-01-01"])
def test_a_malformed_since_is_400(
    bulk_client: TestClient, data: dict[str, str], path: str, since: str
) -> None:
    """`_since` must be a FHIR instant; anything else is a 400, lenient or not (@53, @303, @304)."""
    for prefer in ("respond-async", "respond-async, handling=lenient"):
        response = bulk_client.get(f"/{path}", params={"_since": since}, headers={"Prefer": prefer})
        body = _outcome(response, 400)
        assert body["issue"][0]["expression"] == ["_since"]


@pytest.mark.parametrize("path", LEVELS)
def test_a_type_filter_with_an_unknown_parameter_is_400(
    bulk_client: TestClient, data: dict[str, str], path: str
) -> None:
    """A `_typeFilter` search the server cannot run is an error (@105, @303, @304)..."""
    response = bulk_client.get(f"/{path}", params={"_typeFilter": "Observation?shoe-size=42"})
    assert "shoe-size" in _outcome(response, 400)["issue"][0]["diagnostics"]


def test_a_type_filter_with_an_unknown_parameter_is_ignored_under_lenient_handling(
    bulk_client: TestClient, data: dict[str, str]
) -> None:
    """... unless handling=lenient, when the unknown parameter is left out and reported (@106, @197)."""
    manifest = export(
        bulk_client,
        params={"_type": "Observation", "_typeFilter": "Observation?shoe-size=42"},
        headers={"Prefer": "respond-async, handling=lenient"},
    )
    assert len(lines(bulk_client, manifest)["Observation"]) == 2
    assert any(
        "shoe-size" in o["issue"][0]["diagnostics"]
        for o in lines(bulk_client, manifest, "error")["OperationOutcome"]
    )


def test_a_type_filter_may_not_page_sort_or_include(bulk_client: TestClient, data: dict[str, str]) -> None:
    """Only search criteria make sense in `_typeFilter` (@105)."""
    for query in (
        "Observation?_count=1",
        "Observation?_sort=date",
        "Observation?_include=Observation:subject",
    ):
        _outcome(bulk_client.get("/$export", params={"_typeFilter": query}), 400)


def test_a_group_that_does_not_exist_is_404(bulk_client: TestClient, data: dict[str, str]) -> None:
    """Group export of an unknown Group: 404 with an OperationOutcome (@303, @304)."""
    body = _outcome(bulk_client.get("/Group/nope/$export", headers={"Prefer": "respond-async"}), 404)
    assert "Group/nope" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("path", ["Patient/$export", "Group/g1/$export"])
def test_types_outside_the_patient_compartment_are_400_for_patient_exports(
    bulk_client: TestClient, data: dict[str, str], path: str
) -> None:
    """Asking a Patient or Group export for Organizations only is an error (@71, @303)."""
    _outcome(bulk_client.get(f"/{path}", params={"_type": "Organization"}), 400)


def test_repeated_parameters_count_as_one_comma_separated_value(
    bulk_client: TestClient, data: dict[str, str]
) -> None:
    """`_type=A&_type=B` is `_type=A,B`; repeated `_typeFilter` likewise (@32, @117)."""
    repeated = export(bulk_client, params=[("_type", "Patient"), ("_type", "Organization")])
    joined = export(bulk_client, params={"_type": "Patient,Organization"})
    assert (
        sorted(i["type"] for i in repeated["output"])
        == sorted(i["type"] for i in joined["output"])
        == [
            "Organization",
            "Patient",
        ]
    )
    filtered = export(
        bulk_client,
        params=[
            ("_type", "Patient"),
            ("_typeFilter", "Patient?family=One"),
            ("_typeFilter", "Patient?family=Two"),
        ],
    )
    assert len(lines(bulk_client, filtered)["Patient"]) == 2


def test_an_unsupported_parameter_is_400_unless_lenient(
    bulk_client: TestClient, data: dict[str, str]
) -> None:
    """Unknown kick-off parameters: 400, or ignored with a warning under handling=lenient (@303, @197)."""
    _outcome(bulk_client.get("/$export", params={"_shape": "round"}), 400)
    manifest = export(
        bulk_client, params={"_shape": "round", "_type": "Patient"}, headers={"Prefer": "handling=lenient"}
    )
    assert manifest["output"]


def test_the_patient_parameter_is_for_post_patient_and_group_exports(
    bulk_client: TestClient, data: dict[str, str]
) -> None:
    """`patient` on a system export or in a GET is an error (@88, @303)."""
    _outcome(bulk_client.get("/Patient/$export", params={"patient": f"Patient/{data['p1']}"}), 400)
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "patient", "valueReference": {"reference": "Patient/x"}}],
    }
    _outcome(bulk_client.post("/$export", json=body), 400)


def test_patients_that_do_not_exist_or_are_not_members_are_400(
    bulk_client: TestClient, data: dict[str, str]
) -> None:
    """`patient` naming an unknown patient, or one outside the Group, is an error (@86, @87)."""

    def ask(path: str, pid: str) -> Any:
        ref = {"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}}
        return bulk_client.post(f"/{path}", json={"resourceType": "Parameters", "parameter": [ref]})

    _outcome(ask("Patient/$export", "nobody"), 400)
    _outcome(ask("Group/g1/$export", data["p2"]), 400)
    assert ask("Group/g1/$export", data["p1"]).status_code == 202


def test_include_associated_data_latest_provenance_is_not_supported(
    bulk_client: TestClient, data: dict[str, str]
) -> None:
    """LatestProvenanceResources is not supported, so refused (@97 and @98 apply to servers that
    support it); with RelevantProvenanceResources the larger set wins (@93, @96)."""
    _outcome(bulk_client.get("/$export", params={"includeAssociatedData": "LatestProvenanceResources"}), 400)
    _outcome(bulk_client.get("/$export", params={"includeAssociatedData": "_mySet"}), 400)
    both = "LatestProvenanceResources,RelevantProvenanceResources"
    assert bulk_client.get("/$export", params={"includeAssociatedData": both}).status_code == 202


def test_too_many_concurrent_exports_of_a_client_is_429(
    store: Store, tmp_path: Path, data: dict[str, str]
) -> None:
    """A client may run `bulk_max_active_per_client` exports at once; the next gets 429 + Retry-After
    (@118); another client is not affected."""
    from fhir_server.api.deps import get_principal
    from tests.bulk_support import system_client

    caller = Caller()
    app = create_app(settings_for(tmp_path, bulk_max_active_per_client=2), store=store)
    app.dependency_overrides[get_principal] = caller
    app.state.job_queue = HeldQueue()
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        assert client.get("/$export").status_code == 202
        assert client.get("/Patient/$export").status_code == 202
        response = client.get("/Group/g1/$export")
        _outcome(response, 429)
        assert response.headers["retry-after"].isdigit()
        caller.principal = system_client("another-client")
        assert client.get("/$export").status_code == 202


def test_anonymous_development_mode_exports_without_a_token(
    store: Store, tmp_path: Path, data: dict[str, str]
) -> None:
    """With FHIR_ALLOW_ANONYMOUS on (development only) no token is needed."""
    settings: Settings = settings_for(tmp_path, allow_anonymous=True)
    with TestClient(
        create_app(settings, store=store), base_url=BASE, raise_server_exceptions=False
    ) as client:
        manifest = export(client, params={"_type": "Patient"})
    assert manifest["output"][0]["count"] == 2
