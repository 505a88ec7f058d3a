"""FHIR XML parsing (https://hl7.org/fhir/R4/xml.html): the JSON it gives, and the 400s for hostile
or wrong XML (DTDs, entities, XXE, encodings, nesting, unknown or misplaced elements)."""

from __future__ import annotations

import pytest

from fhir_server.errors import Invalid
from fhir_server.input_limits import MAX_JSON_DEPTH
from fhir_server.xml_format import parse

NS = 'xmlns="http://hl7.org/fhir"'
XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'


def refused(text: str | bytes) -> Invalid:
    with pytest.raises(Invalid) as caught:
        parse(text.encode() if isinstance(text, str) else text)
    return caught.value


def test_primitives_arrays_choice_extensions_and_ids() -> None:
    doc = f"""<?xml version="1.0" encoding="UTF-8"?>
    <Observation {NS}>
      <id value="o1"/>
      <!-- a comment is dropped -->
      <status value="final"/>
      <code><coding id="c1"><system value="http://loinc.org"/><code value="8867-4"/></coding></code>
      <subject><reference value="Patient/p1"/></subject>
      <valueQuantity><value value="72.50"/><unit value="/min"/></valueQuantity>
      <component>
        <code><text value="a"/></code>
        <valueBoolean value="true"/>
      </component>
      <component id="two">
        <extension url="http://example.org/e"><valueInteger value="-3"/></extension>
        <code><text value="b"/></code>
      </component>
    </Observation>"""
    assert parse(doc.encode()) == {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"id": "c1", "system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 72.5, "unit": "/min"},  # the number the JSON parser gives for 72.50
        "component": [
            {"code": {"text": "a"}, "valueBoolean": True},
            {
                "id": "two",
                "extension": [{"url": "http://example.org/e", "valueInteger": -3}],
                "code": {"text": "b"},
            },
        ],
    }


def test_primitive_ids_and_extensions_go_to_the_underscore_twin() -> None:
    doc = f"""<Patient {NS}>
      <name>
        <given value="Anna"/>
        <given id="g2"><extension url="http://example.org/x"><valueString value="y"/></extension></given>
      </name>
      <birthDate id="bd" value="1970"/>
    </Patient>"""
    assert parse(doc.encode()) == {
        "resourceType": "Patient",
        "name": [
            {
                "given": ["Anna", None],
                "_given": [
                    None,
                    {"id": "g2", "extension": [{"url": "http://example.org/x", "valueString": "y"}]},
                ],
            }
        ],
        "birthDate": "1970",
        "_birthDate": {"id": "bd"},
    }


def test_narrative_is_kept_verbatim_and_nested_resources_unwrapped() -> None:
    div = f"<div {XHTML}><p class='x'>a &amp; b<br/></p><![CDATA[<c>]]></div>"
    doc = f"""<Bundle {NS}><type value="collection"/>
      <entry><resource><Patient><text><status value="generated"/>{div}</text>
        <contained><Organization><id value="o"/><name value="Org"/></Organization></contained>
      </Patient></resource></entry></Bundle>"""
    patient = parse(doc.encode())["entry"][0]["resource"]
    assert patient["text"]["div"] == div
    assert patient["contained"] == [{"resourceType": "Organization", "id": "o", "name": "Org"}]


def test_a_narrative_using_an_inherited_prefix_is_made_self_contained() -> None:
    doc = f"""<Patient {NS} xmlns:h="http://www.w3.org/1999/xhtml">
      <text><status value="generated"/><h:div><h:p>hi</h:p></h:div></text></Patient>"""
    div = parse(doc.encode())["text"]["div"]
    assert div == '<h:div xmlns:h="http://www.w3.org/1999/xhtml"><h:p>hi</h:p></h:div>'


def test_xsi_schema_location_is_tolerated_on_the_root() -> None:
    doc = (
        f'<Patient {NS} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xsi:schemaLocation="http://hl7.org/fhir patient.xsd"><active value="true"/></Patient>'
    )
    assert parse(doc.encode()) == {"resourceType": "Patient", "active": True}


def test_decimal_text_becomes_the_json_number_and_newlines_survive_in_attributes() -> None:
    doc = f'<Observation {NS}><status value="final"/><code><text value="a&#10;b"/></code><valueQuantity><value value="1e-3"/></valueQuantity></Observation>'
    got = parse(doc.encode())
    assert got["valueQuantity"]["value"] == 0.001
    assert got["code"]["text"] == "a\nb"


@pytest.mark.parametrize(
    ("doc", "expression", "words"),
    [
        (f"<Patient {NS}><colour value='red'/></Patient>", "Patient.colour", "Unknown element 'colour'"),
        (
            f"<Patient {NS}><name><nick value='x'/></name></Patient>",
            "Patient.name[0].nick",
            "Unknown element",
        ),
        (f"<Patient {NS}><active value='yes'/></Patient>", "Patient.active", "not a boolean"),
        (
            f"<Patient {NS}><multipleBirthInteger value='007'/></Patient>",
            "Patient.multipleBirthInteger",
            "integer",
        ),
        (
            f"<Observation {NS}><valueQuantity><value value='1.'/></valueQuantity></Observation>",
            "Observation.valueQuantity.value",
            "not a decimal",
        ),
        (
            f"<Observation {NS}><valueQuantity><value value='1e999'/></valueQuantity></Observation>",
            "Observation.valueQuantity.value",
            "range",
        ),
        (
            f"<Patient {NS}><gender value='male'/><active value='true'/></Patient>",
            "Patient.active",
            "out of order",
        ),
        (
            f"<Patient {NS}><gender value='male'/><gender value='male'/></Patient>",
            "Patient.gender",
            "only once",
        ),
        (
            f"<Patient {NS}><active bogus='1' value='true'/></Patient>",
            "Patient.active.bogus",
            "Unknown attribute",
        ),
        (f"<Patient {NS}><active/></Patient>", "Patient.active", "ele-1"),
        (f"<Patient {NS}><name></name></Patient>", "Patient.name[0]", "ele-1"),
        (f"<Patient {NS}><name>Anna</name></Patient>", "Patient.name[0]", "Text is not allowed"),
        (
            f"<Patient {NS}><text><status value='generated'/><div>x</div></text></Patient>",
            "Patient.text.div",
            "namespace http://www.w3.org/1999/xhtml",
        ),
        (f"<Patient {NS}><div {XHTML}>x</div></Patient>", "Patient.div", "Unknown element"),
        ("<Patient><active value='true'/></Patient>", "$this", "namespace"),
        (f"<Nonsense {NS}/>", "Nonsense", "Unknown resource type"),
        (f"<Coding {NS}/>", "Coding", "Unknown resource type"),
        (f"<Bundle {NS}><entry><resource/></entry></Bundle>", "Bundle.entry[0].resource", "exactly one"),
        (f"<Patient {NS}><active value='true'>", "$this", "not well-formed"),
        ("", "$this", "not well-formed"),
    ],
)
def test_wrong_xml_is_a_400_naming_where(doc: str, expression: str, words: str) -> None:
    error = refused(doc)
    assert error.status == 400
    assert words in error.outcome()["issue"][0]["diagnostics"]
    assert error.outcome()["issue"][0]["expression"] == [expression]


def test_external_entities_are_refused_unread(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    doc = (
        f'<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        f"<Patient {NS}><name><family value='&xxe;'/></name></Patient>"
    )
    error = refused(doc)
    assert "DTD" in str(error) and "TOP SECRET" not in str(error.outcome())


def test_billion_laughs_is_refused_before_any_expansion() -> None:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{n} "{("&lol" + str(n - 1) + ";") * 10 if n > 1 else "&lol;" * 10}">'
        for n in range(1, 10)
    )
    doc = f'<?xml version="1.0"?><!DOCTYPE Patient [{entities}]><Patient {NS}><name><family value="&lol9;"/></name></Patient>'
    assert "DTD" in str(refused(doc))


def test_undeclared_entities_and_other_encodings_are_refused() -> None:
    assert "not well-formed" in str(refused(f"<Patient {NS}><name><family value='&nbsp;'/></name></Patient>"))
    latin = f'<?xml version="1.0" encoding="ISO-8859-1"?><Patient {NS}/>'.encode("latin-1")
    assert "UTF-8" in str(refused(latin))
    assert "UTF-16" in str(refused(f"<Patient {NS}/>".encode("utf-16")))


def test_nesting_beyond_the_json_limit_is_refused() -> None:
    deep = "<extension url='http://e'>" * (MAX_JSON_DEPTH + 5) + "</extension>" * (MAX_JSON_DEPTH + 5)
    assert "deeper" in str(refused(f"<Patient {NS}>{deep}</Patient>"))
    within = "<item><linkId value='x'/>" * 55 + "</item>" * 55
    assert "deeper" in str(refused(f"<Questionnaire {NS}><status value='draft'/>{within}</Questionnaire>"))
