"""Narrative xhtml rule txt-1 (https://hl7.org/fhir/R4/narrative.html#Narrative) on every write path."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server import model, narrative
from fhir_server.errors import Invalid
from fhir_server.jobs.import_ import LineError, prepare

NS = 'xmlns="http://www.w3.org/1999/xhtml"'
FHIR = {"Content-Type": "application/fhir+json"}


def _patient(div: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "text": {"status": "generated", "div": div}}


@pytest.mark.parametrize(
    "div",
    [
        f"<div {NS}><p>Ann <b>Smith</b> &amp; co &#160;</p></div>",
        f'<div {NS} xml:lang="en"><a href="https://example.org/x">x</a><img src="data:image/png;base64,AA=="/></div>',
        f'<div {NS}><table border="1"><tr><td style="color: red" colspan="2">1</td></tr></table></div>',
        f"<div {NS}><!-- a comment --><p>x</p></div>",
        f"<div {NS}>\n  </div>",  # whitespace only: HL7's own examples have such divs (txt-2 not enforced)
    ],
)
def test_basic_html_narrative_is_accepted(div: str) -> None:
    assert narrative.problem_of(div) is None


@pytest.mark.parametrize(
    ("div", "reason"),
    [
        (f"<div {NS}><script>alert(1)</script></div>", "'script' is not allowed"),
        (f'<div {NS}><p onclick="alert(1)">x</p></div>', "'onclick' of 'p' is not allowed"),
        (f'<div {NS}><img src="x.png" onerror="alert(1)"/></div>', "'onerror' of 'img' is not allowed"),
        (f'<div {NS}><iframe src="https://example.org"/></div>', "'iframe' is not allowed"),
        (f'<div {NS}><form action="x"><input name="a"/></form></div>', "'form' is not allowed"),
        (f'<div {NS}><object data="x"/></div>', "'object' is not allowed"),
        (f'<div {NS}><embed src="x"/></div>', "'embed' is not allowed"),
        (f'<div {NS}><link rel="stylesheet" href="x.css"/></div>', "'link' is not allowed"),
        (f'<div {NS}><base href="https://evil.example/"/></div>', "'base' is not allowed"),
        (f'<div {NS}><a href="javascript:alert(1)">x</a></div>', "holds a script URL"),
        (f'<div {NS}><a href=" Java&#9;Script:alert(1)">x</a></div>', "holds a script URL"),
        (
            f'<div {NS}><a xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="x">x</a></div>',
            "'href' of 'a' is not allowed",
        ),
        ("<div><p>x</p></div>", "must be a div in the namespace"),
        (f"<p {NS}>x</p>", "must be a div in the namespace"),
        (f'<div {NS}><svg xmlns="http://www.w3.org/2000/svg"/></div>', "not in the XHTML namespace"),
        (f"<div {NS}><p>x</div>", "not well-formed"),
        (f"<div {NS}>&nbsp;</div>", "not well-formed"),
        ("", "not well-formed"),
        (f'<!DOCTYPE div [<!ENTITY e "x">]><div {NS}>&e;</div>', "DTDs and entity declarations"),
        (f'<div {NS}><?xml-stylesheet href="x.css"?>x</div>', "processing instructions"),
    ],
)
def test_forbidden_narrative_is_rejected_with_the_reason(div: str, reason: str) -> None:
    problem = narrative.problem_of(div)
    assert problem is not None and reason in problem


def test_validate_points_at_the_div_of_the_resource() -> None:
    with pytest.raises(Invalid) as info:
        model.validate(_patient(f"<div {NS}><script>x</script></div>"))
    assert info.value.expression == ("Patient.text.div",)


def test_validate_checks_contained_resources_and_keeps_the_location() -> None:
    resource = {
        "resourceType": "Patient",
        "contained": [
            {"resourceType": "Organization", "id": "o"},
            {
                "resourceType": "Practitioner",
                "id": "p",
                "text": {"status": "generated", "div": "<div>x</div>"},
            },
        ],
    }
    with pytest.raises(Invalid) as info:
        model.validate(resource, location="Bundle.entry[2].resource")
    assert info.value.expression == ("Bundle.entry[2].resource.contained[1].text.div",)


def test_validate_checks_composition_section_narratives() -> None:
    composition = {
        "resourceType": "Composition",
        "status": "final",
        "type": {"text": "note"},
        "date": "2024-01-01",
        "author": [{"display": "A"}],
        "title": "T",
        "section": [
            {
                "section": [
                    {"text": {"status": "generated", "div": f'<div {NS}><p onmouseover="x">y</p></div>'}}
                ]
            }
        ],
    }
    with pytest.raises(Invalid) as info:
        model.validate(composition)
    assert info.value.expression == ("Composition.section[0].section[0].text.div",)


def test_create_with_a_script_in_the_narrative_is_400(client: TestClient) -> None:
    r = client.post("/Patient", json=_patient(f"<div {NS}><script>alert(1)</script></div>"), headers=FHIR)
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["Patient.text.div"] and "script" in issue["diagnostics"]


def test_update_with_an_event_handler_in_the_narrative_is_400(client: TestClient) -> None:
    body = {**_patient(f'<div {NS}><p onclick="x">y</p></div>'), "id": "p1"}
    r = client.put("/Patient/p1", json=body, headers=FHIR)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Patient.text.div"]
    assert client.get("/Patient/p1").status_code == 404


def test_transaction_entry_with_a_script_narrative_is_rejected_with_its_entry_path(
    client: TestClient,
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": _patient(f"<div {NS}><script>alert(1)</script></div>"),
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    r = client.post("/", json=bundle, headers=FHIR)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.text.div"]
    assert client.get("/Patient").json().get("total", 0) == 0


def test_import_line_with_a_script_narrative_is_a_line_error() -> None:
    line = (
        b'{"resourceType":"Patient","id":"a","text":{"status":"generated","div":'
        b'"<div xmlns=\\"http://www.w3.org/1999/xhtml\\"><script>alert(1)</script></div>"}}'
    )
    (result,) = prepare([("patients.ndjson", 1, line)])
    assert isinstance(result, LineError)
    assert result.expression == ("Patient.text.div",)
