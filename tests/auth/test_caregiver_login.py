"""Caregivers through the real login pages: a user linked to RelatedPersons picks which person to open,
and sees only that one (https://hl7.org/fhir/R4/relatedperson.html, https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html).

Gran's fhirUser is Person/G, linked to RelatedPerson R1 (for P1), R2 (for P2) and R3 (for P3, a link
that ended last year). She picks P1 and sees only P1; switching gives P2; P3 and a stranger's
record stay unreachable; a link that ends makes her token stop working.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.store.sql import Store
from tests import factories
from tests.auth.smart_flow import (
    Authorization,
    add_user,
    bearer,
    claims,
    consent,
    exchange,
    hidden,
    log_in,
    pick_patient,
    query,
    register,
)

SCOPE = "launch/patient patient/*.rs openid fhirUser"


def related(rid: str, patient: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson",
        "active": True,
        "patient": {"reference": f"Patient/{patient}"},
        "relationship": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "GRMTH"}]}
        ],
        **extra,
    }


@pytest.fixture
def family(store: Store) -> dict[str, str]:
    register(store)
    obs: dict[str, str] = {}
    with store.write() as tx:
        for pid, name in (("P1", "Pip"), ("P2", "Pia"), ("P3", "Pol"), ("S", "Stranger")):
            tx.create(factories.patient("Kinsley", name), pid)
            obs[pid] = tx.create(factories.observation(pid)).res_id
        tx.create(related("R1", "P1"), "R1")
        tx.create(related("R2", "P2", period={"start": "2020-01-01"}), "R2")
        tx.create(related("R3", "P3", period={"start": "2015-01-01", "end": "2024-12-31"}), "R3")
        tx.create(
            {
                "resourceType": "Person",
                "active": True,
                "link": [{"target": {"reference": f"RelatedPerson/{r}"}} for r in ("R1", "R2", "R3")],
            },
            "G",
        )
    add_user(store, "gran", "Person/G")
    add_user(store, "aunt", "RelatedPerson/R3")  # her only link has ended
    return obs


def picker(http: TestClient, request: Authorization, username: str) -> Any:
    page = http.get(request.url())
    assert page.status_code == 200
    shown = log_in(http, page.text, username)
    assert shown.status_code == 200 and 'action="/auth/patient"' in shown.text, shown.text
    return shown


def offered(page: str) -> set[str]:
    return set(re.findall(r'name="patient" value="([^"]*)"', page))


def token_for(http: TestClient, username: str, patient: str) -> dict[str, Any]:
    request = Authorization(scope=SCOPE)
    page = picker(http, request, username)
    chosen = pick_patient(http, page.text, patient)
    assert chosen.status_code == 200 and "consent" in chosen.text.lower()
    done = consent(http, chosen.text)
    assert done.status_code == 303
    response = exchange(http, request, query(done.headers["location"])["code"])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def visible_patients(http: TestClient, token: str) -> set[str]:
    bundle = http.get("/Observation", headers=bearer(token)).json()
    return {e["resource"]["subject"]["reference"] for e in bundle.get("entry", [])}


def test_the_picker_offers_only_the_people_actively_cared_for(
    smart_client: TestClient, family: dict[str, str]
) -> None:
    page = picker(smart_client, Authorization(scope=SCOPE), "gran")
    assert offered(page.text) == {"P1", "P2"}


def test_picking_one_opens_only_that_one_and_switching_gives_the_other(
    smart_client: TestClient, family: dict[str, str]
) -> None:
    first = token_for(smart_client, "gran", "P1")
    assert first["patient"] == "P1"
    assert claims(first["id_token"])["fhirUser"].endswith("Person/G")
    token = first["access_token"]
    assert visible_patients(smart_client, token) == {"Patient/P1"}
    assert smart_client.get("/Patient/P1", headers=bearer(token)).status_code == 200
    for other in ("P2", "P3", "S"):
        assert smart_client.get(f"/Patient/{other}", headers=bearer(token)).status_code == 404
        assert smart_client.get(f"/Observation/{family[other]}", headers=bearer(token)).status_code == 404
    second = token_for(smart_client, "gran", "P2")
    assert second["patient"] == "P2"
    assert visible_patients(smart_client, second["access_token"]) == {"Patient/P2"}
    assert smart_client.get("/Patient/P1", headers=bearer(second["access_token"])).status_code == 404


@pytest.mark.parametrize("target", ["P3", "S"])
def test_a_forged_pick_of_someone_not_cared_for_is_refused(
    smart_client: TestClient, family: dict[str, str], target: str
) -> None:
    page = picker(smart_client, Authorization(scope=SCOPE), "gran")
    refused = pick_patient(smart_client, page.text, target)
    assert refused.status_code == 200 and "Please choose a patient." in refused.text
    assert offered(refused.text) == {"P1", "P2"}
    form = {"request": hidden(page.text, "request"), "decision": "approve", "scope": SCOPE.split()}
    assert smart_client.post("/auth/consent", data=form).status_code != 303  # no code without a pick


def test_an_expired_link_gives_nothing(smart_client: TestClient, family: dict[str, str]) -> None:
    page = picker(smart_client, Authorization(scope=SCOPE), "aunt")
    assert offered(page.text) == set()
    refused = pick_patient(smart_client, page.text, "P3")
    assert "Please choose a patient." in refused.text


def test_a_token_stops_working_when_the_link_ends(
    smart_client: TestClient, family: dict[str, str], store: Store
) -> None:
    token = token_for(smart_client, "gran", "P1")["access_token"]
    assert smart_client.get("/Patient/P1", headers=bearer(token)).status_code == 200
    with store.write() as tx:
        current = tx.current("RelatedPerson", "R1")
        assert current is not None
        tx.update(current, related("R1", "P1", active=False) | {"id": "R1"})
    assert smart_client.get("/Patient/P1", headers=bearer(token)).status_code == 401
