"""HL7 R4 examples (hl7.fhir.r4.examples 4.0.1) that R4 itself declares invalid, with the reason."""

from __future__ import annotations

# Examples the server rejects with 400, pinned by name so that any new rejection fails this test.
# Each is invalid under R4 4.0.1 itself (HL7's validator agrees), validated against its
# StructureDefinitions (profiles/) and the declared profiles:
KNOWN_INVALID = {
    # a required element missing: SearchParameter.base, ImplementationGuide.name, Questionnaire.item.linkId
    "ImplementationGuide-fhir.json": "ImplementationGuide.name missing",
    "ig-r4.json": "ImplementationGuide.name missing",
    "Questionnaire-qs1.json": "Questionnaire.item.linkId missing in nested items",
    **{
        f"SearchParameter-{kind}-extensions-{rtype}-{code}.json": "SearchParameter.base missing"
        for kind, rtype in (("codesystem", "CodeSystem"), ("valueset", "ValueSet"))
        for code in ("author", "effective", "end", "keyword", "workflow")
    },
    # an id over 64 characters
    "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json": "id too long",
    # codes holding no-break spaces (CodeSystem v2-0550, repeated in the v2 Bundle), which also has
    # extensions with both a value and extensions (ext-1)
    "CodeSystem-v2-0550.json": "code with U+00A0 whitespace",
    "Bundle-v2-valuesets.json": "code with U+00A0 whitespace; ext-1",
    # invariants
    "Bundle-dataelements.json": "bdl-7: two entries with the same fullUrl",
    **{
        f"StructureDefinition-{name}.json": "sdf-4: a non-abstract logical model without baseDefinition"
        for name in ("Definition", "Event", "FiveWs", "Request")
    },
    # references to a type the element does not allow
    "DeviceMetric-example.json": "DeviceMetric.parent refers to a DeviceDefinition (Device only)",
    "DeviceUseStatement-example.json": "DeviceUseStatement.reasonReference refers to a Procedure",
    "MedicationRequest-medrx0301.json": "dispenseRequest.performer refers to a Practitioner (Organization only)",
    "Observation-clinical-gender.json": "Observation.performer refers to an Encounter",
}
