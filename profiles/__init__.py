"""StructureDefinitions we validate against, and the validator (https://hl7.org/fhir/R4/profiling.html)."""
